// Package service wires a validated config into running parts: it connects
// to ClickHouse and Kafka, builds each pipeline's decoder, transforms and
// sink, and runs the engine with the admin server. cmd/sluice and the
// integration tests start Sluice through it.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/sluice-etl/sluice/pkg/admin"
	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/kafkaconn"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/pipeline"
	"github.com/sluice-etl/sluice/pkg/refdata"
	"github.com/sluice-etl/sluice/pkg/sink"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// Service is one Sluice process's parts, built and ready to run.
type Service struct {
	store  *refdata.Store
	loader *refdata.Loader
	cfg    *config.Config
	log    *slog.Logger
	conn   driver.Conn
	// native sends the INSERTs with clickhouse.insert_protocol native
	// (nil with the driver); Close closes it.
	native *Native
	engine *pipeline.Engine
	admin  *admin.Server
	reg    *prometheus.Registry

	// groupOpts are extra options of the group client (WithGroupClientOpts).
	groupOpts []kgo.Opt

	// refHealth is the reference follower's Health (nil without reference
	// data); kept apart from loader, which Close clears.
	refHealth func() error

	// dlqLetterBytes bounds a dead letter: the dead-letter topic's
	// max.message.bytes, at most maxRecordBytes (ensureDLQTopic).
	dlqLetterBytes int

	// mem is what the memory bound is computed from, for callers on any
	// goroutine: set with the pipelines in force (running).
	mem atomic.Pointer[memoryInputs]

	// kafkaSecurity is the TLS and SASL of every Kafka client
	// (kafkaconn.Security).
	kafkaSecurity []kgo.Opt

	// Config reloads (reload.go), one at a time under reloadMu: the
	// running pipelines by name, their schema files' digests, the
	// engine's combine (sized at start), the reload series.
	reloadMu sync.Mutex
	pipes    map[string]*pipeline.Pipeline
	sums     map[string][32]byte
	combine  int
	// schemaFiles is sums by schema file, for SchemaFiles' callers on
	// other goroutines.
	schemaFiles atomic.Pointer[map[string][32]byte]
	reloads     *reloadMetrics
}

// memoryInputs is what MemoryBound is computed from.
type memoryInputs struct {
	cfg *config.Config
	// rowPath says a pipeline decodes into Rows (not the columnar path).
	rowPath bool
	// states are the running pipelines' transforms that keep state.
	states []transform.StateHolder
}

// MemoryBound is the resident memory bound of this service with parallel
// batches at once: its config's and pipelines' (config.MemoryBound) and
// the state held now (StateBytes). It grows and shrinks with the state, so
// `sluice run` follows it, setting the soft limit again as it moves. Safe
// for concurrent use.
func (s *Service) MemoryBound(parallel int) int64 {
	m := s.mem.Load()
	return config.MemoryBound(m.cfg, parallel, m.rowPath) + s.stateBytes(m)
}

// GoMemoryLimit is the soft limit for the Go runtime that keeps the
// process under MemoryBound.
func (s *Service) GoMemoryLimit(parallel int) int64 {
	return s.MemoryBound(parallel) - config.NotGoMemory
}

// StateBytes is the heap of the state the service keeps beside its
// batches, an estimate from above: the reference data
// (refdata.Store.HeldBytes) and the running transforms' state (VELOCITY's
// windows, transform.StateHolder). It is the part of MemoryBound that the
// config does not give. Safe for concurrent use.
func (s *Service) StateBytes() int64 { return s.stateBytes(s.mem.Load()) }

func (s *Service) stateBytes(m *memoryInputs) int64 {
	var n int64
	if s.store != nil {
		n += s.store.HeldBytes()
	}
	for _, t := range m.states {
		n += t.StateBytes()
	}
	return n
}

// Option adjusts what New builds.
type Option func(*options)

type options struct {
	referenceOpts []kgo.Opt
	groupOpts     []kgo.Opt
}

// WithGroupClientOpts appends options to the consumer-group client that
// loads the pipelines (a test's fault-injecting dialer, say).
func WithGroupClientOpts(opts ...kgo.Opt) Option {
	return func(o *options) { o.groupOpts = append(o.groupOpts, opts...) }
}

