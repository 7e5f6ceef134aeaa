package refdata

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/schemas"
)

// DefaultBootstrapTimeout applies when LoaderConfig.BootstrapTimeout is
// zero; it is the config default of reference.bootstrap_timeout. Two
// minutes reads millions of reference records with room to spare, yet a
// process whose brokers cannot serve a partition still fails its start-up
// visibly instead of waiting forever.
const DefaultBootstrapTimeout = 2 * time.Minute

// Errors a caller may tell apart with errors.Is.
var (
	// ErrTopicNotFound: a reference topic does not exist. The error names
	// it. Retrying cannot help until someone creates it.
	ErrTopicNotFound = logx.WithType(errors.New("reference topic does not exist"), logx.TypeConfig)
	// ErrBootstrapTimeout: BootstrapTimeout passed before both topics were
	// read up to their end offsets. The error says which partitions were
	// behind and where.
	ErrBootstrapTimeout = errors.New("reference topics not read to their end in time")
	// ErrNotBootstrapped: Follow was called before Bootstrap succeeded.
	ErrNotBootstrapped = errors.New("refdata: Follow before a successful Bootstrap")
)

// LoaderConfig configures a Loader. The service builds it from
// config.Reference and the Kafka section.
type LoaderConfig struct {
	// Brokers are the seed brokers.
	Brokers []string
	// CustomersTopic (key customer_id, a null value deletes) and
	// FxRatesTopic (key <CURRENCY>@<effective_from millis>, a null value
	// deletes that entry) are read in full, outside any consumer group.
	CustomersTopic, FxRatesTopic string
	// CustomersSchema and FxRatesSchema are the .avsc files of the values
	// (plain Avro binary).
	CustomersSchema, FxRatesSchema string
	// BootstrapTimeout bounds Bootstrap. Zero means DefaultBootstrapTimeout.
	BootstrapTimeout time.Duration
	// MaxStaleness: Health reports the follower unhealthy once it has been
	// failing, or has not been read up to a recently listed high
	// watermark, for longer than this. Zero means DefaultMaxStaleness.
	MaxStaleness time.Duration
	// MissWait bounds Store.AwaitCurrent: how long a lookup that missed
	// waits for the follower to confirm it holds every record produced
	// before the miss. A healthy follower needs one round trip to Kafka;
	// past the bound the transform fails the batch, which is retried.
	// Zero means DefaultMissWait.
	MissWait time.Duration
	// Log receives the loader's own logs (scoped with stage=refdata) and
	// the Kafka client's warnings and errors. Nil discards them.
	Log *slog.Logger
	// Registerer, when set, gets sluice_refdata_customers,
	// sluice_refdata_rates, sluice_refdata_bad_records_total{topic},
	// sluice_refdata_data_loss_total, and the follower's health:
	// sluice_refdata_lag_records{topic},
	// sluice_refdata_staleness_seconds{topic},
	// sluice_refdata_last_record_age_seconds{topic},
	// sluice_refdata_errors_total{error_type} and sluice_refdata_following
	// (metrics.go).
	Registerer prometheus.Registerer
	// ExtraOpts are appended to the Kafka client's options (TLS, SASL,
	// client id, or test hooks); they win over the loader's own.
	ExtraOpts []kgo.Opt
}

// Stats is what Bootstrap loaded.
type Stats struct {
	// Customers and Rates are what the Store holds afterwards (rate
	// history entries over all currencies).
	Customers, Rates int
	// Records is how many records were read (tombstones and bad records
	// included), Bad how many of them were skipped.
	Records, Bad int64
	// Elapsed is the time Bootstrap took.
	Elapsed time.Duration
}

