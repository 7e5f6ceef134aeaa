package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/sluice-etl/sluice/pkg/config"
)

// newConfigCommand is `sluice config print`.
func newConfigCommand(cfgPath *string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the configuration Sluice would run with",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective config as YAML, every secret redacted",
		Long: `Print the config Sluice would run with, as YAML: the file, then the
SLUICE_* environment overrides, the defaults of the keys left out, relative
paths resolved and the *_file secrets read. Every secret (kafka.sasl.password,
clickhouse.password, admin.token, any key named password, token or secret,
and the password of a URL) prints as [redacted]; the *_file keys show their
paths. An invalid config exits 2 naming the keys, as every command does. No
service is contacted.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return err
			}
			out, err := cfg.Redacted()
			if err != nil {
				return err
			}
			_, err = stdout.Write(out)
			return err
		},
	})
	return cmd
}
