package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/stage"
)

// This file is a partition's lifecycle: a worker is started when the group
// assigns the partition, takes records from the poll loop, cuts them into
// batches and runs each through the stages (process), and ends on revoke
// (flush), loss (drop) or shutdown (flush). The load protocol of one batch
// is in load.go, the retry policy in retry.go.

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
	// stages are the pipeline's transforms as the stage runner takes them.
	stages []stage.Transform
	// columnar says the decoder and the stages run on a Block, with the
	// side lists needs (stage.Columnar, asked once).
	columnar bool
	needs    []string
	// lag is this partition's sluice_partition_lag series.
	lag     prometheus.Gauge
	batcher *batch.Batcher
	// adapt holds the limits the batcher cuts at now, lowered or
	// stretched while ClickHouse is under pressure (adapt.go); streak
	// counts the INSERTs refused for pressure in a row, memEpisode and
	// partsEpisode say a WARN for the episode was logged (until the
	// limits are the configured ones again), floorLogged that the floor
	// was reached in it.
	adapt                                 *adaptive
	streak                                int
	memEpisode, partsEpisode, floorLogged bool

	mu sync.Mutex
	// queue holds the records handed over and not yet drained into the
	// batcher, each fetch's with the time it arrived: a batch's max_wait
	// counts from its first record's arrival, not from the drain, which
	// waits while the worker loads the previous batch.
	queue []arrival
	// released is what the batch in process gave back to the in-flight
	// budget (releaseRecords); a wait counts it again (retry.go).
	released int64
	// topicID is the topic ID of the records drained into the batcher
	// last, stamped on batches; each arrival carries its own.
	topicID string
	// otherIncarnation says the table was found holding rows of another
	// incarnation of the topic (warned once).
	otherIncarnation bool
	// clean is where the partition needs no stored read (load.go).
	clean cleanRegion
	// stream is the INSERT open across batches, nil when none is;
	// noStreamThrough is the last offset of a stream that failed on this
	// partition: batches up to it go one INSERT each (stream.go).
	stream          *openStream
	noStreamThrough int64
	// readSkipped says the last ready skipped settle and stored read.
	readSkipped bool
	wake        chan struct{}

	// held counts the bytes handed to this worker and not yet committed
	// (queued, batched or loading); the poll loop reads it for backpressure.
	held atomic.Int64
	// paused says, for Stats and starved, that backpressure holds the
	// partition back: the client has it paused (the client's set is the
	// truth), or it holds records while the in-flight budget is spent and
	// the poll loop takes no more.
	paused atomic.Bool
	// outOfRange (under e.mu) says the poll loop has handled the current
	// out-of-range error of the partition; stalled says the partition
	// stopped for it (kafka.on_offset_out_of_range: stop).
	outOfRange bool
	stalled    atomic.Bool

	stopOnce sync.Once
	stopCh   chan stopMode
	// stopping is set once the worker was asked to end: a fence refused
	// then is final (the partition is being handed over), not retried.
	stopping atomic.Bool
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc

	// hasSlot says the worker holds one of the engine's processing slots,
	// hasLive one of its live-batch tokens (retry.go).
	hasSlot, hasLive bool
	// committed is the offset last committed by this worker (next to read);
	// atomic because Engine.Stats reads it.
	committed atomic.Int64
	// first is the offset of the first record handed to this worker (-1
	// before any): where a pipeline restarted in place resumes when this
	// worker committed nothing (reconfigure.go).
	first atomic.Int64
	// st are the counters Engine.Stats reads.
	st workerStats
	// dlqSeen holds the source offsets at or above the committed offset
	// that already have a dead letter (from a previous owner, or produced
	// by this worker for a batch not yet committed), each with its
	// letter's dead-letter position; dlqNext is the position after the
	// partition's last letter (DeadLetters). A commit stores dlqAt.
	dlqSeen map[int64]int64
	dlqNext int64
}

