package refdata

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-etl/sluice/pkg/gen"
)

// fastLoader is a Loader whose follower lists, retries and gives up
// quickly: listings every 50ms, backoff 10ms..100ms, unhealthy after
// 300ms, misses wait at most 300ms.
func fastLoader(t *testing.T, e *env, store *Store, reg prometheus.Registerer) *Loader {
	t.Helper()
	l := e.loader(t, store, func(c *LoaderConfig) {
		c.Registerer = reg
		c.MaxStaleness = 300 * time.Millisecond
		c.MissWait = 300 * time.Millisecond
	})
	l.tune = tuning{refreshEvery: 50 * time.Millisecond, listTimeout: 2 * time.Second,
		backoffMin: 10 * time.Millisecond, backoffMax: 100 * time.Millisecond}
	return l
}

// follow runs l.Follow; the returned stop cancels it and checks that it
// returned nil (it never returns on its own).
func follow(t *testing.T, l *Loader) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait := l.StartFollow(ctx)
	done := make(chan error, 1)
	go func() { done <- wait() }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		select {
		case err := <-done:
			t.Fatalf("Follow returned %v before it was stopped", err)
		default:
		}
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
	t.Cleanup(stop)
	return stop
}

// warns returns the JSON log lines at WARN with message msg.
func warns(logs, msg string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, `"msg":"`+msg+`"`) {
			out = append(out, line)
		}
	}
	return out
}

func awaitCurrent(s *Store, tb Table) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.AwaitCurrent(ctx, tb)
}

// TestFollowRetriesFailingFetches: fetches of the fx-rates topic fail
// (TOPIC_AUTHORIZATION_FAILED from kfake) while a rate is produced. Follow
// keeps retrying with one WARN per failure, the errors counter counts
// them, the follower reads as unhealthy and behind (gauge 0, lag, Health
// and AwaitCurrent say why); once fetches work again it applies the rate
// and reads healthy again.
func TestFollowRetriesFailingFetches(t *testing.T) {
	e := newEnv(t, 2)
	e.produce(t, e.rateRec(t, rate("EUR", "1.10000000", 1000)))
	store := NewStore("USD")
	reg := prometheus.NewPedanticRegistry()
	l := fastLoader(t, e, store, reg)
	bootstrap(t, l)
	stop := follow(t, l)
	waitFor(t, "a healthy follower", func() bool { return l.tr.healthy() && l.Health() == nil })
	if err := awaitCurrent(store, FxRates); err != nil {
		t.Fatalf("AwaitCurrent on a healthy follower: %v", err)
	}

	h := e.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: fxRatesTopic, Err: kerr.TopicAuthorizationFailed, Count: -1})
	// Produce only once a fetch was refused: a fetch sent before the
	// fault may still be long-polling and would deliver the rate.
	waitFor(t, "a fetch refused", func() bool { return h.Hits() > 0 })
	e.produce(t, e.rateRec(t, rate("CHF", "0.90000000", 1000)))
	authErrors := l.m.errors.WithLabelValues("auth")
	waitFor(t, "three failed fetches counted", func() bool { return counterValue(t, authErrors) >= 3 })
	waitFor(t, "the follower unhealthy and behind", func() bool {
		g := gather(t, reg)
		return g["sluice_refdata_following"] == 0 && g[`sluice_refdata_lag_records{topic="fx-rates"}`] == 1
	})
	if _, ok := store.RateAt("CHF", ms(2000)); ok {
		t.Fatal("CHF applied while its fetches fail")
	}
	waitFor(t, "Health to report the failure", func() bool {
		err := l.Health()
		return err != nil && strings.Contains(err.Error(), "following has failed for") &&
			strings.Contains(err.Error(), "(auth: ") && strings.Contains(err.Error(), "TOPIC_AUTHORIZATION_FAILED")
	})
	err := awaitCurrent(store, FxRates)
	if !errors.Is(err, ErrNotCurrent) || !strings.Contains(err.Error(), "TOPIC_AUTHORIZATION_FAILED") {
		t.Fatalf("AwaitCurrent(FxRates) while failing: %v, want ErrNotCurrent naming the error", err)
	}
	// The customers topic is read in full meanwhile: a customer miss is
	// final even while the rates fail.
	if err := awaitCurrent(store, Customers); err != nil {
		t.Fatalf("AwaitCurrent(Customers) with the customers topic read: %v", err)
	}

	h.Remove()
	waitFor(t, "the CHF rate after the failures", func() bool { _, ok := store.RateAt("CHF", ms(2000)); return ok })
	waitFor(t, "a healthy follower again", func() bool { return l.tr.healthy() && l.Health() == nil })
	if err := awaitCurrent(store, FxRates); err != nil {
		t.Fatalf("AwaitCurrent after recovery: %v", err)
	}
	g := gather(t, reg)
	if g["sluice_refdata_following"] != 1 || g[`sluice_refdata_lag_records{topic="fx-rates"}`] != 0 {
		t.Errorf("after recovery: following %v, lag %v; want 1 and 0", g["sluice_refdata_following"], g[`sluice_refdata_lag_records{topic="fx-rates"}`])
	}
	if s := g[`sluice_refdata_staleness_seconds{topic="fx-rates"}`]; s > 1 {
		t.Errorf("staleness %vs after recovery, want below 1s", s)
	}
	if a := g[`sluice_refdata_last_record_age_seconds{topic="fx-rates"}`]; a <= 0 || a > 10 {
		t.Errorf("last record age %vs, want the recent CHF record", a)
	}
	stop()

	// One WARN per counted failure, each with its bounded error_type.
	logs := e.logs.String()
	ws := warns(logs, "following the reference topics failed; retrying")
	n := g[`sluice_refdata_errors_total{error_type="auth"}`]
	if float64(len(ws)) != n || n < 3 {
		t.Fatalf("%d WARNs for %v counted failures", len(ws), n)
	}
	for _, w := range ws {
		for _, want := range []string{`"stage":"refdata"`, `"op":"fetch"`, `"error_type":"auth"`, `"attempt":`, `"retry_in":`, "fx-rates["} {
			if !strings.Contains(w, want) {
				t.Fatalf("WARN %s lacks %s", w, want)
			}
		}
	}
	if !strings.Contains(logs, `"msg":"following the reference topics again"`) {
		t.Error("no INFO on recovery")
	}
}