// WithReferenceClientOpts appends options to the Kafka client that reads
// the reference topics (refdata.LoaderConfig.ExtraOpts): TLS or SASL of
// its own, or a test's fault-injecting dialer.
func WithReferenceClientOpts(opts ...kgo.Opt) Option {
	return func(o *options) { o.referenceOpts = append(o.referenceOpts, opts...) }
}

// New connects and builds everything. ctx bounds start-up (it is the
// process's signal context): when it ends, New returns ErrInterrupted.
// A service that does not answer yet is retried with backoff for up to
// cfg.StartupTimeout (see startup.go); past it New returns an
// *UnreachableError. Problems the user fixes in the config (a missing
// database or table, bad credentials, a port that does not speak the
// protocol, unknown transforms, unreadable schemas) come back at once as
// config.Errors naming the key.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Service, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := &Service{cfg: cfg, log: log, reg: prometheus.NewRegistry(), groupOpts: o.groupOpts}
	s.mem.Store(&memoryInputs{cfg: cfg})
	registerRuntimeMetrics(s.reg)
	registerMemoryMetrics(s.reg, func() int64 { return s.MemoryBound(runtime.GOMAXPROCS(0)) }, s.StateBytes)
	s.reloads = newReloadMetrics(s.reg)
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	warnInsecure(cfg, log)
	// One budget for every service start-up waits for.
	st := NewStartup(cfg.StartupTimeout, log)
	if cfg.UsesReference() {
		s.store = refdata.NewStore(cfg.Reference.BaseCurrency)
	}
	native, err := NativeWriterFor(cfg, log.With("stage", "load"))
	if err != nil {
		return nil, err
	}
	s.native = native
	// ClickHouse: connect, then look up every pipeline's table. Both are
	// one attempt, so a server that goes away between them is waited for
	// too, not reported as a missing table.
	var pipes []*pipeline.Pipeline
	s.sums = schemaSums(cfg.Pipelines) // before the builds read the files
	err = st.reach(ctx, clickHouseTarget(cfg.ClickHouse), func(actx context.Context) error {
		conn, err := openClickHouse(actx, cfg.ClickHouse)
		if err != nil {
			return err
		}
		if pipes, err = buildPipelines(actx, cfg, conn, s.store, s.native, s.log); err != nil {
			_ = conn.Close()
			return err
		}
		s.conn = conn
		return nil
	})
	s.running(cfg, pipes)
	if err != nil {
		return nil, clickHouseError(cfg.ClickHouse, err)
	}
	conn := s.conn

	if cfg.UsesRegistry() {
		reg, err := newRegistry(cfg.SchemaRegistry, log)
		if err != nil {
			return nil, err
		}
		if err := st.reach(ctx, registryTarget(cfg.SchemaRegistry.URL), reg.Ping); err != nil {
			return nil, registryError(cfg.SchemaRegistry, err)
		}
	}

	m := pipeline.NewMetrics(s.reg)
	s.combine = config.MaxBatchCombine(cfg)
	engine, err := pipeline.New(pipeline.Options{
		Pipelines:       pipes,
		InflightBytes:   int64(cfg.InflightBytes),
		ShutdownTimeout: cfg.ShutdownTimeout,
		// A revoke's flush plus the wait for an INSERT it cut short
		// must end within the rebalance timeout, or the member is
		// expelled and rejoins under a new ID (docs/DESIGN.md, 5 and 7).
		RevokeTimeout:  cfg.Kafka.RebalanceTimeout / 2,
		AbandonTimeout: cfg.Kafka.RebalanceTimeout / 4,
		OutcomeWait:    cfg.ClickHouse.UnknownOutcomeWait,
		OnOutOfRange:   pipeline.OutOfRangePolicy(cfg.Kafka.OnOffsetOutOfRange),
		Combine:        s.combine,
		StreamWait:     cfg.ClickHouse.InsertStreamWait,
		StreamRows:     cfg.ClickHouse.InsertStreamRows,
		StreamBytes:    int(cfg.ClickHouse.InsertStreamBytes),
		Group:          cfg.Kafka.Group,
		Metadata:       dlq.Metadata,
		RecordSkip:     dlq.WithSkipped,
		ReadSkip:       dlq.Skipped,
		Log:            log,
		Metrics:        m,
	})
	if err != nil {
		return nil, err
	}
	s.engine = engine

	// Reach Kafka now, before anything starts, and make sure the
	// dead-letter topic exists; the group client is created by Run, after
	// the reference data is loaded, so this member never holds partitions
	// it cannot yet transform.
	probe, err := newKafkaClient(cfg.Kafka, kgo.WithLogger(kslog.New(slog.New(logx.AtLeast(log.Handler(), slog.LevelError)).With("stage", "startup"))))
	if err != nil {
		return nil, err
	}
	err = st.reach(ctx, kafkaTarget(cfg.Kafka.Brokers), func(actx context.Context) error {
		if err := probe.Ping(actx); err != nil {
			return err
		}
		n, err := ensureDLQTopic(actx, kadm.NewClient(probe), cfg.Kafka, log)
		s.dlqLetterBytes = n
		return err
	})
	probe.Close()
	if err != nil {
		return nil, kafkaError(cfg.Kafka, err)
	}
	// TLS and SASL of the clients that are given the brokers apart: the
	// reference readers here, the dead-letter writer's in Run.
	if s.kafkaSecurity, err = kafkaconn.Security(cfg.Kafka); err != nil {
		return nil, err
	}
	if s.store != nil {
		r := cfg.Reference
		s.loader, err = refdata.NewLoader(refdata.LoaderConfig{
			Brokers:          cfg.Kafka.Brokers,
			CustomersTopic:   r.CustomersTopic,
			FxRatesTopic:     r.FxRatesTopic,
			CustomersSchema:  r.CustomersSchema,
			FxRatesSchema:    r.FxRatesSchema,
			BootstrapTimeout: r.BootstrapTimeout,
			MaxStaleness:     r.MaxStaleness,
			Log:              log,
			Registerer:       s.reg,
			ExtraOpts:        append(slices.Clone(s.kafkaSecurity), o.referenceOpts...),
		}, s.store)
		if err != nil {
			return nil, config.Errors{{Key: "reference", Problem: err.Error()}}
		}
		s.refHealth = s.loader.Health
	}

	if cfg.Admin.Listen != "" {
		a, err := admin.New(cfg.Admin.Listen, s.reg, s.readiness, log.With("stage", "admin"))
		if err != nil {
			return nil, config.Errors{{Key: "admin.listen", Problem: err.Error()}}
		}
		a.RequireToken(string(cfg.Admin.Token))
		if cfg.Admin.Pprof {
			a.ServeProfiles()
		}
		a.Handle("GET /", admin.NewDashboard(admin.DashboardOptions{
			Engine: engine, Metrics: s.reg, Ready: s.Ready, Log: log.With("stage", "admin"),
			KPI:          admin.NewClickHouseKPI(conn, cfg.ClickHouse.Database),
			LaggingAfter: cfg.Admin.LaggingAfter,
		}))
		s.admin = a
	}
	ok = true
	return s, nil
}