// Loader fills a Store from the reference topics and keeps it current.
//
// It is a plain consumer, not a member of the pipelines' consumer group:
// every Sluice process reads every partition from the log start, like a
// global table. One Kafka client serves both phases: Bootstrap polls it
// until the end offsets are reached, Follow keeps polling it. The client's
// position only moves forward, so Follow never sees a record that
// Bootstrap applied, and records are applied in offset order per
// partition: the last write per key wins, as compaction would decide.
//
// It reads with read_committed isolation and waits for the last stable
// offsets, so records of aborted transactions never reach the Store and an
// open transaction does not hold start-up back. Control records are kept
// (never applied) because they occupy offsets: a partition whose last
// offset is a transaction marker is still recognised as read to its end.
//
// Follow never gives up: a failed fetch or high-watermark listing is
// logged, counted and retried with backoff (follow.go). While it fails or
// lags, Health says so and a lookup that misses is not taken as final
// (Store.AwaitCurrent).
//
// Usage: NewLoader, Bootstrap (once, before any event batch is
// transformed), then `go Follow(ctx)`, and Close after Follow returned.
// Bootstrap and Follow must not run at the same time; the Store may be
// read concurrently throughout.
type Loader struct {
	cfg   LoaderConfig
	log   *slog.Logger
	store *Store
	cl    *kgo.Client
	adm   *kadm.Client
	ap    applier
	m     *metrics
	tr    *tracker
	tune  tuning

	bootstrapped atomic.Bool

	// Owned by the goroutine that polls (Bootstrap, then Follow).
	records, bad int64
	next         []partNext
}

// NewLoader checks cfg, loads both schemas and creates the Kafka client
// (which connects lazily; nothing is read before Bootstrap). It is called
// once at start-up; errors are configuration errors.
func NewLoader(cfg LoaderConfig, store *Store) (*Loader, error) {
	switch {
	case store == nil:
		return nil, errors.New("refdata: nil Store")
	case len(cfg.Brokers) == 0:
		return nil, errors.New("refdata: no brokers")
	case cfg.CustomersTopic == "" || cfg.FxRatesTopic == "":
		return nil, errors.New("refdata: customers and fx rates topics must be set")
	case cfg.CustomersTopic == cfg.FxRatesTopic:
		return nil, fmt.Errorf("refdata: customers and fx rates topics are both %q", cfg.CustomersTopic)
	case cfg.BootstrapTimeout < 0:
		return nil, fmt.Errorf("refdata: negative bootstrap timeout %v", cfg.BootstrapTimeout)
	case cfg.MaxStaleness < 0 || cfg.MissWait < 0:
		return nil, fmt.Errorf("refdata: negative max staleness %v or miss wait %v", cfg.MaxStaleness, cfg.MissWait)
	case cfg.BootstrapTimeout == 0:
		cfg.BootstrapTimeout = DefaultBootstrapTimeout
	}
	if cfg.MaxStaleness == 0 {
		cfg.MaxStaleness = DefaultMaxStaleness
	}
	if cfg.MissWait == 0 {
		cfg.MissWait = DefaultMissWait
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("stage", "refdata")

	cs, err := loadSchema(cfg.CustomersSchema, "avro/customer.avsc")
	if err != nil {
		return nil, fmt.Errorf("refdata: customers: %w", err)
	}
	fs, err := loadSchema(cfg.FxRatesSchema, "avro/fx_rate.avsc")
	if err != nil {
		return nil, fmt.Errorf("refdata: fx rates: %w", err)
	}
	if err := checkSchemas(cs, fs); err != nil {
		return nil, fmt.Errorf("refdata: %w", err)
	}
	cdec, err := decode.NewFromSchema(decode.FormatAvro, cs)
	if err != nil {
		return nil, fmt.Errorf("refdata: customers: %w", err)
	}
	fdec, err := decode.NewFromSchema(decode.FormatAvro, fs)
	if err != nil {
		return nil, fmt.Errorf("refdata: fx rates: %w", err)
	}
	tr := newTracker(cfg.CustomersTopic, cfg.FxRatesTopic, cfg.MissWait)
	m, err := newMetrics(cfg.Registerer, store, tr)
	if err != nil {
		return nil, err
	}

	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.CustomersTopic, cfg.FxRatesTopic),
		kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()),
		// A leader-epoch change can make the client apply the reset
		// offset; with the default it would silently re-read or skip
		// (FIELD-NOTES). Out of range becomes an error we surface.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.WithLogger(kslog.New(slog.New(logx.AtLeast(log.Handler(), slog.LevelWarn)).With("component", "kafka"))),
	}
	cl, err := kgo.NewClient(append(opts, cfg.ExtraOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("refdata: kafka client: %w", err)
	}
	return &Loader{
		cfg:   cfg,
		log:   log,
		store: store,
		cl:    cl,
		adm:   kadm.NewClient(cl),
		ap: applier{
			store:          store,
			customersTopic: cfg.CustomersTopic,
			fxRatesTopic:   cfg.FxRatesTopic,
			customers:      cdec,
			fxRates:        fdec,
		},
		m:    m,
		tr:   tr,
		tune: defaultTuning,
	}, nil
}

