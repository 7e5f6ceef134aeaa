package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	sluicecfg "github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/kafkaconn"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1   // Kafka or the registry unreachable, a produce failed, ...
	exitUsage       = 2   // bad flags or options (DESIGN.md: wrong config exits 2)
	exitInterrupted = 130 // SIGINT/SIGTERM, as shells report 128+SIGINT
)

// brokersEnv overrides the --brokers default, as in `sluice` itself.
const brokersEnv = "SLUICE_KAFKA_BROKERS"

// registryEnv is the --registry default, the variable that sets
// schema_registry.url in `sluice` itself.
const registryEnv = "SLUICE_SCHEMA_REGISTRY_URL"

// usageError marks errors in the command line; they exit with exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// config is the parsed command line.
type config struct {
	// configFile is a Sluice config whose Kafka connection (brokers, TLS,
	// SASL) and schema registry URL sluice-gen takes; kafkaOpts are its
	// TLS and SASL options.
	configFile      string
	kafkaOpts       []kgo.Opt
	brokers         []string
	count           int
	rate            float64
	seed            int64
	customers       int
	schemas         string
	createTopics    bool
	partitions      int32
	replication     int16
	topics          gen.Topics
	quiet           bool
	timeout         time.Duration
	deliveryTimeout time.Duration
	unknownRatio    float64
	noRateRatio     float64
	currencies      []string
	baseCurrency    string
	start           string
	step            time.Duration
	maxInFlight     int
	noReference     bool
	noPayments      bool
	noShipments     bool
	format          string
	registry        string
	registryFlag    bool // --registry was given (not just the environment)
}

// run executes sluice-gen with args and returns the exit code. Output goes
// to stdout (the summary) and stderr (progress, messages, errors); tty says
// whether stderr is a terminal, which selects a redrawn progress bar over
// periodic progress lines.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, tty bool) int {
	cmd := newRootCmd(getenv, stdout, stderr, tty)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "sluice-gen: %v\n", err)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "Run 'sluice-gen --help' for usage.")
		return exitUsage
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return exitInterrupted
	default:
		return exitFailure
	}
}