// BuildPipelines builds every configured pipeline: decoder, transforms
// (with the reference store, nil when no pipeline needs it) and the sink
// bound to its table. Problems come back as config.Errors naming the key;
// a ClickHouse that stopped answering (Transient) comes back as is, for the
// caller to wait or fail on. With clickhouse.insert_protocol native or
// auto the tables send their INSERTs through nw (NativeWriterFor), which
// the caller closes once the pipelines have stopped; nw is unused with
// the driver.
func BuildPipelines(ctx context.Context, cfg *config.Config, conn driver.Conn, store *refdata.Store, nw *Native) ([]*pipeline.Pipeline, error) {
	return buildPipelines(ctx, cfg, conn, store, nw, slog.New(slog.DiscardHandler))
}

// buildPipelines is BuildPipelines, logging to log what a pipeline falls
// back from.
func buildPipelines(ctx context.Context, cfg *config.Config, conn driver.Conn, store *refdata.Store, nw *Native, log *slog.Logger) ([]*pipeline.Pipeline, error) {
	var errs config.Errors
	var pipes []*pipeline.Pipeline
	// One registry client for every pipeline, so they share its cache.
	var reg decode.SchemaFetcher
	if cfg.SchemaRegistry.URL != "" {
		c, err := newRegistry(cfg.SchemaRegistry, nil)
		if err != nil {
			return nil, err
		}
		reg = c
	}
	for i, pc := range cfg.Pipelines {
		key := fmt.Sprintf("pipelines[%d]", i)
		p, perrs, err := buildPipeline(ctx, conn, nw, cfg, pc, key, store, reg, log)
		if err != nil {
			return nil, err
		}
		errs = append(errs, perrs...)
		if p != nil {
			pipes = append(pipes, p)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return pipes, nil
}

func buildPipeline(ctx context.Context, conn driver.Conn, nw *Native, cfg *config.Config, pc config.Pipeline, key string, store *refdata.Store, reg decode.SchemaFetcher, log *slog.Logger) (*pipeline.Pipeline, config.Errors, error) {
	var errs config.Errors
	var dec decode.Decoder
	schema, err := decode.LoadSchema(pc.Schema)
	if err != nil {
		errs = append(errs, &config.Error{Key: key + ".schema", Problem: err.Error()})
	} else if dec, err = decode.NewFromSchemaWith(pc.Format, schema, reg); err != nil {
		errs = append(errs, &config.Error{Key: key + ".format", Problem: err.Error()})
	}
	if len(errs) > 0 {
		return nil, errs, nil
	}
	ts, err := transform.Build(pc.Transforms, transform.Env{
		Pipeline: pc.Name, Schema: schema, Fields: pc.Fields, Store: store, Fraud: cfg.Fraud,
	})
	if err != nil {
		errs = append(errs, &config.Error{Key: key + ".transforms", Problem: err.Error()})
	}
	table, err := openTable(ctx, conn, cfg, pc.Table)
	if err != nil {
		if Transient(err) {
			return nil, nil, err
		}
		return nil, append(errs, &config.Error{Key: key + ".table", Problem: err.Error()}), nil
	}
	if len(errs) > 0 {
		return nil, errs, nil
	}
	if err := table.Bind(filledBy(schema, ts)); err != nil {
		return nil, config.Errors{{Key: key + ".table", Problem: err.Error()}}, nil
	}
	if err := nw.use(cfg, table); err != nil {
		return nil, config.Errors{{Key: "clickhouse.insert_protocol", Problem: err.Error()}}, nil
	}
	// The columnar path, for every format (stage.Columnar decides per
	// pipeline whether its transforms allow it).
	rowDec := dec
	if dec, err = columnDecoder(pc.Format, schema, reg, dec, table.Column, ts); err != nil {
		return nil, config.Errors{{Key: key + ".format", Problem: err.Error()}}, nil
	}
	if err := servesColumns(ctx, table, dec, ts); err != nil {
		// The table cannot hand a columnar transform a field it reads
		// (servesColumns): the row path, which reads the decoded values,
		// and costs more CPU and memory per row.
		log.Warn("pipeline takes the row path: its table cannot serve the columnar transforms",
			"stage", "startup", "pipeline", pc.Name, "table", pc.Table, "reason", err.Error())
		dec = rowDec
	}
	return &pipeline.Pipeline{
		Name:       pc.Name,
		Topic:      pc.Topic,
		Decoder:    dec,
		Transforms: ts,
		Sink:       pipeline.TableSink(table, pc.Batch.Combine),
		Limits: batch.Limits{
			MaxRows:  pc.Batch.MaxRows,
			MaxBytes: int(pc.Batch.MaxBytes),
			MaxWait:  pc.Batch.MaxWait,
		},
	}, nil, nil
}

// filledBy says which columns a pipeline fills: its schema's top-level
// fields and its transforms' outputs.
func filledBy(schema *decode.Schema, ts []transform.Transform) func(string) bool {
	filled := map[string]bool{}
	for _, f := range schema.Fields {
		filled[f.Name] = true
	}
	for _, tr := range ts {
		for _, c := range tr.Outputs() {
			filled[c] = true
		}
	}
	return func(c string) bool { return filled[c] }
}

// Run loads the reference data, joins the consumer group and runs until
// ctx ends, then shuts down in order: stop polling, flush, commit, leave
// the group, stop following the reference topics, stop the admin server.
func (s *Service) Run(ctx context.Context) error {
	if s.admin != nil {
		go s.admin.Serve()
		s.log.Info("admin listening", "addr", "http://"+s.admin.Addr())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.admin.Shutdown(sctx)
		}()
	}
	if s.loader != nil {
		// No event batch is transformed before the reference tables are
		// read up to their high watermarks.
		if _, err := s.loader.Bootstrap(ctx); err != nil {
			if ctx.Err() != nil {
				s.log.Info("interrupted during start-up", "stage", "reference")
				return nil
			}
			return fmt.Errorf("reference data: %w", err)
		}
		// Follow retries whatever fails until it is stopped (it logs and
		// counts each failure; /readyz and the transforms see it). It
		// stops after the engine flushed, whose transforms read it.
		fctx, stopFollowing := context.WithCancel(context.WithoutCancel(ctx))
		followed := s.loader.StartFollow(fctx)
		defer func() {
			stopFollowing()
			if err := followed(); err != nil { // only ErrNotBootstrapped
				s.log.Error("following the reference topics did not start", "stage", "refdata", "err", err, logx.Type(logx.TypeInternal))
			}
		}()
	}
	cfg := s.cfg
	opts := append(s.engine.ClientOpts(cfg.Kafka.Group),
		kgo.ClientID(cfg.Kafka.ClientID),
		kgo.SessionTimeout(cfg.Kafka.SessionTimeout),
		kgo.RebalanceTimeout(cfg.Kafka.RebalanceTimeout),
		// franz-go narrates every rebalance at info; keep its warnings.
		kgo.WithLogger(kslog.New(slog.New(logx.AtLeast(s.log.Handler(), slog.LevelWarn)).With("stage", "kafka"))),
		// Dead letters: every one acknowledged by all in-sync replicas
		// before the batch commits.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(dlq.Partitioner(cfg.Kafka.DLQTopic)),
		// No batch of letters larger than the topic takes: the broker
		// would refuse the whole batch (MESSAGE_TOO_LARGE), and a
		// single letter over it is cut by the writer instead.
		kgo.ProducerBatchMaxBytes(int32(s.dlqLetterBytes)),
	)
	opts = append(opts, fetchOpts(cfg)...)
	if cfg.Kafka.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.Kafka.InstanceID))
	}
	opts = append(opts, s.groupOpts...)
	cl, err := kafkaconn.NewClient(cfg.Kafka, opts...)
	if err != nil {
		return err
	}
	dw := dlq.New(cl, cfg.Kafka.DLQTopic, cfg.Kafka.Brokers, s.kafkaSecurity...)
	dw.SetProducerMaxBytes(s.dlqLetterBytes)
	s.engine.SetDeadLetters(dw)
	s.log.Info("consuming", "topics", s.engine.Topics(), "group", cfg.Kafka.Group)
	return s.engine.Run(ctx, cl) // closes cl
}

