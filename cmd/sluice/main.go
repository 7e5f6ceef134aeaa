// Command sluice is the Kafka-to-ClickHouse micro-batch connector.
//
// It is wiring only: flags, config, logger, signals; the work is in pkg/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/pkg/service"
	"github.com/sluice-etl/sluice/schemas"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitConfig = 2
)

func main() {
	// SIGINT and SIGTERM are caught before anything else, for the whole
	// process: one that arrives while it starts (a rolling deploy or a
	// scheduler stopping a member it has just started) cancels the root
	// context, which the commands' own contexts derive from, so `run`
	// stops cleanly (exit 0) instead of dying by the signal's default
	// action before its handler was installed (TestChaos met it: SIGTERM
	// within a few milliseconds of the start). What is left is the Go
	// runtime's own start, before main.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is runContext without signals (the tests').
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfgPath string
	root := &cobra.Command{
		Use:   "sluice",
		Short: "Sluice loads Kafka topics into ClickHouse in exact micro-batches",
		Long: `Sluice consumes Kafka topics as a consumer group, cuts each partition's
records into batches (max rows, bytes or wait), decodes and transforms them,
loads each batch into ClickHouse with one INSERT and only then commits its
offsets. Records that cannot be loaded go to a dead-letter topic.

Every config key can be overridden by SLUICE_<PATH>, e.g. SLUICE_KAFKA_BROKERS.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", "sluice.yaml", "config file (YAML)")

	load := func() (*config.Config, *slog.Logger, error) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, nil, err
		}
		return cfg, newLogger(cfg.Log, stderr), nil
	}

	var watch bool
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Consume the configured pipelines until SIGINT or SIGTERM; SIGHUP or an edit of the config file reloads it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// What is loaded now is what an edit is compared with,
			// also one made while start-up waits for the services.
			loaded := config.FileSum(cfgPath)
			cfg, log, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// SIGHUP reloads the config; caught from here on, so one
			// during start-up waits for the service instead of killing
			// the process by its default action.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			svc, err := service.New(ctx, cfg, log)
			if errors.Is(err, service.ErrInterrupted) {
				// Stopped before it started: nothing to flush, a clean
				// stop (exit 0). New logged it.
				return nil
			}
			if err != nil {
				return err
			}
			defer svc.Close()
			// The memory bound is the runtime's soft limit, so garbage
			// is collected before it takes the process past the bound;
			// GOMEMLIMIT, when set, wins. The bound moves with the
			// state held (reference data, VELOCITY windows), so the
			// limit follows it, and is set again at once after a reload.
			memLimit := os.Getenv("GOMEMLIMIT") == ""
			setMemoryLimit := func() {
				if memLimit {
					p := runtime.GOMAXPROCS(0)
					debug.SetMemoryLimit(svc.GoMemoryLimit(p))
					log.Info("memory bound", "mib", svc.MemoryBound(p)>>20, "parallel", p, "state_mib", svc.StateBytes()>>20)
				}
			}
			setMemoryLimit()
			if memLimit {
				go followMemoryBound(ctx, svc, time.Second)
			}
			go reloadOnChange(ctx, cfgPath, loaded, svc.SchemaFiles, watch, hup, log, func() {
				if svc.ReloadFile(ctx, cfgPath) == nil {
					setMemoryLimit()
				}
			})
			return svc.Run(ctx)
		},
	}
	runCmd.Flags().BoolVar(&watch, "watch", true, "reload the config when its file changes (SIGHUP reloads it either way)")
	root.AddCommand(runCmd)

	root.AddCommand(&cobra.Command{
		Use:   "migrate",
		Short: "Create the ClickHouse database, tables and views if they do not exist (safe to run twice)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// Connect without the database: it may not exist yet. An
			// unreachable server is waited for up to startup_timeout (a
			// migrate job often starts with the database).
			chc := cfg.ClickHouse
			chc.Database = "default"
			conn, err := service.NewStartup(cfg.StartupTimeout, log).OpenClickHouse(ctx, chc)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if cl := cfg.ClickHouse.Cluster; cl.Enabled() {
				// Distributed DDL waits for every server (up to its
				// distributed_ddl_task_timeout, 180 s by default).
				ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				err = migrate.ApplyCluster(ctx, conn, cfg.ClickHouse.Database, migrate.Cluster{Name: cl.Name, LocalSuffix: cl.LocalSuffix},
					schemas.ClickHouse, "clickhouse", log.With("stage", "migrate"))
			} else {
				err = migrate.Apply(ctx, conn, cfg.ClickHouse.Database, schemas.ClickHouse, "clickhouse", log.With("stage", "migrate"))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "database %s is up to date\n", cfg.ClickHouse.Database)
			return nil
		},
	})

	root.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the config and reach Kafka and ClickHouse, then exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := load()
			if err != nil {
				return err
			}
			cfg.Admin.Listen = "" // check must not hold the admin port
			// Same start-up as run, waiting up to startup_timeout for an
			// unreachable service (exit 1 past it). Interrupted, check
			// exits 1, not 0: nothing was checked.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			svc, err := service.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			svc.Close()
			fmt.Fprintf(stdout, "config ok: %d pipelines; Kafka and ClickHouse reachable; tables match\n", len(cfg.Pipelines))
			fmt.Fprintf(stdout, "memory bound: %d MiB with %d batches at once (inflight_bytes, batch limits, the pipelines' paths)",
				svc.MemoryBound(runtime.GOMAXPROCS(0))>>20, runtime.GOMAXPROCS(0))
			if cfg.UsesReference() {
				// Nothing is read yet: the state comes on top as it is held.
				fmt.Fprint(stdout, ", plus the reference data and VELOCITY windows as they are held (sluice_memory_state_bytes)")
			}
			fmt.Fprintln(stdout)
			return nil
		},
	})

	root.AddCommand(newDLQCommand(&cfgPath, stdout, stderr))
	root.AddCommand(newAuditCommand(&cfgPath, stdout, stderr))
	root.AddCommand(newConfigCommand(&cfgPath, stdout))

	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			fmt.Fprintf(stdout, "sluice %s\n", v)
		},
	})

	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var cerrs config.Errors
	if errors.As(err, &cerrs) {
		fmt.Fprintln(stderr, "sluice: invalid config:")
		for _, e := range cerrs {
			fmt.Fprintf(stderr, "  %s: %s\n", e.Key, e.Problem)
		}
		return exitConfig
	}
	fmt.Fprintf(stderr, "sluice: %v\n", err)
	// A service that stayed unreachable, or a signal during start-up
	// (check, migrate, dlq; run returned nil): runtime, whatever the text
	// of the network error says.
	var unreachable *service.UnreachableError
	if errors.As(err, &unreachable) || errors.Is(err, service.ErrInterrupted) {
		return exitError
	}
	if isUsage(err) {
		return exitConfig
	}
	return exitError
}

// followMemoryBound keeps the Go runtime's soft limit at svc's
// GoMemoryLimit while ctx lasts: checked every interval, set again when it
// moved by a MiB or more (the reference data and VELOCITY windows it
// counts grow and shrink as they are read and evicted; GOMAXPROCS, the
// batches at once, follows a container's CPU limit).
func followMemoryBound(ctx context.Context, svc *service.Service, every time.Duration) {
	set := svc.GoMemoryLimit(runtime.GOMAXPROCS(0))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l := svc.GoMemoryLimit(runtime.GOMAXPROCS(0)); l-set >= 1<<20 || set-l >= 1<<20 {
			debug.SetMemoryLimit(l)
			set = l
		}
	}
}

// isUsage tells cobra's flag and argument errors apart from runtime ones.
func isUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "flag needs an argument", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// newLogger is the process's logger. Every record at ERROR carries an
// error_type (logx.WithErrorType), also those of franz-go and of call
// sites that give only their err.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(logx.WithErrorType(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(logx.WithErrorType(slog.NewTextHandler(w, opts)))
}
