package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/kafkaconn"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
	"github.com/sluice-etl/sluice/pkg/service"
)

// newDLQCommand is `sluice dlq inspect|replay`.
func newDLQCommand(cfgPath *string, stdout, stderr io.Writer) *cobra.Command {
	var (
		ff      filterFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect the dead-letter topic and replay dead letters after a fix",
		Long: `Work with the dead-letter topic (kafka.dlq_topic). Both subcommands read it
from its start up to its high watermarks at the time of the call, as a plain
consumer (no group, no commits), and select dead letters by their headers.`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	ff.register(cmd)

	load := func() (*config.Config, *slog.Logger, error) {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return nil, nil, err
		}
		return cfg, newLogger(cfg.Log, stderr), nil
	}
	// open is where both subcommands start: flags checked, config loaded,
	// Kafka reached, and the selected dead letters read (readErr keeps a
	// read error, which each subcommand reports its own way).
	open := func(cmd *cobra.Command) (*dlqSession, error) {
		f, err := ff.filter(cmd)
		if err != nil {
			return nil, err
		}
		cfg, log, err := load()
		if err != nil {
			return nil, err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(ctx, timeout)
		ss := &dlqSession{ctx: ctx, cfg: cfg, log: log, close: func() { cancel(); stop() }}
		if ss.cl, err = dlqClient(ctx, cfg, log); err != nil {
			ss.close()
			return nil, err
		}
		closeCtx := ss.close
		ss.close = func() { ss.cl.Close(); closeCtx() }
		ss.letters, ss.readErr = dlq.Read(ctx, ss.cl, cfg.Kafka.DLQTopic, f)
		return ss, nil
	}

	var (
		asJSON bool
		wide   bool
	)
	inspect := &cobra.Command{
		Use:   "inspect",
		Short: "List dead letters with their stage, reason and source record",
		Long: `List the dead letters the filters select: dead-letter partition/offset, time,
pipeline, stage, source topic[partition]@offset, key, value size and reason,
then how many there are per pipeline and stage. The reason is cut to $COLUMNS
(else 120) columns unless --wide. --json prints one JSON object per dead
letter instead (all headers; key and value in base64), and nothing else on
stdout.

Exits 0 when there are none ("no dead letters").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ss, err := open(cmd)
			if err != nil {
				return err
			}
			defer ss.close()
			cfg, letters, err := ss.cfg, ss.letters, ss.readErr
			// With --json, stdout holds only JSON lines; the note that
			// there is nothing goes to stderr.
			note := stdout
			if asJSON {
				note = stderr
			}
			if errors.Is(err, dlq.ErrNoTopic) {
				fmt.Fprintf(note, "no dead letters (topic %s does not exist)\n", cfg.Kafka.DLQTopic)
				return nil
			}
			if err != nil {
				return err
			}
			if asJSON {
				if len(letters) == 0 {
					fmt.Fprintln(note, "no dead letters")
				}
				return dlq.WriteJSON(stdout, letters)
			}
			width := 0
			if !wide {
				width = terminalWidth()
			}
			return dlq.WriteTable(stdout, letters, width)
		},
	}
	inspect.Flags().BoolVar(&asJSON, "json", false, "one JSON object per dead letter (key and value base64)")
	inspect.Flags().BoolVar(&wide, "wide", false, "never cut the reason to the terminal width")

	var dryRun bool
	replay := &cobra.Command{
		Use:   "replay",
		Short: "Load the selected dead letters into their tables after the cause is fixed",
		Long: `Re-inject the selected dead letters into their pipelines once the cause is
fixed (a missing FX rate published, a schema or transform corrected).

Each dead letter goes to the pipeline its header names (else the one reading
its source topic) and through that pipeline's current decoder, transforms and
table, exactly as the daemon would load it, with its ORIGINAL source
coordinates (_topic, _partition, _offset), so the table stays keyed by source
offset. Dead letters are grouped by pipeline and source partition and loaded
in source-offset order, one INSERT per group (up to 10,000 rows each).

Safety: only dead letters whose source offset is BELOW the consumer group's
committed offset (kafka.group) for that partition are replayed. The others are
skipped with "not yet passed by the consumer group; replay later". Why: when a
partition is assigned, the daemon resumes after the highest _offset in the
table and skips every record at or below it. A replayed row above the group's
position would make the daemon skip records it has not loaded yet. Below the
committed offset every record has already been loaded or dead-lettered, so a
replayed row there hides nothing. Replay is safe while the daemon runs.

Idempotent: offsets already in the table are skipped, so a second replay
inserts nothing. Records that still fail (decode, transform or load) are
listed with their reason and NOT dead-lettered again: they stay where they
are. Nothing is ever deleted from the dead-letter topic.

--dry-run does everything (selection, checks, decode, transforms, conversion
to the table's columns) except the INSERT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ss, err := open(cmd)
			if err != nil {
				return err
			}
			defer ss.close()
			ctx, cfg, log, cl, letters, err := ss.ctx, ss.cfg, ss.log, ss.cl, ss.letters, ss.readErr
			if errors.Is(err, dlq.ErrNoTopic) {
				fmt.Fprintf(stdout, "no dead letters (topic %s does not exist)\n", cfg.Kafka.DLQTopic)
				return nil
			}
			if err != nil {
				return err
			}
			if len(letters) == 0 {
				fmt.Fprintln(stdout, "no dead letters")
				return nil
			}
			committed, err := dlq.CommittedOffsets(ctx, kadm.NewClient(cl), cfg.Kafka.Group)
			if err != nil {
				return err
			}

			// Its own start-up budget: reading the dead letters may have
			// taken longer than startup_timeout.
			conn, err := service.NewStartup(cfg.StartupTimeout, log).OpenClickHouse(ctx, cfg.ClickHouse)
			if err != nil {
				return err
			}
			defer conn.Close()
			store, err := referenceStore(ctx, cfg, log)
			if err != nil {
				return err
			}
			nw, err := service.NativeWriterFor(cfg, log)
			if err != nil {
				return err
			}
			defer nw.Close()
			pipes, err := service.BuildPipelines(ctx, cfg, conn, store, nw)
			if err != nil {
				return err
			}
			targets := make([]dlq.Target, 0, len(pipes))
			for _, p := range pipes {
				for _, pc := range cfg.Pipelines {
					if pc.Name == p.Name {
						// The pipeline's own stages: no second path for conversion.
						idx := dlq.TableIndex(conn, cfg.ClickHouse.Database, pc.Table)
						targets = append(targets, dlq.NewTarget(p.Name, p.Topic, p.Decoder, p.Transforms, p.Sink.NewWriter, idx))
					}
				}
			}
			rep, err := dlq.Replay(ctx, letters, dlq.ReplayOptions{Targets: targets, Committed: committed, DryRun: dryRun})
			if werr := dlq.WriteReport(stdout, rep); werr != nil && err == nil {
				err = werr
			}
			return err
		},
	}
	replay.Flags().BoolVar(&dryRun, "dry-run", false, "check, decode and transform, but insert nothing")

	cmd.AddCommand(inspect, replay)
	return cmd
}

// dlqSession is what both dlq subcommands work from.
type dlqSession struct {
	ctx     context.Context
	cfg     *config.Config
	log     *slog.Logger
	cl      *kgo.Client
	letters []dlq.DeadLetter
	readErr error
	close   func()
}

// filterFlags are the selection flags both subcommands share.
type filterFlags struct {
	pipeline, stage, topic, reason string
	partition                      int32
	from, to                       int64
	limit                          int
}

func (ff *filterFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&ff.pipeline, "pipeline", "", "only dead letters of this pipeline")
	fl.StringVar(&ff.stage, "stage", "", "only this stage: decode, transform or load")
	fl.StringVar(&ff.topic, "source-topic", "", "only records of this source topic")
	fl.Int32Var(&ff.partition, "source-partition", 0, "only records of this source partition")
	fl.Int64Var(&ff.from, "from-offset", 0, "only source offsets at or above this")
	fl.Int64Var(&ff.to, "to-offset", 0, "only source offsets at or below this (inclusive)")
	fl.StringVar(&ff.reason, "reason", "", "only reasons containing this text (case-insensitive)")
	fl.IntVar(&ff.limit, "limit", 0, "at most this many dead letters, in dead-letter partition/offset order (0: all)")
}

