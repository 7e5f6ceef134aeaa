package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-etl/sluice/pkg/audit"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/service"
)

// newAuditCommand is `sluice audit`.
func newAuditCommand(cfgPath *string, stdout, stderr io.Writer) *cobra.Command {
	var (
		asJSON     bool
		only       string
		timeout    time.Duration
		maxRanges  int
		maxDrill   int
		replayedOK bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Prove exactly once per partition: every offset stored once or dead-lettered once",
		Long: `Check the delivery promise on the live system, per partition of every
configured pipeline's topic: every offset from the log start up to the
consumer group's committed offset (kafka.group) is in the pipeline's table
exactly once or in the dead-letter topic (kafka.dlq_topic) exactly once —
never both, never neither. Safe while Sluice runs; writes nothing.

Per partition it prints the log start, committed offset, log end, lag, rows,
dead letters, and the defects as offset ranges: duplicates, gaps (neither
stored nor dead-lettered), both (stored and dead-lettered), letters
dead-lettered twice, a committed offset below the log start (the group
cannot resume), rows above the log end. Not defects, but shown: rows and
letters at or above the committed offset (loaded, commit pending) and
accepted gaps (offsets below the log start the group skipped, as far as
derivable). Rows below the log start are not checked (retention).

Bounded on any table size: ClickHouse counts rows and distinct offsets per
bucket of 65,536 offsets (by the primary key), and only defective buckets
are read offset by offset (at most --max-drill per partition; the counts of
the others stay exact). In memory: 8 bytes per dead letter.

After 'sluice dlq replay' the replayed offsets are both stored and
dead-lettered (the letter stays): --replayed-ok reports them as replayed.

--json prints one JSON document and nothing else on stdout.
Exit codes: 0 clean, 1 a defect (or the audit could not finish, e.g. a
service unreachable past startup_timeout), 2 bad config or usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxRanges < 1 {
				return fmt.Errorf("invalid argument %d for \"--max-ranges\" flag: must be at least 1", maxRanges)
			}
			if maxDrill < 0 {
				return fmt.Errorf("invalid argument %d for \"--max-drill\" flag: must not be negative", maxDrill)
			}
			if maxDrill == 0 {
				maxDrill = -1 // audit.Options: none (0 there is the default)
			}
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log, stderr)
			pipes := cfg.Pipelines
			keys := make([]string, len(pipes)) // config key of each pipeline
			for i := range pipes {
				keys[i] = fmt.Sprintf("pipelines[%d]", i)
			}
			if only != "" {
				found := -1
				for i, p := range cfg.Pipelines {
					if p.Name == only {
						found = i
					}
				}
				if found < 0 {
					return fmt.Errorf("invalid argument %q for \"--pipeline\" flag: no such pipeline in %s", only, *cfgPath)
				}
				pipes, keys = pipes[found:found+1], keys[found:found+1]
			}

			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()

			cl, err := dlqClient(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer cl.Close()
			// The same start-up as the other commands: an unreachable
			// service is waited for up to startup_timeout (then exit 1);
			// what the server says about the config exits 2.
			conn, err := service.NewStartup(cfg.StartupTimeout, log).OpenClickHouse(ctx, cfg.ClickHouse)
			if err != nil {
				return err
			}
			defer conn.Close()

			opts := audit.Options{
				Group: cfg.Kafka.Group, DLQTopic: cfg.Kafka.DLQTopic, Kafka: cl,
				MaxRanges: maxRanges, MaxDrill: maxDrill, ReplayedOK: replayedOK,
				Log: log.With("stage", "audit"),
			}
			var cerrs config.Errors
			for i, p := range pipes {
				t, err := audit.ClickHouseTable(ctx, conn, cfg.ClickHouse.Database, p.Table)
				if errors.Is(err, audit.ErrNoTable) {
					cerrs = append(cerrs, &config.Error{Key: keys[i] + ".table", Problem: err.Error()})
					continue
				}
				if err != nil {
					return err
				}
				opts.Pipelines = append(opts.Pipelines, audit.Pipeline{Name: p.Name, Topic: p.Topic, TableName: p.Table, Table: t})
			}
			if len(cerrs) > 0 {
				return cerrs
			}
			if cl := service.ClusterOf(conn); cl != nil {
				// The tables are Distributed: each shard is read from
				// one of its replicas, which must hold what the
				// commits cover.
				opts.BeforeRows = func(ctx context.Context) error {
					for _, p := range pipes {
						if err := cl.AwaitCaughtUp(ctx, cfg.ClickHouse.Database, p.Table+cfg.ClickHouse.Cluster.LocalSuffix); err != nil {
							return err
						}
					}
					return nil
				}
			}

			rep, err := audit.Run(ctx, opts)
			var nt *audit.NoTopicError
			if errors.As(err, &nt) {
				for i, p := range pipes {
					if p.Name == nt.Pipeline {
						return config.Errors{{Key: keys[i] + ".topic", Problem: fmt.Sprintf("topic %s does not exist", nt.Topic)}}
					}
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				err = audit.WriteJSON(stdout, rep)
			} else {
				err = audit.WriteText(stdout, rep)
			}
			if err != nil {
				return err
			}
			if !rep.Clean {
				return fmt.Errorf("audit: %d of %d partitions defective", rep.Defective, len(rep.Partitions))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print one JSON document (nothing else on stdout)")
	fl.StringVar(&only, "pipeline", "", "audit only this pipeline")
	fl.DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long (exit 1)")
	fl.IntVar(&maxRanges, "max-ranges", audit.DefaultMaxRanges, "offset ranges listed per kind and partition (the rest are counted)")
	fl.IntVar(&maxDrill, "max-drill", audit.DefaultMaxDrill, "defective buckets per partition read offset by offset; 0: none (counts stay exact past it)")
	fl.BoolVar(&replayedOK, "replayed-ok", false, "offsets both stored and dead-lettered are replays (sluice dlq replay), not defects")
	return cmd
}
