package pipeline

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
)

type stopMode int

const (
	stopFlush stopMode = iota + 1 // revoke, shutdown: load what is buffered, commit
	stopDrop                      // lost: another member owns the partition now
)

// worker owns one assigned partition: it batches, loads and commits that
// partition's records, one batch at a time, in offset order.
type worker struct {
	e         *Engine
	p         *Pipeline
	partition int32
	log       *slog.Logger
	writer    Writer
	batcher   *batch.Batcher

	mu    sync.Mutex
	queue []*kgo.Record
	wake  chan struct{}

	// held counts the bytes handed to this worker and not yet committed
	// (queued, batched or loading); the poll loop reads it for backpressure.
	held atomic.Int64
	// paused is touched only under e.mu by the poll loop.
	paused bool

	stopCh chan stopMode
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	// loadedUpTo is the highest offset known stored in the table: records
	// at or below it are re-deliveries and are skipped. -1 when none.
	loadedUpTo int64
	// committed is the offset last committed by this worker (next to read).
	committed int64
}

func newWorker(e *Engine, p *Pipeline, partition int32) *worker {
	ctx, cancel := context.WithCancel(e.hardCtx)
	return &worker{
		e: e, p: p, partition: partition,
		log:        e.log.With("pipeline", p.Name, "topic", p.Topic, "partition", partition),
		writer:     p.Sink.NewWriter(),
		batcher:    batch.New(p.Name, p.Topic, partition, p.Limits),
		wake:       make(chan struct{}, 1),
		stopCh:     make(chan stopMode, 1),
		done:       make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		loadedUpTo: -1,
		committed:  -1,
	}
}

