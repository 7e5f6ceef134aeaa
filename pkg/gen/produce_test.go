package gen

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var testTopics = Topics{
	Orders:    "t-orders",
	Payments:  "t-payments",
	Shipments: "t-shipments",
	Customers: "t-customers",
	FxRates:   "t-fx-rates",
}

// newCluster starts a one-broker kfake cluster with the test topics and
// returns a producing client for it.
func newCluster(t testing.TB, opts ...kgo.Opt) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(3, testTopics.Orders, testTopics.Payments, testTopics.Shipments),
		kfake.SeedTopics(1, testTopics.Customers, testTopics.FxRates),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// expected computes, from a fresh generator, what Produce must have written
// for orders [first, end).
func expected(t *testing.T, o Options, first, end int) (Counts, map[string]Order) {
	t.Helper()
	g := newGen(t, o)
	c := Counts{Customers: int64(len(g.Customers())), FxRates: int64(len(g.FxRates()))}
	orders := map[string]Order{}
	for seq := first; seq < end; seq++ {
		ord := g.Order(seq)
		orders[ord.OrderID] = ord
		c.Orders++
		c.Payments += int64(len(g.Payments(ord)))
		c.Shipments += int64(len(g.Shipments(ord)))
	}
	return c, orders
}

func TestProduceWritesThePlan(t *testing.T) {
	c, cl := newCluster(t)
	opts := Options{Seed: 21, SchemaDir: testSchemaDir, Customers: 200}
	g := newGen(t, opts)
	g.NextOrder() // Produce continues from the cursor.

	var (
		mu    sync.Mutex
		calls []Progress
	)
	sum, err := Produce(context.Background(), cl, g, Plan{Orders: 500, Topics: testTopics, MaxInFlight: 64, ProgressInterval: time.Millisecond},
		func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, p)
		})
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if sum.FirstSeq != 1 || sum.EndSeq != 501 || g.Cursor() != 501 {
		t.Fatalf("Summary seqs [%d, %d), cursor %d; want [1, 501), 501", sum.FirstSeq, sum.EndSeq, g.Cursor())
	}
	want, orders := expected(t, opts, sum.FirstSeq, sum.EndSeq)
	if sum.Acked != want || sum.Failed != 0 {
		t.Fatalf("Summary acked %+v (failed %d), want %+v", sum.Acked, sum.Failed, want)
	}
	t.Logf("kfake: %d records in %v: %.0f records/s", sum.Acked.Total(), sum.Elapsed, sum.RecordsPerSecond())

	// Progress: serial, ends with done and the final counts.
	mu.Lock()
	last := calls[len(calls)-1]
	mu.Unlock()
	if last.Phase != PhaseDone || last.Acked != want || last.OrdersDone != 500 || last.PlannedOrders != 500 {
		t.Errorf("last progress %+v, want done with %+v", last, want)
	}

	// The topics hold exactly the planned records...
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(context.Background(), testTopics.Orders, testTopics.Payments, testTopics.Shipments, testTopics.Customers, testTopics.FxRates)
	if err != nil {
		t.Fatal(err)
	}
	perTopic := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) { perTopic[o.Topic] += o.Offset })
	for topic, n := range want.ByTopic(testTopics) {
		if perTopic[topic] != n {
			t.Errorf("topic %s holds %d records, want %d", topic, perTopic[topic], n)
		}
	}
	if got := sum.ByTopic(); got[testTopics.Payments] != want.Payments {
		t.Errorf("Summary.ByTopic = %v", got)
	}

	// ...and reading them back gives the generated values under their keys.
	recs := consumeAll(t, c, want.Total())
	codecs := g.Codecs()
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Topic]++
		switch r.Topic {
		case testTopics.Orders:
			o, err := codecs.DecodeOrder(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != o.CustomerID || !sameOrder(o, orders[o.OrderID]) {
				t.Fatalf("order record key %q value %+v, want %+v", r.Key, o, orders[o.OrderID])
			}
		case testTopics.Payments:
			p, err := codecs.DecodePayment(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			ord, ok := orders[p.OrderID]
			if string(r.Key) != p.OrderID || !ok || !p.Amount.Equal(ord.Total) {
				t.Fatalf("payment record key %q value %+v refers to no produced order", r.Key, p)
			}
		case testTopics.Shipments:
			s, err := codecs.DecodeShipment(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := orders[s.OrderID]; string(r.Key) != s.OrderID || !ok {
				t.Fatalf("shipment record key %q value %+v refers to no produced order", r.Key, s)
			}
		case testTopics.Customers:
			cu, err := codecs.DecodeCustomer(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := g.Customer(cu.CustomerID); string(r.Key) != cu.CustomerID || !ok || got != cu {
				t.Fatalf("customer record key %q value %+v", r.Key, cu)
			}
		case testTopics.FxRates:
			fx, err := codecs.DecodeFxRate(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != fx.Key() {
				t.Fatalf("fx record key %q, value says %s", r.Key, fx.Key())
			}
		}
	}
	for topic, n := range want.ByTopic(testTopics) {
		if int64(seen[topic]) != n {
			t.Errorf("consumed %d records from %s, want %d", seen[topic], topic, n)
		}
	}
}

// consumeAll reads n records from the test topics, failing after 10s.
func consumeAll(t *testing.T, c *kfake.Cluster, n int64) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(testTopics.Orders, testTopics.Payments, testTopics.Shipments, testTopics.Customers, testTopics.FxRates),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestProduceSkips(t *testing.T) {
	_, cl := newCluster(t)
	g := newGen(t, Options{Seed: 1, Customers: 10})
	sum, err := Produce(context.Background(), cl, g, Plan{Orders: 20, Topics: testTopics, SkipReference: true, SkipPayments: true, SkipShipments: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{Orders: 20}); sum.Acked != want {
		t.Errorf("acked %+v, want %+v", sum.Acked, want)
	}
}

func TestProduceRate(t *testing.T) {
	_, cl := newCluster(t)
	g := newGen(t, Options{Seed: 1, Customers: 10})
	const rate = 400.0
	sum, err := Produce(context.Background(), cl, g, Plan{Orders: 30, Rate: rate, Topics: testTopics}, nil)
	if err != nil {
		t.Fatal(err)
	}
	events := sum.Acked.Events()
	min := time.Duration(float64(events-1) / rate * float64(time.Second))
	if sum.Elapsed < min || sum.Elapsed > 3*min+time.Second {
		t.Errorf("%d events at %v/s took %v, want about %v", events, rate, sum.Elapsed, min)
	}
}

func TestProduceReturnsRecordErrors(t *testing.T) {
	// No such topic and no auto-creation: every order fails.
	_, cl := newCluster(t, kgo.UnknownTopicRetries(1))
	g := newGen(t, Options{Seed: 1, Customers: 10})
	topics := testTopics
	topics.Orders = "no-such-topic"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sum, err := Produce(ctx, cl, g, Plan{Orders: 100, Topics: topics}, nil)
	if err == nil {
		t.Fatal("Produce to a missing topic succeeded")
	}
	if !strings.Contains(err.Error(), `"no-such-topic"`) || !strings.Contains(err.Error(), "order") {
		t.Errorf("error %q does not name the topic and the kind of record", err)
	}
	if sum.Failed == 0 || sum.Acked.Orders != 0 || sum.Acked.Customers != 10 {
		t.Errorf("summary %+v: want failures, no orders, the 10 customers", sum)
	}
	if ctx.Err() != nil {
		t.Errorf("Produce only returned at the deadline")
	}
}

func TestProduceStopsOnCancel(t *testing.T) {
	_, cl := newCluster(t)
	g := newGen(t, Options{Seed: 1, Customers: 10})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	sum, err := Produce(ctx, cl, g, Plan{Orders: 100000, Rate: 500, Topics: testTopics}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Produce took %v to stop", time.Since(start))
	}
	if sum.Acked.Orders == 0 || sum.Acked.Orders > int64(sum.EndSeq-sum.FirstSeq) {
		t.Errorf("summary %+v after cancel", sum)
	}
}

func TestProduceValidatesPlan(t *testing.T) {
	g := newGen(t, Options{Seed: 1, Customers: 10})
	if _, err := Produce(context.Background(), nil, g, Plan{Orders: -1}, nil); err == nil {
		t.Error("negative Orders accepted")
	}
	if _, err := Produce(context.Background(), nil, g, Plan{Orders: 1, Rate: -1}, nil); err == nil {
		t.Error("negative Rate accepted")
	}
}

// BenchmarkProduceKfake measures end-to-end generate+encode+produce+ack
// throughput against an in-process cluster.
func BenchmarkProduceKfake(b *testing.B) {
	_, cl := newCluster(b)
	g := newGen(b, Options{Seed: 1})
	b.ReportAllocs()
	var total int64
	var elapsed time.Duration
	for b.Loop() {
		sum, err := Produce(context.Background(), cl, g, Plan{Orders: 10000, Topics: testTopics, SkipReference: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += sum.Acked.Total()
		elapsed += sum.Elapsed
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
}