// TestFollowRetriesFailingListings: the high-watermark listing fails
// (UNKNOWN_SERVER_ERROR on every ListOffsets). Records are still applied,
// but the follower cannot confirm it is current: gauge 0, Health not
// ready past MaxStaleness, AwaitCurrent ErrNotCurrent; all clears when the
// listings work again.
func TestFollowRetriesFailingListings(t *testing.T) {
	e := newEnv(t, 1)
	store := NewStore("USD")
	reg := prometheus.NewPedanticRegistry()
	l := fastLoader(t, e, store, reg)
	bootstrap(t, l)
	follow(t, l)
	waitFor(t, "a healthy follower", func() bool { return l.tr.healthy() && l.Health() == nil })
	// A record applied first: the consumer has listed its start offset
	// (Bootstrap of an empty topic returns before it may have) and is
	// fetching, which a failing ListOffsets must then not stop. Faulted
	// before that, the client could never learn where to start.
	e.produce(t, e.customerRec(t, customer("C-0", "Bo", "GB", gen.SegmentVIP)))
	waitFor(t, "the first customer", func() bool { _, ok := store.Customer("C-0"); return ok })

	h := e.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.ListOffsets}, Err: kerr.UnknownServerError, Count: -1})
	e.produce(t, e.customerRec(t, customer("C-1", "Ada", "GB", gen.SegmentVIP)))
	waitFor(t, "the customer (fetches work)", func() bool { _, ok := store.Customer("C-1"); return ok })
	waitFor(t, "the failing listings", func() bool {
		err := l.Health()
		return !l.tr.healthy() && err != nil && strings.Contains(err.Error(), "(kafka: ") && strings.Contains(err.Error(), "UNKNOWN_SERVER_ERROR")
	})
	if err := awaitCurrent(store, Customers); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("AwaitCurrent without listings: %v, want ErrNotCurrent", err)
	}
	if g := gather(t, reg); g[`sluice_refdata_staleness_seconds{topic="customers"}`] < 0.3 {
		t.Errorf("staleness %v while listings fail, want above MaxStaleness", g[`sluice_refdata_staleness_seconds{topic="customers"}`])
	}
	if w := warns(e.logs.String(), "following the reference topics failed; retrying"); len(w) == 0 || !strings.Contains(w[0], `"op":"list_offsets"`) {
		t.Fatalf("WARNs %q, want list_offsets failures", w)
	}

	h.Remove()
	waitFor(t, "a healthy follower again", func() bool { return l.tr.healthy() && l.Health() == nil })
	if err := awaitCurrent(store, Customers); err != nil {
		t.Fatalf("AwaitCurrent after recovery: %v", err)
	}
}