func newWorker(e *Engine, p *Pipeline, partition int32) *worker {
	ctx, cancel := context.WithCancel(e.hardCtx)
	w := &worker{
		e: e, p: p, partition: partition,
		log:     e.log.With("pipeline", p.Name, "topic", p.Topic, "partition", partition),
		writer:  p.Sink.NewWriter(),
		stages:  p.stages(),
		batcher: batch.New(p.Name, p.Topic, partition, p.Limits),
		adapt:   newAdaptive(p.Limits),
		wake:    make(chan struct{}, 1),
		stopCh:  make(chan stopMode, 1),
		done:    make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
	}
	w.needs, w.columnar = stage.Columnar(p.Decoder, w.stages)
	// The caller holds e.mu (a new worker goes into e.workers).
	w.noStreamThrough = -1
	if at, ok := e.noStream[tp{p.Topic, partition}]; ok {
		w.noStreamThrough = at
		delete(e.noStream, tp{p.Topic, partition}) // this worker's now
	}
	w.committed.Store(-1)
	w.first.Store(-1)
	w.st.hwm.Store(-1)
	w.lag = e.m.Lag.WithLabelValues(p.Name, strconv.Itoa(int(partition)))
	return w
}

// enqueue hands records over without blocking the poll loop. fetched is
// when the poll returned them.
func (w *worker) enqueue(recs []*kgo.Record, topicID string, fetched time.Time) {
	if len(recs) == 0 {
		return
	}
	n := 0
	for _, r := range recs {
		n += batch.Held(r)
	}
	w.held.Add(int64(n))
	w.e.inflight.Add(int64(n))
	if len(recs) > 0 && w.first.Load() < 0 {
		w.first.Store(recs[0].Offset)
	}
	w.mu.Lock()
	w.queue = append(w.queue, arrival{recs: recs, at: fetched, topicID: topicID})
	if w.st.oldest.Load() == 0 { // nothing older waits: these are the oldest
		w.st.oldest.Store(recordTime(recs[0], fetched))
	}
	w.mu.Unlock()
	w.poke()
}

// poke wakes the worker's loop (it looks at its queue and batcher again).
func (w *worker) poke() { signal(w.wake) }

// signal wakes whoever waits on ch (a channel of capacity 1) without
// blocking: a wake-up already pending stands for this one too.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// stop asks the worker to end; the caller waits on done. Only the first
// call counts (shutdown and a revoke may both stop a worker). A flush that
// has not finished within flushTimeout (0: no limit of its own) is
// abandoned uncommitted: its records are re-delivered to the partition's
// next owner, which waits until the abandoned INSERT has ended (load.go).
func (w *worker) stop(mode stopMode, flushTimeout time.Duration) {
	w.stopOnce.Do(func() {
		w.stopping.Store(true)
		if mode == stopDrop {
			w.cancel()
		} else if flushTimeout > 0 {
			time.AfterFunc(flushTimeout, w.cancel)
		}
		w.stopCh <- mode
	})
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
	defer w.dropStream()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d := w.batcher.Deadline()
		if w.stream != nil && (d.IsZero() || w.stream.deadline.Before(d)) {
			d = w.stream.deadline
		}
		if !d.IsZero() {
			timer.Reset(time.Until(d))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-w.wake:
		case <-timer.C:
		case mode := <-w.stopCh:
			if mode == stopFlush {
				w.drain()
				for b := w.batcher.Flush(); b != nil; b = w.batcher.Flush() {
					if !w.process(b) {
						return
					}
				}
				w.endStream()
			}
			return
		case <-w.ctx.Done():
			return
		}
		now := time.Now()
		w.drain()
		for b := w.batcher.Ready(now); b != nil; b = w.batcher.Ready(now) {
			if !w.process(b) {
				return
			}
		}
		if b := w.starved(); b != nil && !w.process(b) {
			return
		}
		if w.stream != nil && !time.Now().Before(w.stream.deadline) && !w.endStream() {
			return
		}
	}
}

// starved cuts the open batch early when no more records can come for it:
// the in-flight budget is spent (the poll loop takes no records), the
// partition is held back, nothing is queued, and no batch is in process
// (one would give records back soon). Waiting out max_wait would hold the
// budget idle (with many partitions each holds a part of a batch, and
// none fills), or for ever where max_wait is long. The engine wakes the
// worker when it holds the partition back, and again while no batch is in
// process.
func (w *worker) starved() *record.Batch {
	if !w.paused.Load() || !w.e.spent() || w.batcher.Pending() == 0 {
		return nil
	}
	if w.e.processing() > 0 {
		return nil // a batch in process gives its records back soon
	}
	w.mu.Lock()
	queued := len(w.queue)
	w.mu.Unlock()
	if queued > 0 {
		return nil
	}
	b := w.batcher.Flush()
	if b != nil {
		// Cut for the budget, not for time: records are waiting (an
		// INSERT stream may stay open for them).
		b.Full = true
	}
	return b
}

