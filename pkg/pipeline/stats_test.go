package pipeline

import (
	"sync"
	"testing"
	"time"
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
