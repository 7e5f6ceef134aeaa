package refdata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/gen"
)

const (
	schemaDir      = "../../schemas/avro"
	customersTopic = "customers"
	fxRatesTopic   = "fx-rates"
)

// env is one kfake cluster with both reference topics and a producer.
type env struct {
	c      *kfake.Cluster
	prod   *kgo.Client
	codecs *gen.Codecs
	logs   *itest.LogBuffer
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, customersTopic, fxRatesTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	codecs, err := gen.LoadCodecs(schemaDir)
	if err != nil {
		t.Fatal(err)
	}
	return &env{c: c, prod: prod, codecs: codecs, logs: &itest.LogBuffer{}}
}

// config is a LoaderConfig for the env's cluster; mod adjusts it.
func (e *env) config(mod ...func(*LoaderConfig)) LoaderConfig {
	cfg := LoaderConfig{
		Brokers:          e.c.ListenAddrs(),
		CustomersTopic:   customersTopic,
		FxRatesTopic:     fxRatesTopic,
		CustomersSchema:  schemaDir + "/customer.avsc",
		FxRatesSchema:    schemaDir + "/fx_rate.avsc",
		BootstrapTimeout: 20 * time.Second,
		Log:              slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// Fetch promptly in tests (the default max wait is 5s).
		ExtraOpts: []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)},
	}
	for _, m := range mod {
		m(&cfg)
	}
	return cfg
}

func (e *env) loader(t *testing.T, store *Store, mod ...func(*LoaderConfig)) *Loader {
	t.Helper()
	l, err := NewLoader(e.config(mod...), store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func (e *env) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func (e *env) customerRec(t *testing.T, c gen.Customer) *kgo.Record {
	t.Helper()
	k, v, err := e.codecs.EncodeCustomer(c)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: customersTopic, Key: k, Value: v}
}

func (e *env) rateRec(t *testing.T, r gen.FxRate) *kgo.Record {
	t.Helper()
	k, v, err := e.codecs.EncodeFxRate(r)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: fxRatesTopic, Key: k, Value: v}
}

func tombstone(topic, key string) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(key)}
}