func newRootCmd(getenv func(string) string, stdout, stderr io.Writer, tty bool) *cobra.Command {
	var cfg config
	cmd := &cobra.Command{
		Use:   "sluice-gen [flags]",
		Short: "Produce realistic e-commerce test data (Avro or JSON) to Kafka for Sluice",
		Long: `sluice-gen produces a deterministic, referentially consistent e-commerce data
set to Kafka, by default as plain Avro (the writer schemas are the .avsc files
in --schemas):

  customers  (compacted, key customer_id)            --customers records
  fx-rates   (compacted, key <CURRENCY>@<millis>)    a rate history per currency
  orders     (key customer_id)                       --count records
  payments   (key order_id)                          1-2 attempts per order
  shipments  (key order_id)                          delivery steps per order

Reference data (customers, fx rates) is produced and acknowledged first, then
each order followed by its payments and shipments. The same --seed always gives
the same records; ids carry a seed-derived tag, so data sets of different seeds
do not collide. A share of orders names customers that are never produced
(--unknown-customer-ratio) and, if asked, a currency without any rate
(--no-rate-ratio), which Sluice must dead-letter.

--format sets the wire format of orders, payments and shipments, one of the
formats a Sluice pipeline reads:
  avro            plain Avro binary (the default)
  avro-confluent  magic byte 0, 4-byte schema id, Avro body; the three .avsc
                  schemas are first registered with the schema registry at
                  --registry under the subjects <topic>-value
  json            one JSON object per record, decimals as strings, times in
                  epoch milliseconds
Customers and fx rates are plain Avro in every format (Sluice reads them so).

By default missing topics are created (orders, payments, shipments with
--partitions partitions; customers and fx-rates compacted with 1 partition);
existing topics are left as they are.

Progress is drawn on stderr (a bar on a terminal, otherwise a line every few
seconds); a summary of records per topic is printed on stdout at the end.

Exit status: 0 on success, 1 when Kafka or the schema registry is unreachable,
the registry refuses a schema or a record could not be produced, 2 for invalid
flags, 130 when interrupted.`,
		Example: `  # 10,000 orders as fast as the broker takes them, to a local broker
  sluice-gen

  # a live demo: 200 events/s with event times starting now
  sluice-gen --count 1000000 --rate 200 --start now

  # Confluent-framed Avro, schemas registered with a registry
  sluice-gen --format avro-confluent --registry http://127.0.0.1:8081

  # another data set into other topics, including 1% orders Sluice must dead-letter
  SLUICE_KAFKA_BROKERS=kafka-1:9092,kafka-2:9092 sluice-gen --seed 7 \
    --topic-orders orders-test --no-rate-ratio 0.01`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q (sluice-gen takes only flags)", args[0])
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("brokers") {
				if env := getenv(brokersEnv); env != "" {
					cfg.brokers = splitList(env)
				}
			}
			cfg.registryFlag = cmd.Flags().Changed("registry")
			if !cfg.registryFlag {
				cfg.registry = strings.TrimSpace(getenv(registryEnv))
			}
			if cfg.configFile != "" {
				if err := cfg.fromSluiceConfig(cmd.Flags().Changed("brokers")); err != nil {
					return err
				}
			}
			return runGen(cmd.Context(), cfg, stdout, stderr, tty)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&cfg.configFile, "config", "c", "", "a Sluice config file: its kafka.brokers, kafka.tls and kafka.sasl (and schema_registry.url) connect sluice-gen as they connect Sluice")
	f.StringSliceVar(&cfg.brokers, "brokers", []string{"127.0.0.1:9092"}, "Kafka bootstrap brokers, comma-separated (env "+brokersEnv+" when the flag is not given)")
	f.IntVar(&cfg.count, "count", 10000, "number of orders to produce (each with its payments and shipments)")
	f.Float64Var(&cfg.rate, "rate", 0, "event records (orders+payments+shipments) per second; 0 = as fast as possible")
	f.Int64Var(&cfg.seed, "seed", 1, "data set seed; the same seed produces the same records")
	f.IntVar(&cfg.customers, "customers", gen.DefaultCustomers, "number of customers")
	f.StringVar(&cfg.schemas, "schemas", gen.DefaultSchemaDir, "directory with order.avsc, payment.avsc, shipment.avsc, customer.avsc, fx_rate.avsc")
	f.BoolVar(&cfg.createTopics, "create-topics", true, "create missing topics (set --create-topics=false to skip)")
	f.Int32Var(&cfg.partitions, "partitions", 6, "partitions of created orders, payments and shipments topics")
	f.Int16Var(&cfg.replication, "replication-factor", -1, "replication factor of created topics; -1 = the broker's default")
	f.StringVar(&cfg.topics.Orders, "topic-orders", gen.DefaultOrdersTopic, "orders topic")
	f.StringVar(&cfg.topics.Payments, "topic-payments", gen.DefaultPaymentsTopic, "payments topic")
	f.StringVar(&cfg.topics.Shipments, "topic-shipments", gen.DefaultShipmentsTopic, "shipments topic")
	f.StringVar(&cfg.topics.Customers, "topic-customers", gen.DefaultCustomersTopic, "customers topic (compacted)")
	f.StringVar(&cfg.topics.FxRates, "topic-fx-rates", gen.DefaultFxRatesTopic, "fx rates topic (compacted)")
	f.BoolVarP(&cfg.quiet, "quiet", "q", false, "no progress and no summary; errors only")
	f.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "how long to wait for Kafka to answer at start-up and for topic creation")
	f.DurationVar(&cfg.deliveryTimeout, "delivery-timeout", time.Minute, "fail a record not acknowledged within this time")
	f.Float64Var(&cfg.unknownRatio, "unknown-customer-ratio", gen.DefaultUnknownCustomerRatio, "share of orders whose customer is never produced")
	f.Float64Var(&cfg.noRateRatio, "no-rate-ratio", 0, "share of orders in "+gen.DefaultNoRateCurrency+", a currency with no fx rate")
	f.StringSliceVar(&cfg.currencies, "currencies", gen.DefaultCurrencies(), "order currencies, each with an fx rate history (known: "+strings.Join(gen.KnownCurrencies(), ",")+")")
	f.StringVar(&cfg.baseCurrency, "base-currency", gen.DefaultBaseCurrency, "currency the fx rates convert into (rate 1)")
	f.StringVar(&cfg.start, "start", gen.DefaultStart().Format(time.RFC3339), `event time of the first order (RFC 3339), or "now"`)
	f.DurationVar(&cfg.step, "step", gen.DefaultStep, "event time between consecutive orders")
	f.IntVar(&cfg.maxInFlight, "max-in-flight", gen.DefaultMaxInFlight, "records produced and not yet acknowledged, at most")
	f.BoolVar(&cfg.noReference, "no-reference", false, "do not produce customers and fx rates")
	f.BoolVar(&cfg.noPayments, "no-payments", false, "do not produce payments")
	f.BoolVar(&cfg.noShipments, "no-shipments", false, "do not produce shipments")
	f.StringVar(&cfg.format, "format", string(gen.FormatAvro), "wire format of orders, payments and shipments: "+formatNames())
	f.StringVar(&cfg.registry, "registry", "", "schema registry URL for --format avro-confluent, e.g. http://127.0.0.1:8081 (env "+registryEnv+" when the flag is not given)")
	return cmd
}

