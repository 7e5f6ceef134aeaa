package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
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
	// lag is this partition's sluice_partition_lag series.
	lag     prometheus.Gauge
	batcher *batch.Batcher

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
	// resumed says loadedUpTo was read from the table for this assignment.
	resumed bool
	// hasSlot says the worker holds one of the engine's processing slots.
	hasSlot bool
	// committed is the offset last committed by this worker (next to read);
	// atomic because Engine.Stats reads it.
	committed atomic.Int64
	// st are the counters Engine.Stats reads.
	st workerStats
	// dlqSeen holds the source offsets that already have a dead letter
	// (from a previous owner); dlqNext is the dead-letter offset stored
	// with each commit.
	dlqSeen map[int64]bool
	dlqNext int64
	// dlqFence is dlqNext as it was before the current batch's letters:
	// a commit that does not pass the batch (a fence) must point the next
	// owner before them.
	dlqFence int64
}

func newWorker(e *Engine, p *Pipeline, partition int32) *worker {
	ctx, cancel := context.WithCancel(e.hardCtx)
	w := &worker{
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
	}
	w.committed.Store(-1)
	w.st.hwm.Store(-1)
	w.lag = e.m.Lag.WithLabelValues(p.Name, strconv.Itoa(int(partition)))
	return w
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
	// Whatever was handed over and not committed is given back to the
	// in-flight budget (read at exit, not now).
	defer func() { w.release(w.held.Load()) }()
	select {
	case <-w.e.started:
	case <-w.ctx.Done():
		return
	}
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
				if !w.drain(time.Now()) {
					return
				}
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
		if !w.drain(now) {
			return
		}
		for b := w.batcher.Ready(now); b != nil; b = w.batcher.Ready(now) {
			if !w.process(b) {
				return
			}
		}
	}
}

// resumePoint asks the dead-letter topic for letters produced since the
// last commit, retrying while it is unreachable. False when the worker was
// stopped first. (The highest offset already loaded is read when the first
// records arrive: see loadedFrom.)
func (w *worker) resumePoint() bool {
	return w.retry("read the dead letters of the partition", func() error {
		seen, next, err := w.e.opts.DeadLetters.Resume(w.ctx, w.e.opts.Group, w.p.Topic, w.partition)
		if err != nil {
			return err
		}
		w.dlqSeen, w.dlqNext = seen, next
		if len(seen) > 0 {
			w.log.Info("dead letters already produced for records not yet committed", "count", len(seen))
		}
		return nil
	})
}

// drain moves queued records into the batcher, skipping re-deliveries of
// records already loaded.
func (w *worker) drain(now time.Time) bool {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	if len(q) > 0 && !w.resumed && !w.loadedFrom(q[0].Offset) {
		return false
	}
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
		return true
	}
	w.e.m.Skipped.WithLabelValues(w.p.Name).Add(float64(skipped))
	w.release(int64(skippedBytes))
	w.log.Info("skipped records already loaded", "count", skipped, "up_to", lastSkipped)
	// With nothing else buffered, move the committed offset past the
	// skipped records so the group's lag reflects reality.
	if w.batcher.Pending() == 0 && lastSkipped+1 > w.committed.Load() {
		if err := w.e.commit(w.p.Topic, w.partition, -1, lastSkipped+1, w.dlqNext); err != nil {
			w.log.Warn("commit after skipping failed", "err", err)
		} else {
			w.committed.Store(lastSkipped + 1)
		}
	}
	return true
}