// resumePoint asks the dead-letter topic for letters produced since the
// last commit, retrying while it is unreachable. False when the worker was
// stopped first. (Which records the table already holds is read before
// each write: see load.go.)
func (w *worker) resumePoint() bool {
	return w.retry("read the dead letters of the partition", func() error {
		seen, next, err := w.e.opts.DeadLetters.Resume(w.ctx, w.e.opts.Group, w.p.Topic, w.partition)
		if err != nil {
			return err
		}
		if err := w.readSkip(); err != nil {
			return err
		}
		w.dlqSeen, w.dlqNext = seen, next
		if w.dlqSeen == nil {
			w.dlqSeen = map[int64]int64{}
		}
		if len(seen) > 0 {
			w.log.Info("dead letters already produced for records not yet committed", "count", len(seen))
		}
		return nil
	})
}

// readSkip reads, from the partition's committed metadata, the source
// offsets an earlier owner gave up to retention, so this worker's commits
// carry the record on (Options.ReadSkip).
func (w *worker) readSkip() error {
	if w.e.opts.ReadSkip == nil {
		return nil
	}
	offs, err := kadm.NewClient(w.e.cl).FetchOffsets(w.ctx, w.e.opts.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil // nothing committed yet
	}
	if err != nil {
		return err
	}
	o, ok := offs.Lookup(w.p.Topic, w.partition)
	if !ok || o.Err != nil {
		return nil
	}
	if from, to, ok := w.e.opts.ReadSkip(o.Metadata); ok {
		w.e.mu.Lock()
		if _, known := w.e.skips[tp{w.p.Topic, w.partition}]; !known {
			w.e.skips[tp{w.p.Topic, w.partition}] = [2]int64{from, to}
		}
		w.e.mu.Unlock()
	}
	return nil
}

// drain moves queued records into the batcher.
func (w *worker) drain() {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	n := 0
	for _, a := range q {
		if a.topicID != "" && a.topicID != w.topicID {
			if w.topicID != "" {
				w.log.Warn("the topic was deleted and created again while assigned (new topic ID): loading the new incarnation",
					"topic_id", a.topicID, "previous_topic_id", w.topicID)
				// The batches so far hold the earlier incarnation's records.
				w.batcher.Seal(w.topicID)
			}
			w.topicID = a.topicID
		}
		for _, r := range a.recs {
			w.batcher.Add(r, a.at)
		}
		n += len(a.recs)
	}
	w.e.m.Consumed.WithLabelValues(w.p.Name).Add(float64(n))
}

// arrival is one fetch's records for the worker, when they arrived, and
// their topic's ID ("" when the fetch did not say).
type arrival struct {
	recs    []*kgo.Record
	at      time.Time
	topicID string
}

func (w *worker) release(n int64) {
	if n == 0 {
		return
	}
	w.held.Add(-n)
	if w.e.inflight.Add(-n) < w.e.opts.InflightBytes {
		signal(w.e.freed)
	}
}