// enqueue hands records over without blocking the poll loop.
func (w *worker) enqueue(recs []*kgo.Record, _ time.Time) {
	n := 0
	for _, r := range recs {
		n += batch.Size(r)
	}
	w.held.Add(int64(n))
	w.e.inflight.Add(int64(n))
	w.mu.Lock()
	w.queue = append(w.queue, recs...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// stop asks the worker to end; the caller waits on done. A flush that has
// not finished within flushTimeout (0: no limit of its own) is abandoned
// uncommitted: its records are re-delivered to the partition's next owner.
func (w *worker) stop(mode stopMode, flushTimeout time.Duration) {
	if mode == stopDrop {
		w.cancel()
	} else if flushTimeout > 0 {
		time.AfterFunc(flushTimeout, w.cancel)
	}
	w.stopCh <- mode
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	defer w.release(w.held.Load()) // whatever was not committed is given back
	if !w.resumePoint() {
		return
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if d := w.batcher.Deadline(); !d.IsZero() {
			timer.Reset(time.Until(d))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-w.wake:
		case <-timer.C:
		case mode := <-w.stopCh:
			if mode == stopFlush {
				w.drain(time.Now())
				for b := w.batcher.Flush(); b != nil; b = w.batcher.Flush() {
					if !w.process(b) {
						return
					}
				}
			}
			return
		case <-w.ctx.Done():
			return
		}
		now := time.Now()
		w.drain(now)
		for b := w.batcher.Ready(now); b != nil; b = w.batcher.Ready(now) {
			if !w.process(b) {
				return
			}
		}
	}
}

// resumePoint asks the sink for the highest offset already loaded, retrying
// while ClickHouse is unreachable. False when the worker was stopped first.
func (w *worker) resumePoint() bool {
	for attempt := 0; ; attempt++ {
		off, ok, err := w.p.Sink.MaxOffset(w.ctx, w.p.Topic, w.partition)
		if err == nil {
			if ok {
				w.loadedUpTo = off
				w.log.Info("resuming after the highest loaded offset", "loaded_up_to", off)
			}
			return true
		}
		w.log.Warn("cannot read the highest loaded offset; retrying", "err", err, "attempt", attempt+1)
		if !w.sleep(attempt) {
			return false
		}
	}
}

// drain moves queued records into the batcher, skipping re-deliveries of
// records already loaded.
func (w *worker) drain(now time.Time) {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	skipped, skippedBytes, lastSkipped := 0, 0, int64(-1)
	for _, r := range q {
		if r.Offset <= w.loadedUpTo {
			skipped++
			skippedBytes += batch.Size(r)
			lastSkipped = r.Offset
			continue
		}
		w.batcher.Add(r, now)
	}
	w.e.m.Consumed.WithLabelValues(w.p.Name).Add(float64(len(q) - skipped))
	if skipped == 0 {
		return
	}
	w.e.m.Skipped.WithLabelValues(w.p.Name).Add(float64(skipped))
	w.release(int64(skippedBytes))
	w.log.Info("skipped records already loaded", "count", skipped, "up_to", lastSkipped)
	// With nothing else buffered, move the committed offset past the
	// skipped records so the group's lag reflects reality.
	if w.batcher.Pending() == 0 && lastSkipped+1 > w.committed {
		if err := w.e.commit(w.p.Topic, w.partition, -1, lastSkipped+1); err != nil {
			w.log.Warn("commit after skipping failed", "err", err)
		} else {
			w.committed = lastSkipped + 1
		}
	}
}

func (w *worker) release(n int64) {
	if n == 0 {
		return
	}
	w.held.Add(-n)
	w.e.inflight.Add(-n)
}

// process takes one batch through decode, transforms, dead letters, load and
// commit. It returns false when the worker must stop (partition lost or
// hard shutdown) with the batch not committed.
func (w *worker) process(b *record.Batch) bool {
	start := time.Now()
	p := w.p
	for i := range b.Items {
		it := &b.Items[i]
		row, err := p.Decoder.Decode(it.Rec.Value)
		if err != nil {
			it.Fail(record.StageDecode, err.Error())
			continue
		}
		it.Row = row
	}
	for _, t := range p.Transforms {
		// A transform's own error (not a row's) fails the whole step,
		// like an unreachable lookup: retry it.
		if !w.retry("transform", func() error { return t.Apply(w.ctx, b) }) {
			return false
		}
	}
	good := w.writer.Prepare(b)

	// Dead letters go first: once rows past them are loaded, a restart
	// resumes after those rows and would never revisit a failed record.
	if good < len(b.Items) {
		var counts map[record.Stage]int
		ok := w.retry("dead-letter produce", func() error {
			var err error
			counts, err = w.e.opts.DeadLetters.Send(w.ctx, b)
			return err
		})
		if !ok {
			return false
		}
		for st, n := range counts {
			w.e.m.DeadLetters.WithLabelValues(p.Name, string(st)).Add(float64(n))
		}
	}

	if good > 0 {
		firstGood := firstGoodOffset(b)
		failing := false
		ok := w.retry("insert", func() error {
			err := w.writer.Send(w.ctx, b)
			if err == nil {
				return nil
			}
			w.e.m.InsertErrors.WithLabelValues(p.Name).Inc()
			if !failing {
				failing = true
				w.e.failing.Add(1)
			}
			// The acknowledgement may be what was lost: if the rows
			// are stored, retrying would load them twice.
			if off, found, qerr := p.Sink.MaxOffset(w.ctx, p.Topic, w.partition); qerr == nil && found && off >= firstGood {
				w.log.Warn("insert reported an error but the batch is stored; not retrying", "err", err)
				return nil
			}
			return err
		})
		if failing {
			w.e.failing.Add(-1)
		}
		if !ok {
			return false
		}
		w.loadedUpTo = b.Last
	}

	if err := w.e.commit(p.Topic, w.partition, b.Epoch, b.Last+1); err != nil {
		// Not fatal: the next commit covers this batch, and a restart
		// skips what the table already holds.
		w.log.Warn("commit failed", "err", err)
	} else {
		w.committed = b.Last + 1
	}
	w.e.m.Loaded.WithLabelValues(p.Name).Add(float64(good))
	w.e.m.Batches.WithLabelValues(p.Name).Inc()
	w.e.m.BatchRows.WithLabelValues(p.Name).Observe(float64(len(b.Items)))
	w.e.m.BatchSeconds.WithLabelValues(p.Name).Observe(time.Since(start).Seconds())
	w.release(int64(b.Bytes))
	w.batcher.Recycle(b)
	return true
}

func firstGoodOffset(b *record.Batch) int64 {
	for i := range b.Items {
		if b.Items[i].Failed == nil {
			return b.Items[i].Rec.Offset
		}
	}
	return b.Last
}

// retry runs fn until it succeeds, with capped exponential backoff and
// jitter. False when the worker's context ended first.
func (w *worker) retry(what string, fn func() error) bool {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		w.log.Warn(what+" failed; retrying", "err", err, "attempt", attempt+1)
		if !w.sleep(attempt) {
			return false
		}
	}
}

// sleep waits the backoff of the attempt; false when the worker's context
// ended (a stop during a flush keeps retrying until the hard deadline).
func (w *worker) sleep(attempt int) bool {
	d := w.e.opts.BackoffMin << min(attempt, 16)
	if d > w.e.opts.BackoffMax || d <= 0 {
		d = w.e.opts.BackoffMax
	}
	d = d/2 + rand.N(d/2+1) // jitter: spread retries of many partitions
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ctx.Done():
		return false
	}
}

