package pipeline

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/record"
)

func TestStatsReportsPartitionsCommittedAndLag(t *testing.T) {
	f := newFixture(t, 3)
	f.produceN(200, func(i int) bool { return i%50 == 7 }) // 4 bad per partition
	s := newMemSink()
	r := f.start("g-stats", s, small)

	// Stats is read by HTTP handlers while the engine runs: hammer it so
	// the race detector sees every field.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = r.engine.Stats()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	waitFor(t, "every partition committed at its end", 20*time.Second, func() bool {
		st := r.engine.Stats()
		if len(st) != 3 {
			return false
		}
		for _, p := range st {
			if p.Committed != 200 || p.Lag != 0 {
				return false
			}
		}
		return true
	})
	st := r.engine.Stats()
	for i, p := range st {
		if p.Pipeline != "events" || p.Topic != "events" || p.Partition != int32(i) {
			t.Fatalf("stats[%d] = %s/%s[%d], want events/events[%d] in order", i, p.Pipeline, p.Topic, p.Partition, i)
		}
		if p.HighWatermark != 200 {
			t.Errorf("partition %d: high watermark %d, want 200", i, p.HighWatermark)
		}
		if p.Loaded != 196 || p.DeadLetters != 4 {
			t.Errorf("partition %d: loaded %d, dead letters %d; want 196 and 4", i, p.Loaded, p.DeadLetters)
		}
		if p.Batches < 2 || p.LastBatchAt.IsZero() || p.LastBatchDuration <= 0 {
			t.Errorf("partition %d: batches %d, last at %v took %v; want >=2 batches with a time and duration", i, p.Batches, p.LastBatchAt, p.LastBatchDuration)
		}
		if p.Failing || p.Paused {
			t.Errorf("partition %d: failing=%v paused=%v, want neither", i, p.Failing, p.Paused)
		}
	}

	// More records: the lag shows until they are loaded.
	f.produceN(10, nil)
	waitFor(t, "the new records loaded", 10*time.Second, func() bool {
		for _, p := range r.engine.Stats() {
			if p.Committed != 210 || p.HighWatermark != 210 || p.Lag != 0 {
				return false
			}
		}
		return true
	})
	r.stop(t)
	if st := r.engine.Stats(); len(st) != 0 {
		t.Fatalf("after shutdown Stats lists %d partitions, want none", len(st))
	}
}

func TestStatsShowsFailingPartitions(t *testing.T) {
	f := newFixture(t, 2)
	f.produceN(20, nil)
	s := newMemSink()
	s.failAll = true
	r := f.start("g-stats-failing", s, small)
	waitFor(t, "both partitions failing", 10*time.Second, func() bool {
		st := r.engine.Stats()
		return len(st) == 2 && st[0].Failing && st[1].Failing
	})
	for _, p := range r.engine.Stats() {
		if p.Loaded != 0 || p.Batches != 0 || !p.LastBatchAt.IsZero() {
			t.Fatalf("partition %d: loaded %d in %d batches while the sink fails", p.Partition, p.Loaded, p.Batches)
		}
	}
	s.set(func(s *memSink) { s.failAll = false })
	waitFor(t, "recovered", 10*time.Second, func() bool {
		st := r.engine.Stats()
		return len(st) == 2 && !st[0].Failing && !st[1].Failing && st[0].Loaded == 20 && st[1].Loaded == 20
	})
	r.stop(t)
}

func TestStatsBeforeRun(t *testing.T) {
	e, err := New(Options{Pipelines: []*Pipeline{{Name: "a", Topic: "t1"}, {Name: "b", Topic: "t2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); len(st) != 0 {
		t.Fatalf("Stats before Run = %v, want empty", st)
	}
	got := e.PipelineInfos()
	if len(got) != 2 || got[0] != (PipelineInfo{"a", "t1"}) || got[1] != (PipelineInfo{"b", "t2"}) {
		t.Fatalf("PipelineInfos = %v", got)
	}
}

// TestStatsOldestIsTheFirstRecordNotLoaded: Oldest is the Kafka timestamp
// of the first record fetched and not loaded, moving batch by batch, and
// zero once everything fetched is loaded. Records 0..99 (one batch) are
// stamped 3 h ago, 100..199 2 h ago, 200..299 1 h ago; the sink refuses
// every batch from offset 100 on until told otherwise.
func TestStatsOldestIsTheFirstRecordNotLoaded(t *testing.T) {
	f := newFixture(t, 1)
	now := time.Now().Truncate(time.Millisecond)
	stamp := func(off int) time.Time { return now.Add(-time.Duration(3-off/100) * time.Hour) }
	var recs []*kgo.Record
	for i := range 300 {
		recs = append(recs, &kgo.Record{Topic: f.topic, Partition: 0, Value: fmt.Appendf(nil, "v=%d", i), Timestamp: stamp(i)})
	}
	if err := f.produce.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s := newMemSink()
	var refuseFrom atomic.Int64
	refuseFrom.Store(100)
	s.set(func(s *memSink) {
		s.onSendBatch = func(b *record.Batch) { s.failAll = b.First >= refuseFrom.Load() }
	})
	r := f.start("g-oldest", s, small)
	oldest := func() time.Time {
		st := r.engine.Stats()
		if len(st) != 1 {
			return time.Time{}
		}
		return st[0].Oldest
	}
	waitFor(t, "the first batch loaded and the second refused", 10*time.Second, func() bool {
		total, _ := s.stats()
		return total == 100 && oldest().Equal(stamp(100))
	})
	refuseFrom.Store(200)
	waitFor(t, "the second batch loaded", 10*time.Second, func() bool { return oldest().Equal(stamp(200)) })
	if total, _ := s.stats(); total != 200 {
		t.Fatalf("%d rows stored, want 200", total)
	}
	refuseFrom.Store(1 << 62)
	waitFor(t, "everything loaded: nothing waits", 10*time.Second, func() bool {
		total, _ := s.stats()
		return total == 300 && oldest().IsZero()
	})
	// A new record is the oldest waiting until it is loaded.
	refuseFrom.Store(300)
	late := now.Add(-time.Minute)
	if err := f.produce.ProduceSync(context.Background(), &kgo.Record{Topic: f.topic, Partition: 0, Value: []byte("v=late"), Timestamp: late}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new record waiting", 10*time.Second, func() bool { return oldest().Equal(late) })
	refuseFrom.Store(1 << 62)
	waitFor(t, "the new record loaded", 10*time.Second, func() bool { return oldest().IsZero() })
}