func customer(id, name, country string, seg gen.Segment) gen.Customer {
	return gen.Customer{CustomerID: id, Name: name, Email: strings.ToLower(name) + "@example.com",
		Country: country, Segment: seg, CreatedAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
}

func rate(cur, r string, fromMillis int64) gen.FxRate {
	return gen.FxRate{Currency: cur, Rate: dec(r), EffectiveFrom: ms(fromMillis)}
}

func bootstrap(t *testing.T, l *Loader) Stats {
	t.Helper()
	st, err := l.Bootstrap(context.Background())
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	return st
}

// TestBootstrapLoadsGeneratedData produces a generator's whole reference
// data set and checks that Bootstrap returns with all of it in the Store:
// counts, every customer, and every rate exactly (value and scale).
func TestBootstrapLoadsGeneratedData(t *testing.T) {
	for _, partitions := range []int32{1, 4} {
		t.Run(fmt.Sprintf("%d partitions", partitions), func(t *testing.T) {
			e := newEnv(t, partitions)
			g, err := gen.New(gen.Options{Seed: 42, SchemaDir: schemaDir, Customers: 3000})
			if err != nil {
				t.Fatal(err)
			}
			customers, rates := g.Customers(), g.FxRates()
			var recs []*kgo.Record
			for _, c := range customers {
				recs = append(recs, e.customerRec(t, c))
			}
			for _, r := range rates {
				recs = append(recs, e.rateRec(t, r))
			}
			e.produce(t, recs...)

			store := NewStore(g.Options().BaseCurrency)
			st := bootstrap(t, e.loader(t, store))

			// Counted when Bootstrap returned, not after some wait: it
			// must not return before the end offsets are reached.
			nc, nr := store.Counts()
			if nc != len(customers) || nr != len(rates) {
				t.Fatalf("store holds %d customers, %d rates; want %d, %d", nc, nr, len(customers), len(rates))
			}
			if st.Customers != nc || st.Rates != nr || st.Records != int64(len(recs)) || st.Bad != 0 || st.Elapsed <= 0 {
				t.Fatalf("Stats %+v, want %d customers, %d rates, %d records, 0 bad", st, nc, nr, len(recs))
			}
			for _, want := range customers {
				got, ok := store.Customer(want.CustomerID)
				if !ok || got != (Customer{Name: want.Name, Country: want.Country, Segment: string(want.Segment)}) {
					t.Fatalf("customer %s = %+v (%v), want %+v", want.CustomerID, got, ok, want)
				}
			}
			base := 0
			for _, want := range rates {
				if want.Currency == store.Base() {
					// The generator also publishes the base currency's
					// own 1.00000000; the Store keeps it but answers 1.
					base++
					if got, ok := store.RateAt(want.Currency, want.EffectiveFrom); !ok || !got.Rate.Equal(want.Rate) {
						t.Fatalf("RateAt(%s) = %+v (%v), want 1", want.Key(), got, ok)
					}
					continue
				}
				got, ok := store.RateAt(want.Currency, want.EffectiveFrom)
				if !ok || got.EffectiveFrom != want.EffectiveFrom.UnixMilli() || !sameDecimal(got.Rate, want.Rate) {
					t.Fatalf("RateAt(%s) = %+v (%v), want %s", want.Key(), got, ok, want.Rate)
				}
			}
			if base == len(rates) {
				t.Fatal("the generator produced only base-currency rates")
			}
			// Between changes the Store agrees with the generator's own
			// lookup, to the last digit.
			for _, r := range rates[:min(len(rates), 40)] {
				if r.Currency == store.Base() {
					continue // 1 either way, checked above
				}
				at := r.EffectiveFrom.Add(time.Minute)
				want, wok := g.RateAt(r.Currency, at)
				got, gok := store.RateAt(r.Currency, at)
				if wok != gok || !sameDecimal(got.Rate, want.Rate) {
					t.Fatalf("RateAt(%s, %v) = %s (%v), generator says %s (%v)", r.Currency, at, got.Rate, gok, want.Rate, wok)
				}
			}
			if !strings.Contains(e.logs.String(), `"msg":"reference data loaded"`) {
				t.Errorf("no %q log; logs:\n%s", "reference data loaded", e.logs)
			}
		})
	}
}

func TestBootstrapEmptyTopicsReturnsPromptly(t *testing.T) {
	e := newEnv(t, 3)
	store := NewStore("USD")
	start := time.Now()
	st := bootstrap(t, e.loader(t, store))
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Bootstrap of empty topics took %v", d)
	}
	if st.Customers != 0 || st.Rates != 0 || st.Records != 0 {
		t.Fatalf("Stats %+v, want zeros", st)
	}
}

func TestBootstrapErrors(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*LoaderConfig)
		fault   *kfake.Fault
		ctx     func() (context.Context, context.CancelFunc)
		wantIs  error
		wantMsg []string
		maxTime time.Duration
	}{
		{
			name:    "missing customers topic",
			mod:     func(c *LoaderConfig) { c.CustomersTopic = "no-such-customers" },
			wantIs:  ErrTopicNotFound,
			wantMsg: []string{`"no-such-customers"`},
			maxTime: 5 * time.Second,
		},
		{
			name:    "missing fx rates topic",
			mod:     func(c *LoaderConfig) { c.FxRatesTopic = "no-such-rates" },
			wantIs:  ErrTopicNotFound,
			wantMsg: []string{`"no-such-rates"`},
			maxTime: 5 * time.Second,
		},
		{
			// Every fetch of customers fails with a retriable error, so
			// the partition never gets read: the timeout must end it.
			name:    "timeout honoured",
			mod:     func(c *LoaderConfig) { c.BootstrapTimeout = 700 * time.Millisecond },
			fault:   &kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: customersTopic, Err: kerr.NotLeaderForPartition, Count: -1},
			wantIs:  ErrBootstrapTimeout,
			wantMsg: []string{"customers[0] at offset 0 of 1", "700ms"},
			maxTime: 3 * time.Second,
		},
		{
			name:  "caller gives up first",
			fault: &kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: customersTopic, Err: kerr.NotLeaderForPartition, Count: -1},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 500*time.Millisecond)
			},
			wantIs:  context.DeadlineExceeded,
			maxTime: 3 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.produce(t, e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentVIP)))
			if tt.fault != nil {
				h := e.c.Fault(*tt.fault)
				t.Cleanup(h.Remove)
			}
			mods := []func(*LoaderConfig){}
			if tt.mod != nil {
				mods = append(mods, tt.mod)
			}
			l := e.loader(t, NewStore("USD"), mods...)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			start := time.Now()
			_, err := l.Bootstrap(ctx)
			elapsed := time.Since(start)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Bootstrap error %v, want %v", err, tt.wantIs)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if tt.wantIs == context.DeadlineExceeded && errors.Is(err, ErrBootstrapTimeout) {
				t.Errorf("caller's deadline reported as the bootstrap timeout: %v", err)
			}
			if elapsed > tt.maxTime {
				t.Errorf("Bootstrap took %v, want under %v", elapsed, tt.maxTime)
			}
		})
	}
}