// TestAwaitCurrentSeesRecordsProducedBefore: a lookup that misses right
// after the record it needs was produced (acknowledged) waits for it: the
// miss asks for a listing at once rather than trusting the last one.
// With the default one-second listing period, twenty rounds finishing in
// well under twenty seconds shows the miss does not wait for the period.
func TestAwaitCurrentSeesRecordsProducedBefore(t *testing.T) {
	e := newEnv(t, 3)
	store := NewStore("USD")
	l := e.loader(t, store)
	bootstrap(t, l)
	follow(t, l)
	start := time.Now()
	const rounds = 20
	for i := range rounds {
		cur := fmt.Sprintf("X%02d", i)
		e.produce(t, e.rateRec(t, rate(cur, "2.00000000", 1000)))
		if err := awaitCurrent(store, FxRates); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if _, ok := store.RateAt(cur, ms(2000)); !ok {
			t.Fatalf("round %d: AwaitCurrent returned before the %s rate produced earlier was applied", i, cur)
		}
	}
	if d := time.Since(start); d > rounds*defaultRefreshEvery/2 {
		t.Errorf("%d rounds took %v: misses wait for the listing period", rounds, d)
	}
}

// TestAwaitCurrentWithoutFollower: a Store nobody follows is a snapshot,
// its misses are final at once; so after Follow returned.
func TestAwaitCurrentWithoutFollower(t *testing.T) {
	if err := awaitCurrent(NewStore("USD"), FxRates); err != nil {
		t.Fatalf("unfollowed Store: %v", err)
	}
	e := newEnv(t, 1)
	store := NewStore("USD")
	l := fastLoader(t, e, store, nil)
	bootstrap(t, l)
	stop := follow(t, l)
	waitFor(t, "a healthy follower", func() bool { return l.tr.healthy() })
	stop()
	start := time.Now()
	if err := awaitCurrent(store, FxRates); err != nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("after Follow returned: %v after %v", err, time.Since(start))
	}
	if err := l.Health(); err == nil || !strings.Contains(err.Error(), "not following") {
		t.Fatalf("Health after Follow returned: %v", err)
	}
}

