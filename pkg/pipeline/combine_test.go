package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// fakeInserts records the INSERTs a combiner sends; each blocks until
// released, so the test decides what queues behind it.
type fakeInserts struct {
	mu      sync.Mutex
	sent    [][]int32 // the partitions of each INSERT, in order
	started chan struct{}
	release chan error
}

func newFakeInserts() *fakeInserts {
	return &fakeInserts{started: make(chan struct{}, 16), release: make(chan error)}
}

func (f *fakeInserts) insert(ctx context.Context, parts []sink.Part) error {
	ps := make([]int32, len(parts))
	for i, p := range parts {
		ps[i] = p.Batch.Partition
	}
	f.mu.Lock()
	f.sent = append(f.sent, ps)
	f.mu.Unlock()
	f.started <- struct{}{}
	select {
	case err := <-f.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeInserts) inserts() [][]int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]int32(nil), f.sent...)
}

type sendResult struct {
	partition int32
	err       error
}

// queue starts a send of partition p's batch and reports its outcome on out.
func queue(ctx context.Context, c *combiner, p int32, fence func() error, out chan<- sendResult) {
	queueAnnounced(ctx, c, p, fence, false, out)
}

// queueAnnounced is queue for a batch that was announced or not.
func queueAnnounced(ctx context.Context, c *combiner, p int32, fence func() error, announced bool, out chan<- sendResult) {
	go func() {
		b := &record.Batch{Topic: "orders", Partition: p, First: 0, Last: 9}
		out <- sendResult{p, c.send(ctx, nil, b, fence, announced)}
	}()
}

// waitQueued waits until n requests are queued behind the INSERT in flight.
func waitQueued(t *testing.T, c *combiner, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		q := len(c.queue)
		c.mu.Unlock()
		if q == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d requests never queued", n)
}

// behind starts a combiner whose first INSERT (partition 0's batch,
// alone) is in flight, and queues the given batches behind it, in order.
func behind(t *testing.T, max int, qs ...queued) (*fakeInserts, *combiner, chan sendResult) {
	t.Helper()
	f := newFakeInserts()
	c := newCombiner(f.insert, max)
	out := make(chan sendResult, len(qs)+1)
	queue(context.Background(), c, 0, noFence, out)
	<-f.started
	for i, q := range qs {
		if q.ctx == nil {
			q.ctx = context.Background()
		}
		if q.fence == nil {
			q.fence = noFence
		}
		queue(q.ctx, c, q.p, q.fence, out)
		waitQueued(t, c, i+1)
	}
	return f, c, out
}

type queued struct {
	p     int32
	ctx   context.Context
	fence func() error
}

func noFence() error { return nil }

func TestCombinerSharesTheNextInsertAmongTheBatchesThatQueued(t *testing.T) {
	f := newFakeInserts()
	c := newCombiner(f.insert, 3)
	out := make(chan sendResult, 8)
	var fences atomic.Int32
	fence := func() error { fences.Add(1); return nil }
	ctx := context.Background()

	// A lone batch is sent at once, not fenced again (its own fence is
	// the latest).
	queue(ctx, c, 0, fence, out)
	<-f.started
	// Four more become ready while it is sent: three share the next
	// INSERT, the fourth the one after.
	for p := int32(1); p <= 4; p++ {
		queue(ctx, c, p, fence, out)
		waitQueued(t, c, int(p))
	}
	f.release <- nil
	if r := <-out; r.partition != 0 || r.err != nil {
		t.Fatalf("first send: %+v", r)
	}
	<-f.started
	f.release <- nil
	for range 3 {
		if r := <-out; r.err != nil {
			t.Fatalf("shared send of %d: %v", r.partition, r.err)
		}
	}
	<-f.started
	f.release <- nil
	if r := <-out; r.partition != 4 || r.err != nil {
		t.Fatalf("last send: %+v", r)
	}
	got := f.inserts()
	want := [][]int32{{0}, {1, 2, 3}, {4}}
	if len(got) != len(want) {
		t.Fatalf("inserts %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("inserts %v, want %v", got, want)
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("inserts %v, want %v", got, want)
			}
		}
	}
	// Every batch that waited for an earlier INSERT was fenced again.
	if n := fences.Load(); n != 4 {
		t.Errorf("%d fences before the shared INSERTs, want 4", n)
	}
}

func TestCombinerKeepsAFencedBatchOut(t *testing.T) {
	f, _, out := behind(t, 4, queued{p: 1, fence: func() error { return errFenced }}, queued{p: 2})
	f.release <- nil
	// The first send's outcome and the fenced batch's come in either
	// order: the fence fails as soon as the first INSERT returned, with
	// no INSERT of its own to wait for.
	for range 2 {
		switch r := <-out; r.partition {
		case 0:
			if r.err != nil {
				t.Fatalf("first send: %+v", r)
			}
		case 1:
			if !errors.Is(r.err, errFenced) {
				t.Fatalf("fenced batch: %+v, want errFenced", r)
			}
		default:
			t.Fatalf("partition %d finished before its INSERT: %+v", r.partition, r)
		}
	}
	// The fenced batch got its fence's error; the other goes on alone.
	<-f.started
	f.release <- nil
	if r := <-out; r.partition != 2 || r.err != nil {
		t.Fatalf("other batch: %+v", r)
	}
	if got := f.inserts(); len(got) != 2 || len(got[1]) != 1 || got[1][0] != 2 {
		t.Errorf("inserts %v, want [[0] [2]]", got)
	}
}