// TestApplySemantics produces a script of records and checks the state
// Bootstrap leaves: updates replace, tombstones delete, last write wins.
func TestApplySemantics(t *testing.T) {
	e := newEnv(t, 1)
	e.produce(t,
		e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentConsumer)),
		e.customerRec(t, customer("C-2", "Bo", "SE", gen.SegmentBusiness)),
		e.customerRec(t, customer("C-3", "Cy", "FR", gen.SegmentVIP)),
		e.rateRec(t, rate("EUR", "1.10000000", 1000)),
		e.rateRec(t, rate("EUR", "1.20000000", 2000)),
		e.rateRec(t, rate("EUR", "1.30000000", 3000)),
		e.rateRec(t, rate("GBP", "1.25000000", 1000)),
		// Changes:
		e.customerRec(t, customer("C-1", "Ada Lovelace", "GB", gen.SegmentVIP)), // update
		tombstone(customersTopic, "C-2"),                                        // delete
		tombstone(customersTopic, "C-9"),                                        // delete of an unknown id: no-op
		tombstone(fxRatesTopic, "EUR@2000"),                                     // delete one history entry
		e.rateRec(t, rate("GBP", "1.26000000", 1000)),                           // same instant: replaces
		e.customerRec(t, customer("C-3", "Cy", "FR", gen.SegmentVIP)),           // deleted below, then
		tombstone(customersTopic, "C-3"),
		e.customerRec(t, customer("C-3", "Cy Again", "BE", gen.SegmentConsumer)), // re-created
	)
	store := NewStore("USD")
	st := bootstrap(t, e.loader(t, store))
	if st.Bad != 0 || st.Records != 15 {
		t.Fatalf("Stats %+v, want 15 records, 0 bad", st)
	}

	customers := []struct {
		id   string
		ok   bool
		want Customer
	}{
		{"C-1", true, Customer{"Ada Lovelace", "GB", "VIP"}},
		{"C-2", false, Customer{}},
		{"C-3", true, Customer{"Cy Again", "BE", "CONSUMER"}},
		{"C-9", false, Customer{}},
	}
	for _, tt := range customers {
		got, ok := store.Customer(tt.id)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Customer(%s) = %+v %v, want %+v %v", tt.id, got, ok, tt.want, tt.ok)
		}
	}

	rates := []struct {
		cur  string
		at   int64
		ok   bool
		from int64
		rate string
	}{
		{"EUR", 999, false, 0, ""},
		{"EUR", 1000, true, 1000, "1.10000000"},
		{"EUR", 2000, true, 1000, "1.10000000"}, // 2000 was deleted: 1000 still in force
		{"EUR", 2999, true, 1000, "1.10000000"},
		{"EUR", 3000, true, 3000, "1.30000000"},
		{"GBP", 1000, true, 1000, "1.26000000"},
		{"USD", 0, true, 0, "1"},
		{"CHF", 5000, false, 0, ""},
	}
	for _, tt := range rates {
		got, ok := store.RateAt(tt.cur, ms(tt.at))
		if ok != tt.ok || (ok && (got.EffectiveFrom != tt.from || !sameDecimal(got.Rate, dec(tt.rate)))) {
			t.Errorf("RateAt(%s, %d) = %d %s %v, want %d %s %v", tt.cur, tt.at, got.EffectiveFrom, got.Rate, ok, tt.from, tt.rate, tt.ok)
		}
	}
	if nc, nr := store.Counts(); nc != 2 || nr != 3 {
		t.Errorf("Counts = %d customers, %d rates; want 2, 3", nc, nr)
	}
}

