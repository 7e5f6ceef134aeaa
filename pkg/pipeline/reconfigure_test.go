package pipeline

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
)

// workersOf returns the workers of topic, by partition.
func (e *Engine) workersOf(topic string) map[int32]*worker {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[int32]*worker{}
	for k, w := range e.workers {
		if k.topic == topic {
			out[k.partition] = w
		}
	}
	return out
}

// TestReconfigure adds, restarts and removes a pipeline of a running
// engine: the added one loads its topic, the restarted one flushes what it
// holds into its old sink and loads the rest into its new one (each record
// once in one of them), the removed one commits what it held and loads
// nothing more; the other pipeline keeps its very workers throughout (no
// revoke, no restart).
func TestReconfigure(t *testing.T) {
	const parts, n = 2, 50
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "a", "b"), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	produce := func(topic string, from int) {
		t.Helper()
		var recs []*kgo.Record
		for p := 0; p < parts; p++ {
			for i := from; i < from+n; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(p), Value: []byte(fmt.Sprintf("v=%d-%d", p, i))})
			}
		}
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	committed := func(group, topic string) int64 {
		t.Helper()
		offs, err := kadm.NewClient(prod).FetchOffsets(context.Background(), group)
		if err != nil {
			return -1
		}
		var sum int64
		for p := int32(0); p < parts; p++ {
			o, ok := offs.Lookup(topic, p)
			if !ok {
				return -1
			}
			sum += o.At
		}
		return sum
	}

	fast := batch.Limits{MaxRows: 1000, MaxBytes: 1 << 20, MaxWait: 20 * time.Millisecond}
	held := batch.Limits{MaxRows: 1000, MaxBytes: 1 << 20, MaxWait: time.Hour}
	sinkA, sinkB, sinkB2 := newMemSink(), newMemSink(), newMemSink()
	pa := &Pipeline{Name: "a", Topic: "a", Decoder: textDecoder{}, Sink: sinkA, Limits: fast}
	f := &fixture{t: t, c: c, topic: "a", parts: parts, produce: prod, adm: kadm.NewClient(prod)}
	r := f.startWith("g", sinkA, fast, func(o *Options) { o.Pipelines = []*Pipeline{pa} })
	e := r.engine

	produce("a", 0)
	produce("b", 0)
	waitFor(t, "a loaded", 30*time.Second, func() bool { _, d := sinkA.stats(); return d == parts*n })
	aWorkers := e.workersOf("a")
	if len(aWorkers) != parts {
		t.Fatalf("a has %d workers, want %d", len(aWorkers), parts)
	}
	sameA := func(step string) {
		t.Helper()
		now := e.workersOf("a")
		for p, w := range aWorkers {
			if now[p] != w {
				t.Fatalf("%s: a's partition %d has another worker (revoked or restarted)", step, p)
			}
		}
	}

	if err := e.Reconfigure(context.Background(), []*Pipeline{pa, pa}); err == nil {
		t.Fatal("Reconfigure with a topic twice: no error")
	}

	// Added: b holds its records (max_wait an hour).
	pb := &Pipeline{Name: "b", Topic: "b", Decoder: textDecoder{}, Sink: sinkB, Limits: held}
	if err := e.Reconfigure(context.Background(), []*Pipeline{pa, pb}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's records handed to its workers", 30*time.Second, func() bool {
		return testutil.ToFloat64(e.m.Consumed.WithLabelValues("b")) == parts*n
	})
	if total, _ := sinkB.stats(); total != 0 {
		t.Fatalf("b loaded %d rows before its max_wait", total)
	}
	sameA("add")

	// Restarted: b's held records are flushed into sinkB, what follows
	// goes to sinkB2.
	pb2 := &Pipeline{Name: "b", Topic: "b", Decoder: textDecoder{}, Sink: sinkB2, Limits: fast}
	if err := e.Reconfigure(context.Background(), []*Pipeline{pa, pb2}); err != nil {
		t.Fatal(err)
	}
	if total, distinct := sinkB.stats(); total != parts*n || distinct != parts*n {
		t.Fatalf("the restart flushed %d rows (%d distinct) into b's old sink, want %d", total, distinct, parts*n)
	}
	if got := committed("g", "b"); got != parts*n {
		t.Fatalf("b committed at %d after the restart, want %d", got, parts*n)
	}
	produce("b", n)
	produce("a", n)
	waitFor(t, "b's new records in the new sink", 30*time.Second, func() bool { _, d := sinkB2.stats(); return d == parts*n })
	waitFor(t, "a's new records", 30*time.Second, func() bool { _, d := sinkA.stats(); return d == 2*parts*n })
	if total, _ := sinkB2.stats(); total != parts*n {
		t.Fatalf("b's new sink stored %d rows, want %d (each once)", total, parts*n)
	}
	sameA("restart")

	// Removed: b is flushed and committed by the revoke, then reads
	// nothing more.
	bWorkers := e.workersOf("b")
	if err := e.Reconfigure(context.Background(), []*Pipeline{pa}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's partitions revoked", 30*time.Second, func() bool { return len(e.workersOf("b")) == 0 })
	for _, w := range bWorkers {
		<-w.done
	}
	if got := committed("g", "b"); got != 2*parts*n {
		t.Fatalf("b committed at %d after its removal, want %d", got, 2*parts*n)
	}
	produce("b", 2*n)
	produce("a", 2*n)
	waitFor(t, "a's newest records", 30*time.Second, func() bool { _, d := sinkA.stats(); return d == 3*parts*n })
	if total, _ := sinkB2.stats(); total != parts*n {
		t.Fatalf("b's sink has %d rows after its removal, want %d", total, parts*n)
	}
	if total, _ := sinkA.stats(); total != 3*parts*n {
		t.Fatalf("a stored %d rows, want %d (each once)", total, 3*parts*n)
	}
	sameA("remove")
	if got := e.Topics(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("Topics() = %v, want [a]", got)
	}

	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	r.done <- nil // for the fixture's cleanup
	if err := e.Reconfigure(context.Background(), []*Pipeline{pa, pb}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Reconfigure after Run returned: %v, want ErrNotRunning", err)
	}
}