// errBootstrapDeadline is the cause of Bootstrap's own deadline, to tell
// it from the caller's.
var errBootstrapDeadline = errors.New("bootstrap timeout")

// Bootstrap reads both topics up to the end offsets they had when it
// started and returns once every partition is read that far (records
// produced meanwhile may be applied too). Empty topics are done at once.
// It is called once, at start-up, before any event batch is transformed;
// ctx bounds it as well as BootstrapTimeout does.
//
// Errors: ErrTopicNotFound naming the topic; ErrBootstrapTimeout with the
// partitions still behind; ctx's error if the caller gave up; a fetch
// error the client does not recover from (naming topic and partition).
// Records that cannot be applied are not errors: they are skipped,
// logged and counted in Stats.Bad. After an error, Close the Loader.
func (l *Loader) Bootstrap(ctx context.Context) (Stats, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, l.cfg.BootstrapTimeout, errBootstrapDeadline)
	defer cancel()

	behind, err := l.endOffsets(ctx)
	if err != nil {
		return Stats{}, l.ctxErr(ctx, err, behind)
	}
	for len(behind) > 0 {
		err := l.poll(ctx, func(r *kgo.Record) {
			tp := topicPartition{r.Topic, r.Partition}
			if p, ok := behind[tp]; ok && r.Offset+1 >= p.end {
				delete(behind, tp)
			} else if ok {
				p.next = r.Offset + 1
				behind[tp] = p
			}
		})
		if err != nil {
			return Stats{}, l.ctxErr(ctx, err, behind)
		}
	}
	l.bootstrapped.Store(true)

	st := Stats{Records: l.records, Bad: l.bad, Elapsed: time.Since(start)}
	st.Customers, st.Rates = l.store.Counts()
	l.log.Info("reference data loaded",
		"customers", st.Customers, "rates", st.Rates,
		"records", st.Records, "bad_records", st.Bad, "elapsed", st.Elapsed)
	return st, nil
}

// Follow applies records as they arrive until ctx ends or the Loader is
// closed, then returns nil. It is run in its own goroutine after Bootstrap
// succeeded and continues exactly where Bootstrap stopped; the only error
// is ErrNotBootstrapped.
//
// Bad records are skipped, logged and counted as in Bootstrap. Any other
// failure (a fetch error such as an offset out of range or a revoked
// authorization, a broker that does not answer the high-watermark
// listing) is logged once per attempt at WARN with its error_type,
// counted in sluice_refdata_errors_total and retried with capped
// exponential backoff; it never ends Follow. Meanwhile Health and the
// metrics say so, and the Store answers AwaitCurrent with ErrNotCurrent.
func (l *Loader) Follow(ctx context.Context) error {
	if !l.bootstrapped.Load() {
		return ErrNotBootstrapped
	}
	ctx, cancel := context.WithCancel(ctx)
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		l.refresh(ctx)
	}()
	l.follow()
	defer func() {
		// A Store nobody follows is a snapshot: its misses are final.
		l.store.follower.CompareAndSwap(l.tr, nil)
		l.tr.setFollowing(false)
		cancel()
		<-refreshed
	}()
	for attempt := 0; ; {
		// A bounded poll: one that ends quiet (nothing new, no error)
		// is a fetch that works.
		pctx, pcancel := context.WithTimeout(ctx, l.tune.refreshEvery)
		err := l.poll(pctx, nil)
		quiet := errors.Is(err, context.DeadlineExceeded) && pctx.Err() != nil
		pcancel()
		switch {
		case ctx.Err() != nil, errors.Is(err, kgo.ErrClientClosed):
			return nil
		case err == nil, quiet:
			attempt = 0
			l.succeeded(opFetch)
			continue
		}
		attempt++
		if !sleep(ctx, l.failed(opFetch, err, attempt)) {
			return nil
		}
	}
}