// TestBadRecordsAreSkippedAndCounted runs each kind of bad record between
// two good ones, in Bootstrap and in Follow: the bad one is counted under
// its topic and logged with its offset, both good ones load.
func TestBadRecordsAreSkippedAndCounted(t *testing.T) {
	garbage := make([]byte, 64)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(garbage) // deterministic garbage
	tests := []struct {
		name  string
		bad   func(e *env) *kgo.Record
		topic string
		kind  string
	}{
		{"random bytes as a customer", func(*env) *kgo.Record {
			return &kgo.Record{Topic: customersTopic, Key: []byte("C-X"), Value: garbage}
		}, customersTopic, badDecode},
		{"random bytes as a rate", func(*env) *kgo.Record {
			return &kgo.Record{Topic: fxRatesTopic, Key: []byte("EUR@5000"), Value: garbage}
		}, fxRatesTopic, badDecode},
		{"empty customer value (not a tombstone)", func(*env) *kgo.Record {
			return &kgo.Record{Topic: customersTopic, Key: []byte("C-X"), Value: []byte{}}
		}, customersTopic, badDecode},
		{"customer key disagrees with customer_id", func(e *env) *kgo.Record {
			r := e.customerRec(t, customer("C-X", "Xi", "CN", gen.SegmentVIP))
			r.Key = []byte("C-Y")
			return r
		}, customersTopic, badKeyMismatch},
		{"customer tombstone without key", func(*env) *kgo.Record {
			return &kgo.Record{Topic: customersTopic}
		}, customersTopic, badKey},
		{"rate key disagrees on currency", func(e *env) *kgo.Record {
			r := e.rateRec(t, rate("EUR", "1.5", 5000))
			r.Key = []byte("GBP@5000")
			return r
		}, fxRatesTopic, badKeyMismatch},
		{"rate key disagrees on time", func(e *env) *kgo.Record {
			r := e.rateRec(t, rate("EUR", "1.5", 5000))
			r.Key = []byte("EUR@5001")
			return r
		}, fxRatesTopic, badKeyMismatch},
		{"rate tombstone with unparsable key", func(*env) *kgo.Record {
			return tombstone(fxRatesTopic, "EUR-5000")
		}, fxRatesTopic, badKey},
		{"rate key with non-canonical number", func(*env) *kgo.Record {
			return tombstone(fxRatesTopic, "EUR@+1000")
		}, fxRatesTopic, badKey},
		{"zero rate", func(e *env) *kgo.Record {
			return e.rateRec(t, rate("EUR", "0", 5000))
		}, fxRatesTopic, badValue},
	}
	for _, phase := range []string{"bootstrap", "follow"} {
		for _, tt := range tests {
			t.Run(phase+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t, 1)
				store := NewStore("USD")
				l := e.loader(t, store)
				batch := []*kgo.Record{
					e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentVIP)),
					e.rateRec(t, rate("EUR", "1.10000000", 1000)),
					tt.bad(e),
					e.customerRec(t, customer("C-2", "Bo", "SE", gen.SegmentBusiness)),
					e.rateRec(t, rate("EUR", "1.20000000", 2000)),
				}
				badOffset := 1 // within its topic's partition
				if phase == "bootstrap" {
					e.produce(t, batch...)
					st := bootstrap(t, l)
					if st.Bad != 1 || st.Records != 5 {
						t.Fatalf("Stats %+v, want 5 records, 1 bad", st)
					}
				} else {
					bootstrap(t, l)
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					go func() { done <- l.Follow(ctx) }()
					e.produce(t, batch...)
					waitFor(t, "the second good records", func() bool {
						_, c2 := store.Customer("C-2")
						r, ok := store.RateAt("EUR", ms(2000))
						return c2 && ok && r.EffectiveFrom == 2000
					})
					cancel()
					if err := <-done; err != nil {
						t.Fatalf("Follow: %v", err)
					}
				}
				if nc, nr := store.Counts(); nc != 2 || nr != 2 {
					t.Fatalf("store holds %d customers, %d rates; want 2, 2", nc, nr)
				}
				for topic, want := range map[string]float64{customersTopic: 0, fxRatesTopic: 0, tt.topic: 1} {
					if got := counterValue(t, l.m.bad.WithLabelValues(topic)); got != want {
						t.Errorf("bad records counted for %s: %v, want %v", topic, got, want)
					}
				}
				logs := e.logs.String()
				want := fmt.Sprintf(`"msg":"skipping bad reference record","stage":"refdata","topic":%q,"partition":0,"offset":%d,"error_type":%q`, tt.topic, badOffset, tt.kind)
				if !strings.Contains(logs, want) {
					t.Errorf("no Warn log %s in:\n%s", want, logs)
				}
			})
		}
	}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFollowAppliesNewRecords(t *testing.T) {
	e := newEnv(t, 2)
	e.produce(t,
		e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentConsumer)),
		e.customerRec(t, customer("C-2", "Bo", "SE", gen.SegmentBusiness)),
		e.rateRec(t, rate("EUR", "1.10000000", 1000)),
	)
	store := NewStore("USD")
	l := e.loader(t, store)
	if err := l.Follow(context.Background()); !errors.Is(err, ErrNotBootstrapped) {
		t.Fatalf("Follow before Bootstrap: %v, want ErrNotBootstrapped", err)
	}
	bootstrap(t, l)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Follow(ctx) }()

	e.produce(t,
		e.customerRec(t, customer("C-1", "Ada Lovelace", "GB", gen.SegmentVIP)),
		tombstone(customersTopic, "C-2"),
		e.customerRec(t, customer("C-3", "Cy", "FR", gen.SegmentVIP)),
		e.rateRec(t, rate("EUR", "1.20000000", 2000)),
	)
	waitFor(t, "the followed records", func() bool {
		c1, _ := store.Customer("C-1")
		_, c2 := store.Customer("C-2")
		_, c3 := store.Customer("C-3")
		r, _ := store.RateAt("EUR", ms(2000))
		return c1.Name == "Ada Lovelace" && !c2 && c3 && r.EffectiveFrom == 2000
	})
	// Bootstrap's records were not re-applied on top (C-1 would revert).
	if c1, _ := store.Customer("C-1"); c1.Segment != "VIP" {
		t.Fatalf("C-1 = %+v after following, want the update", c1)
	}

	e.produce(t, tombstone(fxRatesTopic, "EUR@2000"))
	waitFor(t, "the rate tombstone", func() bool {
		r, _ := store.RateAt("EUR", ms(2000))
		return r.EffectiveFrom == 1000
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after cancel")
	}
}