// TestTrackerHealth drives the tracker by hand, with explicit times.
func TestTrackerHealth(t *testing.T) {
	c0, f0 := topicPartition{"c", 0}, topicPartition{"f", 0}
	t0 := time.Now()
	const max = 10 * time.Second
	tr := newTracker("c", "f", time.Second)
	if err := tr.health(max, t0); err == nil || !strings.Contains(err.Error(), "not following") {
		t.Fatalf("before Follow: %v", err)
	}
	tr.setFollowing(true)
	tr.track(map[topicPartition]int64{c0: 0, f0: 0})
	tr.listed(t0, map[topicPartition]int64{c0: 0, f0: 0})
	if err := tr.health(max, t0.Add(max)); err != nil {
		t.Fatalf("current as of t0, asked at t0+max: %v", err)
	}
	// Five customers records appear at t0+1s and are not read.
	tr.listed(t0.Add(time.Second), map[topicPartition]int64{c0: 5, f0: 0})
	if err := tr.health(max, t0.Add(max)); err != nil {
		t.Fatalf("behind for less than max: %v", err)
	}
	err := tr.health(max, t0.Add(11*time.Second))
	if err == nil || err.Error() != "reference data: c not read up to its high watermark for 11s (5 records behind at the last listing)" {
		t.Fatalf("behind for longer than max: %v", err)
	}
	if tr.lag(Customers) != 5 || tr.lag(FxRates) != 0 {
		t.Fatalf("lag %d/%d, want 5/0", tr.lag(Customers), tr.lag(FxRates))
	}
	tr.advance([]partNext{{c0, 5, true}}, t0.Add(2*time.Second))
	if err := tr.health(max, t0.Add(11*time.Second)); err != nil {
		t.Fatalf("read up to the t0+1s listing: %v", err)
	}
	// An older listing that arrives late does not move anything back.
	tr.listed(t0.Add(500*time.Millisecond), map[topicPartition]int64{c0: 9, f0: 0})
	if tr.lag(Customers) != 0 {
		t.Fatal("a late older listing was taken")
	}

	// Failures: both operations must succeed again to end one.
	tr.failed(opFetch, fmt.Errorf("fetch f[0]: %w", kerr.TopicAuthorizationFailed), t0.Add(time.Second))
	tr.failed(opList, context.DeadlineExceeded, t0.Add(2*time.Second))
	tr.listed(t0.Add(11*time.Second), map[topicPartition]int64{c0: 5, f0: 0})
	err = tr.health(max, t0.Add(12*time.Second))
	if err == nil || !strings.HasPrefix(err.Error(), "reference data: following has failed for 11s (auth: fetch f[0]: TOPIC_AUTHORIZATION_FAILED") {
		t.Fatalf("failing for longer than max: %v", err)
	}
	if tr.healthy() {
		t.Fatal("healthy while failing")
	}
	if rec, _ := tr.succeeded(opFetch); rec {
		t.Fatal("recovered while the listing still fails")
	}
	if rec, _ := tr.succeeded(opList); !rec || !tr.healthy() {
		t.Fatal("not recovered after both succeeded")
	}
	if err := tr.health(max, t0.Add(12*time.Second)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestErrorType(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("refdata: fetch x[0]: %w", kerr.OffsetOutOfRange), "kafka"},
		{kerr.TopicAuthorizationFailed, "auth"},
		{fmt.Errorf("refdata: topic %q: %w", "x", ErrTopicNotFound), "config"},
		{fmt.Errorf("currency: orders[0] 1..2: %w: following fx-rates has failed for 6s (%w)", ErrNotCurrent, context.DeadlineExceeded), "stale_reference"},
		{fmt.Errorf("list: %w", context.DeadlineExceeded), "timeout"},
		{&netErr{}, "network"},
		{errors.New("something else"), "other"},
	} {
		if got := errorType(c.err); got != c.want {
			t.Errorf("errorType(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

type netErr struct{}

func (*netErr) Error() string   { return "dial tcp: connection refused" }
func (*netErr) Timeout() bool   { return false }
func (*netErr) Temporary() bool { return false }

func TestBackoff(t *testing.T) {
	tu := tuning{backoffMin: 200 * time.Millisecond, backoffMax: 10 * time.Second}
	for _, c := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{7, 5 * time.Second, 10 * time.Second},
		{100, 5 * time.Second, 10 * time.Second},
	} {
		for range 100 {
			if d := tu.backoff(c.attempt); d < c.min || d > c.max {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", c.attempt, d, c.min, c.max)
			}
		}
	}
}

// TestStartFollowRegistersAtOnce: when StartFollow returns, the Store
// knows it is followed, so a miss at once waits for the follower
// (AwaitCurrent) instead of being final; `go Follow(ctx)` left a window
// in which the goroutine had not registered yet and AwaitCurrent answered
// nil (TestAwaitCurrentSeesRecordsProducedBefore failed so under load).
// When Follow returns the Store is a snapshot again.
func TestStartFollowRegistersAtOnce(t *testing.T) {
	e := newEnv(t, 1)
	store := NewStore("USD")
	l := e.loader(t, store)
	bootstrap(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	wait := l.StartFollow(ctx)
	if store.follower.Load() != l.tr {
		t.Fatal("StartFollow returned before the Store knew its follower")
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if store.follower.Load() != nil {
		t.Fatal("the Store still has a follower after Follow returned")
	}
}
