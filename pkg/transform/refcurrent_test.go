package transform

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

// followed is a Store filled and followed by a real Loader on a kfake
// cluster, so that the transforms meet a follower that fails and lags.
type followed struct {
	c      *kfake.Cluster
	prod   *kgo.Client
	codecs *gen.Codecs
	store  *refdata.Store
	loader *refdata.Loader
}

func newFollowed(t *testing.T) *followed {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "customers", "fx-rates"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	codecs, err := gen.LoadCodecs("../../schemas/avro")
	if err != nil {
		t.Fatal(err)
	}
	f := &followed{c: c, prod: prod, codecs: codecs, store: refdata.NewStore("USD")}
	f.produce(t, f.rate(t, "EUR", "1.10000000", "2026-01-01T00:00:00Z"), f.customer(t, "c-1", "Ada"))
	f.loader, err = refdata.NewLoader(refdata.LoaderConfig{
		Brokers: c.ListenAddrs(), CustomersTopic: "customers", FxRatesTopic: "fx-rates",
		BootstrapTimeout: 20 * time.Second, MaxStaleness: 300 * time.Millisecond, MissWait: 300 * time.Millisecond,
		Log:       slog.New(slog.DiscardHandler),
		ExtraOpts: []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)},
	}, f.store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.loader.Close)
	if _, err := f.loader.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := f.loader.StartFollow(ctx)
	t.Cleanup(func() { cancel(); _ = wait() })
	return f
}

func (f *followed) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	if err := f.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (f *followed) rate(t *testing.T, cur, r, from string) *kgo.Record {
	t.Helper()
	k, v, err := f.codecs.EncodeFxRate(gen.FxRate{Currency: cur, Rate: dec(r), EffectiveFrom: at(from)})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: "fx-rates", Key: k, Value: v}
}