func TestFollowReturnsOnClose(t *testing.T) {
	e := newEnv(t, 1)
	l := e.loader(t, NewStore("USD"))
	bootstrap(t, l)
	done := make(chan error, 1)
	go func() { done <- l.Follow(context.Background()) }()
	time.Sleep(50 * time.Millisecond) // let it block in a poll
	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow returned %v after Close, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after Close")
	}
}

// TestFollowRetriesOffsetOutOfRange: with NoResetOffset the client does
// not silently rewind or skip; Follow reports the partition (one WARN,
// counted) and keeps following instead of returning.
func TestFollowRetriesOffsetOutOfRange(t *testing.T) {
	e := newEnv(t, 1)
	e.produce(t, e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentVIP)))
	store := NewStore("USD")
	l := fastLoader(t, e, store, nil)
	bootstrap(t, l)
	h := e.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: customersTopic, Err: kerr.OffsetOutOfRange, Count: 1})

	done := follow(t, l)
	waitFor(t, "the fault", func() bool { return h.Hits() == 1 })
	waitFor(t, "the failure counted", func() bool { return counterValue(t, l.m.errors.WithLabelValues("kafka")) == 1 })
	e.produce(t, e.customerRec(t, customer("C-2", "Bo", "SE", gen.SegmentVIP)))
	waitFor(t, "the record after the failure", func() bool { _, ok := store.Customer("C-2"); return ok })
	if n, _ := store.Counts(); n != 2 {
		t.Fatalf("store holds %d customers, want 2", n)
	}
	if w := warns(e.logs.String(), "following the reference topics failed; retrying"); len(w) != 1 ||
		!strings.Contains(w[0], `"error_type":"kafka"`) || !strings.Contains(w[0], "customers[0]") {
		t.Fatalf("WARNs %q, want one naming customers[0] with error_type kafka", w)
	}
	done()
}