// loadedFrom reads, once per assignment, the highest offset stored at or
// above first — the first record delivered, which is the group's committed
// position: nothing below it comes again. Records at or below the answer
// were loaded by a previous owner that crashed before committing; drain
// skips them. Retries while ClickHouse is unreachable; false when the
// worker was stopped first.
func (w *worker) loadedFrom(first int64) bool {
	return w.retry("read the highest loaded offset", func() error {
		off, ok, err := w.p.Sink.MaxOffset(w.ctx, w.p.Topic, w.partition, first)
		if err != nil {
			return err
		}
		w.resumed = true
		if ok {
			w.loadedUpTo = max(w.loadedUpTo, off)
			w.log.Info("resuming after the highest loaded offset", "loaded_up_to", off)
		}
		return nil
	})
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
	if !w.acquire() {
		return false
	}
	defer w.releaseSlot()
	start := time.Now()
	p := w.p
	w.dlqFence = w.dlqNext
	for i := range b.Items {
		it := &b.Items[i]
		// A decoder that cannot reach what it depends on (the schema
		// registry) says so with decode.ErrUnavailable: the record is
		// not bad, so back off and decode it again; never dead-letter it.
		if !w.retry("decode", func() error {
			row, err := w.decode(it.Rec.Value)
			if errors.Is(err, decode.ErrUnavailable) {
				return err
			}
			if err != nil {
				it.Fail(record.StageDecode, err.Error())
				return nil
			}
			it.Row = row
			return nil
		}) {
			return false
		}
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
	if good < len(b.Items) && !w.deadLetter(b) {
		return false
	}

	if good > 0 {
		loaded, ok := w.load(b, true)
		if !ok {
			return false
		}
		good = loaded
		w.loadedUpTo = max(w.loadedUpTo, b.Last)
	}

	if err := w.e.commit(p.Topic, w.partition, b.Epoch, b.Last+1, w.dlqNext); err != nil {
		// Not fatal: the next commit covers this batch, and a restart
		// skips what the table already holds.
		w.log.Warn("commit failed", "err", err)
	} else {
		w.committed.Store(b.Last + 1)
	}
	w.e.m.Loaded.WithLabelValues(p.Name).Add(float64(good))
	w.e.m.Batches.WithLabelValues(p.Name).Inc()
	w.e.m.BatchRows.WithLabelValues(p.Name).Observe(float64(len(b.Items)))
	end := time.Now()
	w.e.m.BatchSeconds.WithLabelValues(p.Name).Observe(end.Sub(start).Seconds())
	w.st.batchDone(good, end.Sub(start), end)
	w.release(int64(b.Bytes))
	w.batcher.Recycle(b)
	return true
}

// load stores the good items of b, in offset order. prepared says the
// writer already holds b's rows (the first, whole-batch attempt). It returns
// the rows this worker inserted, and false when the worker must stop with
// the batch not committed.
//
// Before sending, it fences: the rows are sent only while this member still
// owns the partition (a commit of b.First succeeds, which the group
// coordinator refuses to a member it has expelled), and only the rows above
// the partition's highest stored offset are sent (another owner may have
// loaded some meanwhile). After a failed send it checks whether the rows
// landed anyway (a lost acknowledgement). A rejection of the rows' content
// splits the batch in two and loads each half, left to right, down to the
// single rows the server refuses, which are dead-lettered with its message
// before any row after them is sent.
func (w *worker) load(b *record.Batch, prepared bool) (int, bool) {
	p := w.p
	good := 0
	if prepared {
		good = b.Good()
	} else {
		good = w.writer.Prepare(b)
	}
	if good == 0 {
		return 0, true
	}
	failing := false
	defer func() {
		if failing {
			w.e.failing.Add(-1)
			w.st.failing.Add(-1)
		}
	}()
	for attempt := 0; ; attempt++ {
		if w.ctx.Err() != nil {
			return 0, false
		}
		stored, found, err := p.Sink.MaxOffset(w.ctx, p.Topic, w.partition, firstGoodOffset(b))
		if err == nil {
			// Fenced: another member may own the partition now. Never
			// send without a successful fence; the group's lost-partition
			// callback will stop this worker if the loss is real.
			err = w.fence(b)
		}
		if err == nil && found && stored >= firstGoodOffset(b) {
			// Some of these rows are already stored: send only the rest.
			i := 0
			for i < len(b.Items) && b.Items[i].Rec.Offset <= stored {
				i++
			}
			w.log.Warn("rows already stored by another member; loading only the rest", "stored_up_to", stored)
			if i == len(b.Items) {
				return 0, true
			}
			return w.load(b.Slice(i, len(b.Items)), false)
		}
		if err == nil {
			err = w.writer.Send(w.ctx, b)
			if err == nil {
				return good, true
			}
			w.e.m.InsertErrors.WithLabelValues(p.Name).Inc()
			if sink.Classify(err) == sink.BadData {
				return w.bisect(b, good, err)
			}
			// The acknowledgement may be what was lost: if the rows
			// are stored, sending them again would load them twice.
			if off, ok, qerr := p.Sink.MaxOffset(w.ctx, p.Topic, w.partition, firstGoodOffset(b)); qerr == nil && ok && off >= firstGoodOffset(b) {
				w.log.Warn("insert reported an error but the rows are stored; not sending again", "err", err)
				return good, true
			}
		}
		if !failing {
			failing = true
			w.e.failing.Add(1)
			w.st.failing.Add(1)
		}
		w.log.Warn("load failed; retrying", "err", err, "attempt", attempt+1, "class", sink.Classify(err).String())
		if !w.sleep(attempt) {
			return 0, false
		}
	}
}

// bisect handles a batch whose content the server rejected with err.
func (w *worker) bisect(b *record.Batch, good int, err error) (int, bool) {
	if good == 1 {
		for i := range b.Items {
			if b.Items[i].Failed == nil {
				b.Items[i].Fail(record.StageLoad, "clickhouse rejected the row: "+err.Error())
				return 0, w.deadLetter(b.Slice(i, i+1))
			}
		}
		return 0, true
	}
	mid := b.SplitGood()
	w.log.Info("clickhouse rejected a batch's content; splitting it", "first", b.First, "last", b.Last, "rows", good, "err", err)
	left, ok := w.load(b.Slice(0, mid), false)
	if !ok {
		return 0, false
	}
	right, ok := w.load(b.Slice(mid, len(b.Items)), false)
	return left + right, ok
}

// deadLetter produces the failed items of b (but those a previous owner
// already produced) and waits for their acknowledgement, retrying; false
// when the worker must stop first. Like an insert, it happens only after a
// successful fence.
func (w *worker) deadLetter(b *record.Batch) bool {
	var counts map[record.Stage]int
	if !w.retry("dead-letter produce", func() error {
		if err := w.fence(b); err != nil {
			return err
		}
		c, next, err := w.e.opts.DeadLetters.Send(w.ctx, b, func(off int64) bool { return w.dlqSeen[off] })
		if err != nil {
			return err
		}
		counts, w.dlqNext = c, max(w.dlqNext, next)
		return nil
	}) {
		return false
	}
	for st, n := range counts {
		w.e.m.DeadLetters.WithLabelValues(w.p.Name, string(st)).Add(float64(n))
		w.st.deadLetters.Add(int64(n))
	}
	return true
}

// errFenced says the group does not let this member commit: another
// member may own the partition now.
var errFenced = errors.New("fenced: the group refused this member's commit")

// fence commits b.First, which is no later than what this worker already
// committed plus what it has since dead-lettered, to prove the member still
// owns the partition.
func (w *worker) fence(b *record.Batch) error {
	err := w.e.commit(w.p.Topic, w.partition, b.Epoch, b.First, w.dlqFence)
	if err == nil {
		w.committed.Store(max(w.committed.Load(), b.First))
		return nil
	}
	for _, f := range []error{kerr.IllegalGeneration, kerr.UnknownMemberID, kerr.FencedInstanceID, kerr.StaleMemberEpoch} {
		if errors.Is(err, f) {
			return fmt.Errorf("%w: %w", errFenced, err)
		}
	}
	return err
}

func (w *worker) decode(value []byte) (record.Row, error) {
	if cd, ok := w.p.Decoder.(decode.ContextDecoder); ok {
		return cd.DecodeContext(w.ctx, value)
	}
	return w.p.Decoder.Decode(value)
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
		if attempt == 0 { // shown as failing until this returns
			w.st.failing.Add(1)
			defer w.st.failing.Add(-1)
		}
		w.log.Warn(what+" failed; retrying", "err", err, "attempt", attempt+1)
		if !w.sleep(attempt) {
			return false
		}
	}
}

// acquire takes a processing slot (Options.Parallel); false when the worker
// was stopped first.
func (w *worker) acquire() bool {
	select {
	case w.e.slots <- struct{}{}:
		w.hasSlot = true
		return true
	case <-w.ctx.Done():
		return false
	}
}

func (w *worker) releaseSlot() {
	if w.hasSlot {
		w.hasSlot = false
		<-w.e.slots
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
	// A waiting worker lets others use its processing slot: one failing
	// table must not stall the pipelines whose tables are fine.
	held := w.hasSlot
	w.releaseSlot()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !held || w.acquire()
	case <-w.ctx.Done():
		return false
	}
}