func (f *followed) customer(t *testing.T, id, name string) *kgo.Record {
	t.Helper()
	k, v, err := f.codecs.EncodeCustomer(gen.Customer{CustomerID: id, Name: name, Email: id + "@example.com",
		Country: "GB", Segment: gen.SegmentVIP, CreatedAt: at("2025-01-01T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: "customers", Key: k, Value: v}
}

// failFetches makes every fetch of both reference topics fail until the
// returned func is called.
func (f *followed) failFetches(t *testing.T) (restore func()) {
	t.Helper()
	h := f.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	// A refused fetch, not only an unhealthy follower: Health also fails
	// when the follower is merely late (a loaded machine), while a fetch
	// sent before the fault may still be long-polling and would deliver
	// what the test produces next. With one broker the client has one
	// fetch in flight; once one was refused, none from before is left.
	waitUntilTrue(t, "a fetch refused", func() bool { return h.Hits() > 0 })
	waitUntilTrue(t, "the follower to report the failure", func() bool { return f.loader.Health() != nil })
	return h.Remove
}

func waitUntilTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// retryApply applies tr as the worker does: again, until it returns nil.
func retryApply(t *testing.T, tr Transform, b *record.Batch) {
	t.Helper()
	waitUntilTrue(t, "Apply to succeed", func() bool { return tr.Apply(context.Background(), b) == nil })
}

func noneFailed(t *testing.T, b *record.Batch) {
	t.Helper()
	for i, it := range b.Items {
		if it.Failed != nil {
			t.Fatalf("item %d failed (%s): a valid record would be dead-lettered", i, it.Failed.Reason)
		}
	}
}

// TestCurrencyMissWhileFollowerFailsFailsTheBatch: orders in CHF come
// while the follower cannot fetch, and CHF's first rate is produced
// meanwhile. The batch fails as a whole (ErrNotCurrent), no row is failed;
// a batch whose rates are all known is not held back; once the follower
// catches up, the retried batch converts at the new rate. With a healthy
// follower a currency without any rate is still dead-lettered.
func TestCurrencyMissWhileFollowerFailsFailsTheBatch(t *testing.T) {
	f := newFollowed(t)
	tr := newCurrencyT(t, f.store)
	restore := f.failFetches(t)
	f.produce(t, f.rate(t, "CHF", "0.90000000", "2026-01-01T00:00:00Z"))

	b := batchOf(0,
		order("EUR", "100.00", "2026-01-01T12:00:00Z"),
		order("CHF", "100.00", "2026-01-01T12:00:00Z"),
		order("USD", "5.00", "2026-01-01T12:00:00Z"))
	err := tr.Apply(context.Background(), b)
	if !errors.Is(err, refdata.ErrNotCurrent) || !strings.Contains(err.Error(), "fx-rates") {
		t.Fatalf("Apply while the follower fails: %v, want ErrNotCurrent naming fx-rates", err)
	}
	noneFailed(t, b)

	known := batchOf(1, order("EUR", "10.00", "2026-01-01T12:00:00Z"), order("USD", "1.00", "2026-01-01T12:00:00Z"))
	if err := tr.Apply(context.Background(), known); err != nil {
		t.Fatalf("a batch without misses: %v", err)
	}
	checkConverted(t, known.Items[0], "11.00", "1.10000000")

	restore()
	retryApply(t, tr, b)
	noneFailed(t, b)
	checkConverted(t, b.Items[0], "110.00", "1.10000000")
	checkConverted(t, b.Items[1], "90.00", "0.90000000")
	checkConverted(t, b.Items[2], "5.00", "1.00000000")

	// Current again: a currency that has no rate is a dead letter.
	bad := batchOf(0, order("XTS", "1.00", "2026-01-01T12:00:00Z"))
	if err := tr.Apply(context.Background(), bad); err != nil {
		t.Fatalf("Apply with a current Store: %v", err)
	}
	if it := bad.Items[0]; it.Failed == nil || !strings.Contains(it.Failed.Reason, "no FX rate for XTS") {
		t.Fatalf("XTS order: %+v, want failed for its missing rate", it.Failed)
	}
}

// TestCustomerMissWhileFollowerFailsFailsTheBatch: the same for the
// customer join: a customer produced while the follower fails is not
// loaded as unknown (NULLs); the batch is retried until it is joined.
func TestCustomerMissWhileFollowerFailsFailsTheBatch(t *testing.T) {
	f := newFollowed(t)
	tr := build(t, []string{"customer"}, Env{Schema: loadSchema(t, "order"), Store: f.store})[0]
	restore := f.failFetches(t)
	f.produce(t, f.customer(t, "c-2", "Grace"))

	row := func(id any) record.Row { return record.Row{"customer_id": id} }
	b := batchOf(0, row("c-1"), row("c-2"), row(nil))
	err := tr.Apply(context.Background(), b)
	if !errors.Is(err, refdata.ErrNotCurrent) || !strings.Contains(err.Error(), "customers") {
		t.Fatalf("Apply while the follower fails: %v, want ErrNotCurrent naming customers", err)
	}
	if _, loaded := b.Items[1].Row["customer_name"]; loaded {
		t.Fatal("c-2 joined as unknown while the follower fails")
	}
	// A null customer_id is a final miss: it does not hold a batch back.
	nulls := batchOf(1, row("c-1"), row(nil))
	if err := tr.Apply(context.Background(), nulls); err != nil {
		t.Fatalf("a batch without lookup misses: %v", err)
	}

	restore()
	retryApply(t, tr, b)
	noneFailed(t, b)
	if b.Items[1].Row["customer_name"] != "Grace" || b.Items[1].Row[customerFound] != true {
		t.Fatalf("c-2 after recovery: %v", b.Items[1].Row)
	}
	if b.Items[2].Row["customer_name"] != nil || b.Items[2].Row[customerFound] != false {
		t.Fatalf("null customer_id: %v", b.Items[2].Row)
	}
}