// TestTransactionsReadCommitted: records of an aborted transaction never
// reach the Store, and a partition whose last offsets are transaction
// markers (which carry no data) still counts as read to its end.
func TestTransactionsReadCommitted(t *testing.T) {
	e := newEnv(t, 1)
	txn, err := kgo.NewClient(kgo.SeedBrokers(e.c.ListenAddrs()...), kgo.TransactionalID("refdata-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inTxn := func(commit kgo.TransactionEndTry, recs ...*kgo.Record) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := txn.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	inTxn(kgo.TryCommit,
		e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentVIP)),
		e.rateRec(t, rate("EUR", "1.10000000", 1000)))
	inTxn(kgo.TryAbort,
		e.customerRec(t, customer("C-1", "Aborted", "GB", gen.SegmentVIP)),
		e.customerRec(t, customer("C-2", "Aborted", "SE", gen.SegmentVIP)),
		e.rateRec(t, rate("EUR", "9.99000000", 1000)))

	store := NewStore("USD")
	st := bootstrap(t, e.loader(t, store, func(c *LoaderConfig) { c.BootstrapTimeout = 5 * time.Second }))
	if c1, _ := store.Customer("C-1"); c1.Name != "Ada" {
		t.Errorf("C-1 = %+v, want the committed one", c1)
	}
	if _, ok := store.Customer("C-2"); ok {
		t.Error("C-2 of the aborted transaction was applied")
	}
	if r, _ := store.RateAt("EUR", ms(1000)); !sameDecimal(r.Rate, dec("1.10000000")) {
		t.Errorf("EUR rate %s, want the committed 1.10000000", r.Rate)
	}
	if st.Records != 2 {
		t.Errorf("Stats.Records = %d, want the 2 committed records", st.Records)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, 1)
	e.produce(t,
		e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentVIP)),
		e.customerRec(t, customer("C-2", "Bo", "SE", gen.SegmentVIP)),
		e.rateRec(t, rate("EUR", "1.10000000", 1000)),
		&kgo.Record{Topic: fxRatesTopic, Key: []byte("EUR@2"), Value: []byte("junk")},
	)
	reg := prometheus.NewPedanticRegistry()
	l := e.loader(t, NewStore("USD"), func(c *LoaderConfig) { c.Registerer = reg })
	bootstrap(t, l)
	want := map[string]float64{
		`sluice_refdata_bad_records_total{topic="customers"}`: 0,
		`sluice_refdata_bad_records_total{topic="fx-rates"}`:  1,
		`sluice_refdata_customers`:                            2,
		`sluice_refdata_rates`:                                1,
		`sluice_refdata_data_loss_total`:                      0,
	}
	got := gather(t, reg)
	if got[`sluice_refdata_following`] != 0 {
		t.Error("following before Follow runs")
	}
	if got := withoutFollowerSeries(t, got); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("series\n%v\nwant\n%v", got, want)
	}
	// A second Loader on the same registry is a configuration error and
	// leaves the first one's series in place.
	if _, err := NewLoader(e.config(func(c *LoaderConfig) { c.Registerer = reg }), NewStore("USD")); err == nil {
		t.Fatal("second NewLoader on one registry succeeded")
	}
	if got := withoutFollowerSeries(t, gather(t, reg)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a failed second registration: series\n%v\nwant\n%v", got, want)
	}
}

// withoutFollowerSeries checks that the follower's series (follow_test.go
// checks their values) are in got, per topic, and returns got without them.
func withoutFollowerSeries(t *testing.T, got map[string]float64) map[string]float64 {
	t.Helper()
	for _, name := range []string{`sluice_refdata_following`,
		`sluice_refdata_lag_records{topic="customers"}`, `sluice_refdata_lag_records{topic="fx-rates"}`,
		`sluice_refdata_staleness_seconds{topic="customers"}`, `sluice_refdata_staleness_seconds{topic="fx-rates"}`,
		`sluice_refdata_last_record_age_seconds{topic="customers"}`, `sluice_refdata_last_record_age_seconds{topic="fx-rates"}`,
	} {
		if _, ok := got[name]; !ok {
			t.Errorf("series %s missing", name)
		}
		delete(got, name)
	}
	return got
}