func TestCombinerWithdrawsAStoppedBatchBeforeItsInsert(t *testing.T) {
	stopped, stop := context.WithCancel(context.Background())
	f, _, out := behind(t, 4, queued{p: 1, ctx: stopped})
	stop()
	if r := <-out; r.partition != 1 || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("stopped batch: %+v, want partition 1 with context.Canceled", r)
	}
	f.release <- nil
	<-out
	// Nothing of the withdrawn batch was written: no INSERT follows.
	time.Sleep(50 * time.Millisecond)
	if got := f.inserts(); len(got) != 1 {
		t.Errorf("inserts %v, want only the first", got)
	}
}

func TestCombinerCancelsASharedInsertWhenAWorkerStops(t *testing.T) {
	stopped, stop := context.WithCancel(context.Background())
	f, _, out := behind(t, 4, queued{p: 1, ctx: stopped}, queued{p: 2})
	f.release <- nil
	<-out
	<-f.started // 1 and 2 share this INSERT
	stop()
	// Both learn of the failure; neither may count its rows stored, and
	// the error keeps the server's classes out (each goes again alone).
	for range 2 {
		r := <-out
		var se *sharedError
		if !errors.As(r.err, &se) || se.n != 2 || se.refused {
			t.Fatalf("partition %d: err %v, want an unknown-outcome sharedError of 2", r.partition, r.err)
		}
		if classify(r.err) != classRetry {
			t.Errorf("partition %d: class %v, want retry (abandon first)", r.partition, classify(r.err))
		}
	}
}

func TestSharedRefusalIsSentAgainAlone(t *testing.T) {
	f, c, out := behind(t, 4, queued{p: 1}, queued{p: 2})
	f.release <- nil
	<-out
	<-f.started
	// A content refusal of the shared INSERT (code 53, type mismatch)
	// blames no batch in particular.
	f.release <- &clickhouse.Exception{Code: 53, Message: "Type mismatch"}
	for range 2 {
		r := <-out
		if classify(r.err) != classShared {
			t.Errorf("partition %d: class %v, want shared_refused", r.partition, classify(r.err))
		}
	}
	// Alone, the same refusal is the batch's own.
	queue(context.Background(), c, 1, noFence, out)
	<-f.started
	f.release <- &clickhouse.Exception{Code: 53, Message: "Type mismatch"}
	if r := <-out; classify(r.err) != classBadRecord {
		t.Errorf("alone: class %v, want bad_record", classify(r.err))
	}
}

// notStarted fails the test with msg when an INSERT starts within 50 ms.
func (f *fakeInserts) notStarted(t *testing.T, msg string) {
	t.Helper()
	select {
	case <-f.started:
		t.Fatal(msg)
	case <-time.After(50 * time.Millisecond):
	}
}

// A ready batch waits for the batches announced beside it and shares its
// INSERT with them; fenced again, since it waited.
func TestCombinerWaitsForAnnouncedBatches(t *testing.T) {
	f := newFakeInserts()
	c := newCombiner(f.insert, 4)
	c.linger = time.Minute // only the announced batches end the wait
	out := make(chan sendResult, 4)
	var fences atomic.Int32
	fence := func() error { fences.Add(1); return nil }
	ctx := context.Background()
	c.announce()
	c.announce()
	queueAnnounced(ctx, c, 0, fence, false, out)
	waitQueued(t, c, 1)
	f.notStarted(t, "the ready batch went alone while two were announced")
	queueAnnounced(ctx, c, 1, fence, true, out)
	waitQueued(t, c, 2)
	f.notStarted(t, "sent with one announced batch still coming")
	// The other announced batch is given up (went alone, or stopped).
	c.gone()
	<-f.started
	f.release <- nil
	for range 2 {
		if r := <-out; r.err != nil {
			t.Fatalf("send of %d: %v", r.partition, r.err)
		}
	}
	if got := f.inserts(); len(got) != 1 || len(got[0]) != 2 {
		t.Fatalf("inserts %v, want one carrying partitions 0 and 1", got)
	}
	if n := fences.Load(); n != 2 {
		t.Errorf("%d fences before the shared INSERT, want 2 (both waited)", n)
	}
	if c.coming != 0 {
		t.Errorf("coming %d after every announcement ended, want 0", c.coming)
	}
}

// An announced batch that never comes holds a ready one for the linger
// only.
func TestCombinerLingersNoLongerThanItsBound(t *testing.T) {
	f := newFakeInserts()
	c := newCombiner(f.insert, 4)
	c.linger = 100 * time.Millisecond
	out := make(chan sendResult, 1)
	c.announce()
	start := time.Now()
	queue(context.Background(), c, 0, noFence, out)
	select {
	case <-f.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the ready batch never went")
	}
	if d := time.Since(start); d < c.linger {
		t.Errorf("sent after %v, before the linger of %v with a batch announced", d, c.linger)
	}
	f.release <- nil
	if r := <-out; r.err != nil {
		t.Fatal(r.err)
	}
}