// filter checks the flags; a bad value is a usage error (exit code 2).
func (ff *filterFlags) filter(cmd *cobra.Command) (dlq.Filter, error) {
	f := dlq.Filter{Pipeline: ff.pipeline, SourceTopic: ff.topic, Reason: ff.reason, Limit: ff.limit}
	if ff.stage != "" {
		st := record.Stage(ff.stage)
		if !slices.Contains([]record.Stage{record.StageDecode, record.StageTransform, record.StageLoad}, st) {
			return f, fmt.Errorf("invalid argument %q for \"--stage\" flag: want decode, transform or load", ff.stage)
		}
		f.Stage = st
	}
	if ff.limit < 0 {
		return f, fmt.Errorf("invalid argument %d for \"--limit\" flag: must not be negative", ff.limit)
	}
	if cmd.Flags().Changed("source-partition") {
		if ff.partition < 0 {
			return f, fmt.Errorf("invalid argument %d for \"--source-partition\" flag: must not be negative", ff.partition)
		}
		f.SourcePartition = &ff.partition
	}
	if cmd.Flags().Changed("from-offset") {
		f.FromOffset = &ff.from
	}
	if cmd.Flags().Changed("to-offset") {
		f.ToOffset = &ff.to
	}
	if f.FromOffset != nil && f.ToOffset != nil && *f.FromOffset > *f.ToOffset {
		return f, fmt.Errorf("invalid argument: --from-offset %d is above --to-offset %d", ff.from, ff.to)
	}
	return f, nil
}

