package pipeline

import (
	"sort"
	"sync/atomic"
	"time"
)

// PartitionStats is a snapshot of one partition this process owns, for the
// admin dashboard. Offsets are Kafka offsets; -1 means not known yet.
type PartitionStats struct {
	Pipeline  string
	Topic     string
	Partition int32
	// Committed is the next offset to read, as this process last committed
	// it or, before its first commit, as the group held it at assignment.
	Committed int64
	// HighWatermark is the partition's end as of the last fetch that
	// reported it (a fetch from the partition's broker that returned
	// records for any partition); -1 until then.
	HighWatermark int64
	// Lag is HighWatermark - Committed, never negative; -1 when either is
	// unknown.
	Lag int64
	// Loaded, DeadLetters and Batches count since this process was
	// assigned the partition.
	Loaded      int64
	DeadLetters int64
	Batches     int64
	// LastBatchDuration is the last batch's time from being cut to its
	// commit, finished at LastBatchAt (zero when no batch finished yet).
	LastBatchDuration time.Duration
	LastBatchAt       time.Time
	// Paused says backpressure holds the partition back: its fetching is
	// paused (two batches' worth held, or out of the log's range), or it
	// holds records while the in-flight budget is spent.
	Paused bool
	// Failing says the worker is retrying something it depends on: the
	// insert, the dead-letter topic, the schema registry, or the lookup
	// of the resume point.
	Failing bool
	// Oldest is the Kafka timestamp of the oldest record this process
	// has fetched from the partition and not loaded yet (the first of the
	// batch in progress, else the first one waiting); zero when every
	// record fetched is loaded. Its age is how far behind the partition
	// is in time: records not fetched yet are newer (they follow it in the
	// log), and with none held the records fetched are all loaded, so
	// the partition is behind by no more than the poll's own wait.
	Oldest time.Time
}

// workerStats are the counters of one worker that Stats reads from other
// goroutines; the worker updates them where batches complete.
type workerStats struct {
	hwm         atomic.Int64 // -1 until a fetch reports it
	loaded      atomic.Int64
	deadLetters atomic.Int64
	batches     atomic.Int64
	lastNanos   atomic.Int64 // duration of the last batch
	lastAt      atomic.Int64 // unix nanos of its end; 0: none yet
	failing     atomic.Int32 // retry loops running now (they nest)
	// oldest is the Kafka timestamp (unix nanos) of the oldest record
	// handed to the worker and not loaded yet; 0: none. Set by enqueue
	// and nextOldest, both under the worker's mu.
	oldest atomic.Int64
}

func (s *workerStats) batchDone(loaded int, d time.Duration, end time.Time) {
	s.loaded.Add(int64(loaded))
	s.batches.Add(1)
	s.lastNanos.Store(int64(d))
	s.lastAt.Store(end.UnixNano())
}

// Stats returns a snapshot of every partition assigned now, sorted by
// pipeline and partition. It is safe for concurrent use with Run and cheap
// enough to call on every dashboard refresh; it never waits on a batch.
func (e *Engine) Stats() []PartitionStats {
	// The client's view of the group's commits fills in partitions this
	// process has not committed yet. Run publishes e.cl before closing
	// started; read outside e.mu so a rebalance callback (which takes
	// e.mu) can never wait on us.
	var groupCommitted map[string]map[int32]int64
	select {
	case <-e.started:
		for t, ps := range e.cl.CommittedOffsets() {
			m := make(map[int32]int64, len(ps))
			for p, eo := range ps {
				m[p] = eo.Offset
			}
			if groupCommitted == nil {
				groupCommitted = map[string]map[int32]int64{}
			}
			groupCommitted[t] = m
		}
	default:
	}

	e.mu.Lock()
	out := make([]PartitionStats, 0, len(e.workers))
	for k, w := range e.workers {
		st := PartitionStats{
			Pipeline:          w.p.Name,
			Topic:             k.topic,
			Partition:         k.partition,
			Committed:         w.committed.Load(),
			HighWatermark:     w.st.hwm.Load(),
			Lag:               -1,
			Loaded:            w.st.loaded.Load(),
			DeadLetters:       w.st.deadLetters.Load(),
			Batches:           w.st.batches.Load(),
			LastBatchDuration: time.Duration(w.st.lastNanos.Load()),
			Paused:            w.paused.Load(),
			Failing:           w.st.failing.Load() > 0,
		}
		if at := w.st.lastAt.Load(); at != 0 {
			st.LastBatchAt = time.Unix(0, at)
		}
		if at := w.st.oldest.Load(); at != 0 {
			st.Oldest = time.Unix(0, at)
		}
		if st.Committed < 0 {
			if off, ok := groupCommitted[k.topic][k.partition]; ok && off >= 0 {
				st.Committed = off
			}
		}
		if st.Committed >= 0 && st.HighWatermark >= 0 {
			st.Lag = max(st.HighWatermark-st.Committed, 0)
		}
		out = append(out, st)
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pipeline != out[j].Pipeline {
			return out[i].Pipeline < out[j].Pipeline
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// PipelineInfo names one configured pipeline and its topic.
type PipelineInfo struct {
	Name  string
	Topic string
}

// PipelineInfos lists the configured pipelines in config order, assigned
// partitions or not. Safe for concurrent use.
func (e *Engine) PipelineInfos() []PipelineInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]PipelineInfo, 0, len(e.opts.Pipelines))
	for _, p := range e.opts.Pipelines {
		out = append(out, PipelineInfo{Name: p.Name, Topic: p.Topic})
	}
	return out
}