// StartFollow runs Follow in a goroutine and returns its result once it
// ends. Unlike `go Follow(ctx)`, the Store knows it is followed when
// StartFollow returns: a miss right after it waits for the follower
// (AwaitCurrent) instead of being final, as a Store nobody follows
// answers, while the goroutine has not got that far yet.
func (l *Loader) StartFollow(ctx context.Context) (wait func() error) {
	if l.bootstrapped.Load() {
		l.follow()
	}
	done := make(chan error, 1)
	go func() { done <- l.Follow(ctx) }()
	return func() error { return <-done }
}

// follow makes the tracker the Store's follower (Follow undoes it when it
// returns).
func (l *Loader) follow() {
	l.tr.setFollowing(true)
	l.store.follower.Store(l.tr)
}

// Health is nil while the Store can be trusted to be current: Follow runs,
// has not been failing for longer than MaxStaleness, and has read both
// topics up to high watermarks listed within MaxStaleness. Otherwise it
// says why not (for /readyz). Safe for concurrent use.
func (l *Loader) Health() error {
	return l.tr.health(l.cfg.MaxStaleness, time.Now())
}

// Close releases the Kafka client. Call it once, after Bootstrap or Follow
// returned (a Follow still polling returns nil).
func (l *Loader) Close() {
	l.cl.Close()
}

// poll applies the records of one PollFetches in order, calling seen (if
// set) for each record, control records included. It returns the first
// fetch error the client will not get past by itself, after applying every
// record it got. ctx's error and kgo.ErrClientClosed come back as they are.
func (l *Loader) poll(ctx context.Context, seen func(*kgo.Record)) error {
	fs := l.cl.PollFetches(ctx)
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		data := false
		for _, r := range p.Records {
			if seen != nil {
				seen(r)
			}
			if r.Attrs.IsControl() {
				continue
			}
			data = true
			l.records++
			if b := l.ap.apply(r); b != nil {
				l.bad++
				l.m.bad.WithLabelValues(r.Topic).Inc()
				l.log.Warn("skipping bad reference record",
					"topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
					"error_type", b.kind, "err", b.err)
			}
		}
		if n := len(p.Records); n > 0 {
			l.next = append(l.next, partNext{topicPartition{p.Topic, p.Partition}, p.Records[n-1].Offset + 1, data})
		}
	})
	// Applied first, then counted as read: whoever sees the position
	// finds the records in the Store.
	l.tr.advance(l.next, time.Now())
	l.next = l.next[:0]
	var first error
	fs.EachError(func(topic string, partition int32, err error) {
		if _, ok := errors.AsType[*kgo.ErrDataLoss](err); ok {
			// The client has already moved on; the Store may miss the lost
			// records, which only a re-bootstrap would restore.
			l.m.dataLoss.Inc()
			l.log.Error("kafka lost reference data", "topic", topic, "partition", partition,
				"error_type", "data_loss", "err", err)
			return
		}
		if first != nil {
			return
		}
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrClientClosed):
			first = err
		default:
			first = fmt.Errorf("refdata: fetch %s[%d]: %w", topic, partition, err)
		}
	})
	return first
}

type topicPartition struct {
	topic     string
	partition int32
}