// dlqClient is a plain Kafka client (no group) that Read consumes with,
// once a broker answered (waited for up to startup_timeout).
func dlqClient(ctx context.Context, cfg *config.Config, log *slog.Logger) (*kgo.Client, error) {
	return service.NewStartup(cfg.StartupTimeout, log).DialKafka(ctx, cfg.Kafka,
		kgo.ClientID(cfg.Kafka.ClientID+"-dlq"),
		// franz-go narrates connections at info; keep its warnings.
		kgo.WithLogger(kslog.New(slog.New(logx.AtLeast(log.Handler(), slog.LevelWarn)).With("stage", "kafka"))),
	)
}

// referenceStore loads the customers and FX rates when a pipeline's
// transforms join them, read up to their high watermarks now: a replay
// converts at the rates published since the failure. Nil when no
// pipeline needs them.
func referenceStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*refdata.Store, error) {
	if !cfg.UsesReference() {
		return nil, nil
	}
	store := refdata.NewStore(cfg.Reference.BaseCurrency)
	sec, err := kafkaconn.Security(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	ld, err := refdata.NewLoader(refdata.LoaderConfig{
		Brokers:          cfg.Kafka.Brokers,
		CustomersTopic:   cfg.Reference.CustomersTopic,
		FxRatesTopic:     cfg.Reference.FxRatesTopic,
		CustomersSchema:  cfg.Reference.CustomersSchema,
		FxRatesSchema:    cfg.Reference.FxRatesSchema,
		BootstrapTimeout: cfg.Reference.BootstrapTimeout,
		Log:              log,
		ExtraOpts:        sec,
	}, store)
	if err != nil {
		return nil, config.Errors{{Key: "reference", Problem: err.Error()}}
	}
	defer ld.Close()
	if _, err := ld.Bootstrap(ctx); err != nil {
		if errors.Is(err, refdata.ErrTopicNotFound) {
			return nil, config.Errors{{Key: "reference", Problem: err.Error()}}
		}
		return nil, err
	}
	return store, nil
}

// terminalWidth is $COLUMNS when set (shells export it on request), else
// 120: wide enough for most reasons, narrow enough for a laptop.
func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 120
}