// gather returns every series of reg as `name{label="value"}` -> value.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, lp := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
				}
				name += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// counterValue reads one counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestNewLoaderRejectsBadConfig(t *testing.T) {
	e := newEnv(t, 1)
	tests := []struct {
		name  string
		mod   func(*LoaderConfig)
		store *Store
		want  string
	}{
		{"nil store", nil, nil, "nil Store"},
		{"no brokers", func(c *LoaderConfig) { c.Brokers = nil }, NewStore("USD"), "no brokers"},
		{"no topic", func(c *LoaderConfig) { c.FxRatesTopic = "" }, NewStore("USD"), "must be set"},
		{"same topic twice", func(c *LoaderConfig) { c.FxRatesTopic = customersTopic }, NewStore("USD"), "both"},
		{"negative timeout", func(c *LoaderConfig) { c.BootstrapTimeout = -time.Second }, NewStore("USD"), "negative"},
		{"negative max staleness", func(c *LoaderConfig) { c.BootstrapTimeout, c.MaxStaleness = 0, -time.Second }, NewStore("USD"), "negative max staleness"},
		{"negative miss wait", func(c *LoaderConfig) { c.MissWait = -time.Second }, NewStore("USD"), "miss wait -1s"},
		{"missing schema file", func(c *LoaderConfig) { c.CustomersSchema = "nope.avsc" }, NewStore("USD"), "nope.avsc"},
		{"schemas swapped", func(c *LoaderConfig) {
			c.CustomersSchema, c.FxRatesSchema = c.FxRatesSchema, c.CustomersSchema
		}, NewStore("USD"), `has no field "customer_id"`},
		{"event schema as fx rates", func(c *LoaderConfig) { c.FxRatesSchema = schemaDir + "/order.avsc" }, NewStore("USD"), `"rate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mods := []func(*LoaderConfig){}
			if tt.mod != nil {
				mods = append(mods, tt.mod)
			}
			l, err := NewLoader(e.config(mods...), tt.store)
			if err == nil {
				l.Close()
				t.Fatal("NewLoader succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestBootstrapWaitsForTheLastRecord makes every fetch return a single
// record batch, so Bootstrap needs one poll per record: it must keep
// polling until the record just below the end offset is applied, not one
// short of it and not longer.
func TestBootstrapWaitsForTheLastRecord(t *testing.T) {
	e := newEnv(t, 1)
	const n = 12
	for i := range n { // one ProduceSync per record: one batch each
		e.produce(t, e.customerRec(t, customer(fmt.Sprintf("C-%02d", i), "Name", "DE", gen.SegmentConsumer)))
		e.produce(t, e.rateRec(t, rate("EUR", "1.10000000", int64(i))))
	}
	store := NewStore("USD")
	l := e.loader(t, store, func(c *LoaderConfig) {
		c.ExtraOpts = append(c.ExtraOpts, kgo.FetchMaxBytes(1), kgo.FetchMaxPartitionBytes(1))
	})
	st := bootstrap(t, l)
	if nc, nr := store.Counts(); nc != n || nr != n || st.Records != 2*n {
		t.Fatalf("Bootstrap returned with %d customers, %d rates (%d records); want %d, %d (%d)", nc, nr, st.Records, n, n, 2*n)
	}
}

// TestBootstrapAfterDeleteRecords: a partition whose records were all
// deleted (log start = end, end > 0) has nothing to read and is done at
// once; one partly deleted is read from its new start.
func TestBootstrapAfterDeleteRecords(t *testing.T) {
	e := newEnv(t, 1)
	e.produce(t,
		e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentVIP)),
		e.customerRec(t, customer("C-2", "Bo", "SE", gen.SegmentVIP)),
		e.rateRec(t, rate("EUR", "1.10000000", 1000)),
		e.rateRec(t, rate("EUR", "1.20000000", 2000)),
	)
	adm := kadm.NewClient(e.prod)
	del := kadm.Offsets{}
	del.AddOffset(customersTopic, 0, 2, -1)
	del.AddOffset(fxRatesTopic, 0, 1, -1)
	resp, err := adm.DeleteRecords(context.Background(), del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	store := NewStore("USD")
	start := time.Now()
	st := bootstrap(t, e.loader(t, store, func(c *LoaderConfig) { c.BootstrapTimeout = 5 * time.Second }))
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Bootstrap took %v", d)
	}
	if st.Customers != 0 || st.Rates != 1 || st.Records != 1 {
		t.Fatalf("Stats %+v, want 0 customers, 1 rate from 1 record", st)
	}
	if r, ok := store.RateAt("EUR", ms(1500)); ok {
		t.Fatalf("deleted EUR@1000 loaded: %+v", r)
	}
}