// progress is how far Bootstrap read a partition: next is the offset after
// the last record seen, end the offset to reach.
type progress struct{ next, end int64 }

// endOffsets lists where each partition of both topics starts and ends
// (the last stable offset, as we read committed) and returns the
// partitions that hold records to read. On error, the map is nil.
func (l *Loader) endOffsets(ctx context.Context) (map[topicPartition]progress, error) {
	at := time.Now()
	topics := []string{l.cfg.CustomersTopic, l.cfg.FxRatesTopic}
	ends, err := l.adm.ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = listedErr(topics, ends)
	}
	if err != nil {
		return nil, err
	}
	starts, err := l.adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = listedErr(topics, starts)
	}
	if err != nil {
		return nil, err
	}
	behind := map[topicPartition]progress{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		// Records deleted by retention or DeleteRecords leave a partition
		// with nothing to read below its end: done at once, like an
		// empty one.
		if s.Offset < o.Offset {
			behind[topicPartition{o.Topic, o.Partition}] = progress{next: s.Offset, end: o.Offset}
		}
	})
	// The client starts every partition at its log start; once Bootstrap
	// read them to these ends, the Store is current as of this listing.
	l.tr.track(offsetsOf(starts))
	l.tr.listed(at, offsetsOf(ends))
	return behind, nil
}

// listedErr is the first error in an offset listing, naming its topic;
// a topic absent from the listing does not exist.
func listedErr(topics []string, l kadm.ListedOffsets) error {
	for _, t := range topics {
		ps, ok := l[t]
		if !ok || len(ps) == 0 {
			return fmt.Errorf("refdata: topic %q: %w", t, ErrTopicNotFound)
		}
		for _, o := range ps {
			switch {
			case o.Err == nil:
			case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
				return fmt.Errorf("refdata: topic %q: %w (%w)", t, ErrTopicNotFound, o.Err)
			default:
				return fmt.Errorf("refdata: list offsets of %s[%d]: %w", t, o.Partition, o.Err)
			}
		}
	}
	return nil
}

// ctxErr turns an error met while ctx ended into what the caller should
// see: ErrBootstrapTimeout with the partitions behind if our own deadline
// passed, the caller's ctx error if they gave up, err otherwise.
func (l *Loader) ctxErr(ctx context.Context, err error, behind map[topicPartition]progress) error {
	if ctx.Err() == nil {
		if errors.Is(err, kgo.ErrClientClosed) {
			return fmt.Errorf("refdata: bootstrap: %w", err)
		}
		return err
	}
	if context.Cause(ctx) == errBootstrapDeadline {
		return fmt.Errorf("refdata: bootstrap: %w within %v: %s", ErrBootstrapTimeout, l.cfg.BootstrapTimeout, describeBehind(behind))
	}
	return fmt.Errorf("refdata: bootstrap: %w", ctx.Err())
}

// describeBehind renders the partitions still behind, a few of them, for
// the timeout error.
func describeBehind(behind map[topicPartition]progress) string {
	if behind == nil {
		return "end offsets not listed"
	}
	const show = 5
	tps := make([]topicPartition, 0, len(behind))
	for tp := range behind {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b topicPartition) int {
		if c := strings.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		return int(a.partition - b.partition)
	})
	var b strings.Builder
	for i, tp := range tps {
		if i == show {
			fmt.Fprintf(&b, ", and %d more", len(tps)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		p := behind[tp]
		fmt.Fprintf(&b, "%s[%d] at offset %d of %d", tp.topic, tp.partition, p.next, p.end)
	}
	return b.String()
}

// loadSchema reads the .avsc at path, or the schema built into the binary
// when path is empty.
func loadSchema(path, builtin string) (*decode.Schema, error) {
	if path != "" {
		return decode.LoadSchema(path)
	}
	text, err := fs.ReadFile(schemas.Avro, builtin)
	if err != nil {
		return nil, err
	}
	return decode.ParseSchema(text)
}