// fromSluiceConfig takes the Kafka connection of the Sluice config at
// c.configFile (loaded as `sluice run` loads it, environment overrides
// included): the brokers unless --brokers was given, TLS and SASL, and
// the schema registry URL unless --registry or its variable was given. A
// config Sluice would refuse is a usage error naming the key.
func (c *config) fromSluiceConfig(brokersFlag bool) error {
	sc, err := sluicecfg.Load(c.configFile)
	if err != nil {
		return usageError{fmt.Errorf("--config %s: %w", c.configFile, err)}
	}
	if !brokersFlag {
		c.brokers = sc.Kafka.Brokers
	}
	if c.kafkaOpts, err = kafkaconn.Security(sc.Kafka); err != nil {
		return usageError{fmt.Errorf("--config %s: %w", c.configFile, err)}
	}
	if c.registry == "" {
		c.registry = sc.SchemaRegistry.URL
	}
	return nil
}

// options turns the flags into generator options, or a usage error.
func (c config) options() (gen.Options, error) {
	o := gen.Options{
		Seed:                 c.seed,
		SchemaDir:            c.schemas,
		Customers:            c.customers,
		UnknownCustomerRatio: c.unknownRatio,
		NoRateCurrencyRatio:  c.noRateRatio,
		Currencies:           c.currencies,
		BaseCurrency:         c.baseCurrency,
		Step:                 c.step,
	}
	if c.customers <= 0 {
		return o, usagef("--customers must be positive, got %d", c.customers)
	}
	if c.step <= 0 {
		return o, usagef("--step must be positive, got %v", c.step)
	}
	switch {
	case c.unknownRatio == 0:
		o.UnknownCustomerRatio = -1 // gen: negative means none; 0 means its default
	case c.unknownRatio < 0 || c.unknownRatio > 1:
		return o, usagef("--unknown-customer-ratio must be in [0, 1], got %v", c.unknownRatio)
	}
	if c.noRateRatio < 0 || c.noRateRatio > 1 {
		return o, usagef("--no-rate-ratio must be in [0, 1], got %v", c.noRateRatio)
	}
	for i, cur := range o.Currencies {
		o.Currencies[i] = strings.ToUpper(strings.TrimSpace(cur))
	}
	o.BaseCurrency = strings.ToUpper(o.BaseCurrency)
	switch c.start {
	case "now":
		o.Start = time.Now().UTC().Truncate(time.Millisecond)
	default:
		t, err := time.Parse(time.RFC3339Nano, c.start)
		if err != nil {
			return o, usagef("--start: want RFC 3339 (e.g. 2026-01-01T00:00:00Z) or \"now\": %v", err)
		}
		o.Start = t
	}
	return o, nil
}

func (c config) validate() error {
	switch {
	case len(c.brokers) == 0:
		return usagef("--brokers: no broker given")
	case c.count < 0:
		return usagef("--count must not be negative, got %d", c.count)
	case c.rate < 0:
		return usagef("--rate must not be negative, got %v", c.rate)
	case c.partitions < 1:
		return usagef("--partitions must be at least 1, got %d", c.partitions)
	case c.replication == 0 || c.replication < -1:
		return usagef("--replication-factor must be positive or -1, got %d", c.replication)
	case c.timeout <= 0:
		return usagef("--timeout must be positive, got %v", c.timeout)
	case c.deliveryTimeout <= 0:
		return usagef("--delivery-timeout must be positive, got %v", c.deliveryTimeout)
	case c.maxInFlight <= 0:
		return usagef("--max-in-flight must be positive, got %d", c.maxInFlight)
	}
	if err := c.validateFormat(); err != nil {
		return err
	}
	for name, t := range map[string]string{
		"--topic-orders": c.topics.Orders, "--topic-payments": c.topics.Payments, "--topic-shipments": c.topics.Shipments,
		"--topic-customers": c.topics.Customers, "--topic-fx-rates": c.topics.FxRates,
	} {
		if strings.TrimSpace(t) == "" {
			return usagef("%s must not be empty", name)
		}
	}
	return nil
}