// TestReconfigureAfterAFlushCutShort: a restarted pipeline whose flush
// cannot load (its table is failing) gives the batch up at RevokeTimeout;
// the client is set back to the last commit, so the new pipeline loads
// those records: none is lost, none is loaded twice.
func TestReconfigureAfterAFlushCutShort(t *testing.T) {
	const parts, n = 2, 30
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "b"), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	f := &fixture{t: t, c: c, topic: "b", parts: parts, produce: prod, adm: kadm.NewClient(prod)}
	fast := batch.Limits{MaxRows: 1000, MaxBytes: 1 << 20, MaxWait: 20 * time.Millisecond}
	failing, next := newMemSink(), newMemSink()
	failing.set(func(s *memSink) { s.failAll = true })
	pb := &Pipeline{Name: "b", Topic: "b", Decoder: textDecoder{}, Sink: failing, Limits: fast}
	r := f.startWith("g", failing, fast, func(o *Options) {
		o.Pipelines = []*Pipeline{pb}
		o.RevokeTimeout = time.Second
		o.AbandonTimeout = time.Second
	})
	e := r.engine
	f.produceN(n, nil)
	waitFor(t, "b's records handed to its workers", 30*time.Second, func() bool {
		return testutil.ToFloat64(e.m.Consumed.WithLabelValues("b")) == parts*n
	})

	pb2 := &Pipeline{Name: "b", Topic: "b", Decoder: textDecoder{}, Sink: next, Limits: fast}
	if err := e.Reconfigure(context.Background(), []*Pipeline{pb2}); err != nil {
		t.Fatal(err)
	}
	f.produceN(n, nil)
	waitFor(t, "every record in the new sink", 30*time.Second, func() bool { _, d := next.stats(); return d == 2*parts*n })
	if total, _ := next.stats(); total != 2*parts*n {
		t.Fatalf("the new sink stored %d rows, want %d (each once)", total, 2*parts*n)
	}
	if total, _ := failing.stats(); total != 0 {
		t.Fatalf("the failing sink stored %d rows", total)
	}
}