// process takes one batch through decode, transforms, the load protocol
// (dead letters and the INSERT) and the commit. It returns false when the
// worker must stop (partition lost, handed over, or hard shutdown) with the
// batch not committed.
func (w *worker) process(b *record.Batch) bool {
	if !w.acquire() {
		return false
	}
	defer w.releaseAll()
	if an, ok := w.writer.(announcer); ok && w.sharesInserts() {
		an.Announce(w.partition)
		defer an.Unannounce()
	}
	start := time.Now()
	p := w.p
	if b.TopicID == "" { // else sealed with an earlier incarnation's
		b.TopicID = w.topicID
	}
	if bw, ok := w.writer.(interface{ Block([]string) record.Block }); ok && w.columnar {
		b.Block = bw.Block(w.needs)
	}
	if !stage.Run(w.ctx, b, p.Decoder, w.stages, w.retry) {
		return false
	}
	w.released = w.releaseRecords(b)
	defer func() { w.released = 0 }()
	loaded, ok := w.load(b)
	if !ok {
		return false
	}
	if w.stream != nil {
		// In the open INSERT stream (or nothing of it to send while
		// one is open): committed when the stream ends.
		w.st.batchDone(0, time.Since(start), time.Now())
		return w.streamed(b, start)
	}
	w.nextOldest()
	w.commitBatch(b)
	w.e.m.Loaded.WithLabelValues(p.Name).Add(float64(loaded))
	w.e.m.Batches.WithLabelValues(p.Name).Inc()
	w.e.m.BatchRows.WithLabelValues(p.Name).Observe(float64(len(b.Items)))
	end := time.Now()
	w.e.m.BatchSeconds.WithLabelValues(p.Name).Observe(end.Sub(start).Seconds())
	w.st.batchDone(loaded, end.Sub(start), end)
	w.release(int64(b.Bytes+len(b.Items)*batch.RecordOverhead) - w.released)
	if d, ok := w.writer.(interface{ Done() }); ok {
		d.Done()
	}
	w.batcher.Recycle(b)
	return true
}

// releaseRecords drops the Kafka records of a columnar batch's good items
// once the stages ran (record.Item.Release), and gives what they held back
// to the in-flight budget: their rows are in the batch's block, which is
// all the load needs, so the partitions fetch on while the batch loads.
// The block's strings may still point into the records' fetch buffers
// (the driver writer's String columns, and FixedString and Array(String)
// ones; the native writer's String columns hold their own bytes,
// pkg/sink/nativestr.go), so those may stay alive until the batch is
// done: their keys and values are no
// more than max_bytes per batch in process (a term of the memory bound of
// its own, config.MemoryBound), and the budget keeps counting each
// record's framing in the buffer (batch.RecordFraming) until the commit. A
// failed item keeps its record for its dead letter; an item whose row
// fails later, at the load, has its record read again from Kafka
// (restoreOriginals). It returns the bytes given back; none when the
// batch has no block or nothing can read records again.
func (w *worker) releaseRecords(b *record.Batch) int64 {
	if b.Block == nil || w.e.originals() == nil {
		return 0
	}
	n := int64(0)
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed == nil && it.Rec != nil {
			n += int64(batch.Held(it.Rec) - batch.RecordFraming)
			it.Release()
		}
	}
	w.release(n)
	return n
}

// nextOldest, called once a batch is loaded, makes the record after it
// the oldest waiting: the first the batcher holds, else the first queued,
// else none (0). Under w.mu, as enqueue's check is, so records enqueued
// meanwhile are either seen here or find 0 and set it themselves.
func (w *worker) nextOldest() {
	next := w.batcher.Oldest()
	w.mu.Lock()
	defer w.mu.Unlock()
	if next == nil && len(w.queue) > 0 {
		next = w.queue[0].recs[0]
	}
	if next == nil {
		w.st.oldest.Store(0)
		return
	}
	w.st.oldest.Store(recordTime(next, time.Now()))
}

// recordTime is r's Kafka timestamp in unix nanoseconds (the producer's
// create time, or the broker's append time on a topic configured so), or
// else when r carries none (a broker that never stamped it: -1).
func recordTime(r *kgo.Record, orElse time.Time) int64 {
	if r.Timestamp.UnixMilli() > 0 {
		return r.Timestamp.UnixNano()
	}
	return orElse.UnixNano()
}

// commitBatch commits b.Last+1 with the dead-letter position, and forgets
// the letters the commit now covers.
func (w *worker) commitBatch(b *record.Batch) {
	if err := w.e.commit(w.p.Topic, w.partition, b.Epoch, b.Last+1, w.dlqAt(b.Last+1)); err != nil {
		// Not fatal: the next commit covers this batch, and whoever
		// loads the records again finds them stored (load.go).
		w.log.Warn("commit failed", "err", err)
		return
	}
	w.committed.Store(b.Last + 1)
	for off := range w.dlqSeen {
		if off <= b.Last {
			delete(w.dlqSeen, off)
		}
	}
}