// AdminAddr is the admin server's address ("" when disabled).
func (s *Service) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.Addr()
}

// Ready reports readiness, as /readyz does.
func (s *Service) Ready() bool { return s.readiness() == nil }

// readiness is /readyz: nil when the engine consumes and loads and the
// reference data (if any pipeline uses it) is current within
// reference.max_staleness; otherwise the reasons, each part's own.
func (s *Service) readiness() error {
	var why []string
	if s.engine == nil || !s.engine.Ready() {
		why = append(why, "not consuming, or a partition is failing or stalled")
	}
	if s.refHealth != nil {
		if err := s.refHealth(); err != nil {
			why = append(why, err.Error())
		}
	}
	if len(why) == 0 {
		return nil
	}
	return errors.New(strings.Join(why, "; "))
}

// Close releases connections (Run closes the Kafka client itself).
func (s *Service) Close() {
	if s.loader != nil {
		s.loader.Close()
		s.loader = nil
	}
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	if s.native != nil {
		s.native.Close()
		s.native = nil
	}
}

// Native is the native-protocol writer of a process's tables
// (clickhouse.insert_protocol native or auto; its connections pooled per
// server), and what to do with a table it cannot write: with native that
// is a config error, with auto the table goes through clickhouse-go,
// logged once.
type Native struct {
	w      *sink.NativeWriter
	strict bool
	log    *slog.Logger
}