func runGen(ctx context.Context, cfg config, stdout, stderr io.Writer, tty bool) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	opts, err := cfg.options()
	if err != nil {
		return err
	}
	g, err := gen.New(opts)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return usageError{fmt.Errorf("%w (point --schemas at the directory with the .avsc files; the default is relative to the repository root)", err)}
		}
		return usageError{err}
	}

	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.brokers...),
		kgo.ClientID("sluice-gen"),
		kgo.RecordDeliveryTimeout(cfg.deliveryTimeout),
	}, cfg.kafkaOpts...)...)
	if err != nil {
		return usageError{fmt.Errorf("kafka client: %w", err)}
	}
	defer cl.Close()

	if err := ping(ctx, cl, cfg); err != nil {
		return err
	}
	events, err := eventEncoder(ctx, cfg, g, stderr)
	if err != nil {
		return err
	}
	if cfg.createTopics {
		tctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		err := ensureTopics(tctx, kadm.NewClient(cl), cfg, func(msg string) {
			if !cfg.quiet {
				fmt.Fprintln(stderr, "sluice-gen: "+msg)
			}
		})
		cancel()
		if err != nil {
			return err
		}
	}

	plan := gen.Plan{
		Orders:        cfg.count,
		Rate:          cfg.rate,
		Topics:        cfg.topics,
		MaxInFlight:   cfg.maxInFlight,
		SkipReference: cfg.noReference,
		SkipPayments:  cfg.noPayments,
		SkipShipments: cfg.noShipments,
		Encoder:       events,
	}
	var onProgress func(gen.Progress)
	var ui *progressUI
	if !cfg.quiet {
		ui = newProgressUI(stderr, tty)
		onProgress = ui.update
		plan.ProgressInterval = ui.interval()
	}
	sum, err := gen.Produce(ctx, cl, g, plan, onProgress)
	if ui != nil {
		ui.finish()
	}
	if !cfg.quiet || err != nil {
		w := stdout
		if err != nil {
			w = stderr // partial counts belong with the error
		}
		printSummary(w, g, sum, cfg.seed, cfg.format)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return err
	}
	return nil
}

// ping fails fast, with the brokers in the message, when none answers
// within cfg.timeout.
func ping(ctx context.Context, cl *kgo.Client, cfg config) error {
	pctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		check := "--brokers or " + brokersEnv
		if cfg.configFile != "" {
			check = "kafka.brokers, kafka.tls and kafka.sasl of --config " + cfg.configFile
		}
		return fmt.Errorf("cannot reach Kafka at %s within %v (check %s): %w",
			strings.Join(cfg.brokers, ","), cfg.timeout, check, err)
	}
	return nil
}

func printSummary(w io.Writer, g *gen.Generator, s gen.Summary, seed int64, format string) {
	t := s.Topics
	rows := []struct {
		topic string
		n     int64
	}{
		{t.Customers, s.Acked.Customers}, {t.FxRates, s.Acked.FxRates}, {t.Orders, s.Acked.Orders},
		{t.Payments, s.Acked.Payments}, {t.Shipments, s.Acked.Shipments},
	}
	width := len("total")
	for _, r := range rows {
		width = max(width, len(r.topic))
	}
	fmt.Fprintf(w, "%-*s  %10s\n", width, "topic", "records")
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %10d\n", width, r.topic, r.n)
	}
	fmt.Fprintf(w, "%-*s  %10d  in %v, %.0f records/s\n", width, "total", s.Acked.Total(),
		s.Elapsed.Round(time.Millisecond), s.RecordsPerSecond())
	if s.Failed > 0 {
		fmt.Fprintf(w, "%-*s  %10d\n", width, "failed", s.Failed)
	}
	if s.EndSeq > s.FirstSeq {
		fmt.Fprintf(w, "seed %d, format %s, orders %s .. %s\n", seed, format, g.OrderID(s.FirstSeq), g.OrderID(s.EndSeq-1))
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