// NativeWriterFor makes the Native of cfg, nil with insert_protocol
// driver. The caller closes it after the pipelines that use it have
// stopped.
func NativeWriterFor(cfg *config.Config, log *slog.Logger) (*Native, error) {
	if cfg.ClickHouse.InsertProtocol == "driver" {
		return nil, nil
	}
	w, err := sink.NewNativeWriter(cfg.ClickHouse)
	if err != nil {
		return nil, config.Errors{{Key: "clickhouse.insert_protocol", Problem: err.Error()}}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Native{w: w, strict: cfg.ClickHouse.InsertProtocol == "native", log: log}, nil
}

// Close closes the writer's idle connections.
func (n *Native) Close() {
	if n != nil {
		n.w.Close()
	}
}

// use makes table send its INSERTs through the native writer when its
// protocol asks for it and the table's columns allow it.
func (n *Native) use(cfg *config.Config, table *sink.Table) error {
	if cfg.ClickHouse.InsertProtocol == "driver" {
		return nil
	}
	if n == nil {
		return errors.New("no native writer was given (service.NativeWriterFor)")
	}
	err := table.UseNative(n.w)
	if err != nil && !n.strict {
		n.log.Info("this table's INSERTs go through clickhouse-go: a column has no native buffer (clickhouse.insert_protocol: auto)",
			"table", table.Name(), "reason", err.Error())
		return nil
	}
	return err
}

// maxRecordBytes bounds one dead letter (and so the largest record a
// pipeline can dead-letter): the producer's batch limit and the max.message.bytes
// of a dead-letter topic Sluice creates. 16 MiB is above the default batch
// max_bytes (12 MiB), so any record a default batch can hold can also be
// dead-lettered.
const maxRecordBytes = 16<<20 + 1<<10

// ensureDLQTopic creates the dead-letter topic when it is missing, with
// kafka.dlq_partitions partitions and the broker's default replication, and
// returns the largest dead letter it takes: its max.message.bytes (Kafka's
// default when that cannot be read), at most maxRecordBytes.
// A refusal is a config.Errors naming kafka.dlq_topic; a Transient error
// comes back as is, for start-up to retry.
func ensureDLQTopic(ctx context.Context, adm *kadm.Client, k config.Kafka, log *slog.Logger) (int, error) {
	topics, err := adm.ListTopics(ctx, k.DLQTopic)
	if err != nil {
		return 0, err
	}
	if td, ok := topics[k.DLQTopic]; ok && td.Err == nil {
		n, err := dlq.MaxMessageBytes(ctx, adm, k.DLQTopic)
		if Transient(err) {
			return 0, err
		}
		if err != nil {
			n = kafkaDefaultMaxMessageBytes
			log.Warn("cannot read the dead-letter topic's max.message.bytes; assuming Kafka's default", "topic", k.DLQTopic, "bytes", n, "err", err)
		}
		n = max(512, min(n, maxRecordBytes)) // 512: franz-go's least batch bound
		if n < maxRecordBytes {
			log.Info("the dead-letter topic takes smaller records than a batch may hold; larger dead letters get their values cut",
				"topic", k.DLQTopic, "max_message_bytes", n)
		}
		return n, nil
	}
	// A dead letter is as large as the record it keeps: allow records up
	// to the producer's limit, not the broker's 1 MB default.
	maxMessage := strconv.Itoa(maxRecordBytes)
	resp, err := adm.CreateTopic(ctx, int32(k.DLQPartitions), -1, map[string]*string{"max.message.bytes": &maxMessage}, k.DLQTopic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		// Another member created it first (members starting together),
		// with the same settings as this one would have.
		log.Info("the dead-letter topic was created by another process", "topic", k.DLQTopic)
		return maxRecordBytes, nil
	}
	if Transient(err) {
		return 0, err // no controller yet, a timeout: start-up waits
	}
	if err != nil {
		return 0, config.Errors{{Key: "kafka.dlq_topic", Problem: fmt.Sprintf("topic %s is missing and cannot be created: %v", k.DLQTopic, err)}}
	}
	log.Info("created the dead-letter topic", "topic", k.DLQTopic, "partitions", k.DLQPartitions)
	return maxRecordBytes, nil
}

// kafkaDefaultMaxMessageBytes is Kafka's default message.max.bytes.
const kafkaDefaultMaxMessageBytes = 1048588

// fetchOpts are the consumer's fetch limits. Fetched records not yet
// handed to a worker are outside the in-flight budget: a quarter of it per
// fetch response, one response buffered at a time (config.MemoryBound),
// and at most 64 MiB: above franz-go's BrokerMaxReadBytes (100 MiB) the
// client refuses to start (inflight_bytes of 512MiB did).
func fetchOpts(cfg *config.Config) []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchMaxBytes(int32(min(int64(cfg.InflightBytes)/4, 64<<20))),
		kgo.MaxConcurrentFetches(1),
		kgo.FetchMaxWait(cfg.Kafka.FetchMaxWait),
	}
}
