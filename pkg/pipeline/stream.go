package pipeline

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/record"
)

// This file is the INSERT stream of a partition (Options.StreamWait;
// docs/DESIGN.md, "INSERT streams"): while a partition's batches are cut
// full (a backlog), one INSERT stays open across them, each batch a block
// of it, and ClickHouse squashes the blocks into parts of up to
// StreamRows rows or StreamBytes bytes instead of writing a part per
// batch. The batches are committed together once the INSERT ended well.
//
//   - A batch goes into the stream only on its first attempt, inside the
//     worker's clean region (nobody else wrote there, load.go), at the
//     configured limits (not while adapting to pressure), with sharing
//     off and outside the range of a stream that failed. It is fenced
//     like any batch, but at the stream's first offset: the batches
//     before it are not stored yet, so nothing above that may be
//     committed (invariant 1).
//   - Once its block is sent a batch is done in the worker: its records,
//     its budget and its column buffers are given back. Its dead letters
//     were produced before the block (invariant 8).
//   - The stream ends when a batch not cut full joins it (the partition
//     caught up: latency counts now), when it reaches StreamRows or
//     StreamBytes, at StreamWait after it opened, and when the worker
//     stops (a flush ends it and commits; a drop cuts it off and abandons
//     it). Ended well, the last batch's end is committed.
//   - A stream that fails is abandoned like any INSERT of unknown outcome
//     (cancelled, waited for, then OutcomeWait), and the worker asks the
//     engine to start the partition again from its last commit
//     (Engine.restart): the records are fetched again, the new worker's
//     first batch reads what is stored (any subset of the stream's rows),
//     and the batches up to the failed stream's last offset go one INSERT
//     each, through the whole protocol (bisect, pressure).

// streamer is a Writer that can hold one INSERT open across batches.
type streamer interface {
	// CanStream says whether the table can.
	CanStream() bool
	// OpenStream begins the INSERT with b as its first batch (its query
	// ID names b's partition and first offset); nothing is sent yet.
	OpenStream(ctx context.Context, b *record.Batch, rows, bytes int, life time.Duration) (insertStream, error)
}

// insertStream is one open INSERT.
type insertStream interface {
	// Append sends the prepared rows of b as a block; after an error the
	// stream is over and its outcome unknown.
	Append(b *record.Batch) error
	// End ends the INSERT: nil when every row sent is stored.
	End() error
	// Abort cuts the INSERT off.
	Abort()
}

// openStream is the worker's INSERT stream and the batches in it.
type openStream struct {
	s insertStream
	// first is the first offset of its first batch: what fences commit
	// while it is open. last and epoch are its last batch's, committed
	// when it ends.
	first, last int64
	epoch       int32
	rows, bytes int
	deadline    time.Time
}

// streamable says whether b, about to be loaded for the first time, may
// go into an INSERT stream.
func (w *worker) streamable(b *record.Batch) bool {
	o := &w.e.opts
	if o.StreamWait <= 0 || w.sharesInserts() || b.First <= w.noStreamThrough || w.batcher.Limits() != w.p.Limits {
		return false
	}
	if s, ok := w.writer.(streamer); !ok || !s.CanStream() {
		return false
	}
	from := pendingFrom(b)
	return from >= 0 && w.clean.covers(from, b.TopicID, w.e.member.Load())
}

// appendStream sends b's prepared rows into the partition's stream,
// opening one for b when none is open. opened false (with the error) when
// no stream could be opened: nothing was sent, and b goes alone.
func (w *worker) appendStream(b *record.Batch, good int) (opened bool, err error) {
	if w.stream == nil {
		o := &w.e.opts
		s, err := w.writer.(streamer).OpenStream(w.ctx, b, o.StreamRows, o.StreamBytes, o.StreamWait)
		if err != nil {
			return false, err
		}
		w.stream = &openStream{s: s, first: b.First, deadline: time.Now().Add(o.StreamWait)}
	}
	// From here on the rows may be stored, whatever the stream returns.
	w.clean.sent(b.Last)
	w.stream.last, w.stream.epoch = b.Last, b.Epoch
	if err := w.stream.s.Append(b); err != nil {
		return true, err
	}
	w.stream.rows += good
	w.stream.bytes += b.Bytes
	return true, nil
}

// streamed finishes b in the worker once it is in the open stream (or
// had nothing to send while one was open): its budget, buffers and items
// go back, and the stream ends when b says the partition caught up or the
// stream is full. False when the worker must stop.
func (w *worker) streamed(b *record.Batch, start time.Time) bool {
	st := w.stream
	st.last, st.epoch = max(st.last, b.Last), b.Epoch
	w.nextOldest()
	w.e.m.Batches.WithLabelValues(w.p.Name).Inc()
	w.e.m.BatchRows.WithLabelValues(w.p.Name).Observe(float64(len(b.Items)))
	w.release(int64(b.Bytes+len(b.Items)*batch.RecordOverhead) - w.released)
	if d, ok := w.writer.(interface{ Done() }); ok {
		d.Done()
	}
	ends := !b.Full || st.rows >= w.e.opts.StreamRows || st.bytes >= w.e.opts.StreamBytes || !time.Now().Before(st.deadline)
	w.batcher.Recycle(b)
	w.e.m.BatchSeconds.WithLabelValues(w.p.Name).Observe(time.Since(start).Seconds())
	if ends {
		return w.endStream()
	}
	return true
}

// endStream ends the open stream and commits its batches. False when it
// failed (the worker then stops, and the partition starts again from its
// last commit) or the worker must stop.
func (w *worker) endStream() bool {
	st := w.stream
	if st == nil {
		return true
	}
	err := st.s.End()
	w.stream = nil
	if err != nil {
		w.streamFailed(st, err)
		return false
	}
	w.log.Debug("INSERT stream ended", "first", st.first, "last", st.last, "rows", st.rows, "bytes", st.bytes,
		"open", time.Since(st.deadline.Add(-w.e.opts.StreamWait)).Round(time.Millisecond))
	w.e.m.Streams.WithLabelValues(w.p.Name, "ok").Inc()
	w.commitBatch(&record.Batch{Last: st.last, Epoch: st.epoch})
	w.e.m.Loaded.WithLabelValues(w.p.Name).Add(float64(st.rows))
	w.st.loaded.Add(int64(st.rows)) // its batches counted themselves
	return true
}

// streamFailed handles a stream whose outcome is unknown: abandoned like
// an INSERT (invariant 6), then, unless the worker is stopping anyway,
// the partition is started again from its last commit, its batches up to
// the stream's last offset one INSERT each.
func (w *worker) streamFailed(st *openStream, err error) {
	w.stream = nil
	w.e.m.InsertErrors.WithLabelValues(w.p.Name).Inc()
	w.e.m.Streams.WithLabelValues(w.p.Name, "failed").Inc()
	w.log.Warn("an INSERT stream failed: the partition starts again from its last commit, one INSERT per batch up to the stream's end",
		"stage", "load", "first", st.first, "last", st.last, "rows", st.rows, logx.Err(err))
	if !w.abandon(err) {
		return
	}
	if !w.wait(w.e.opts.OutcomeWait) || w.stopping.Load() {
		return
	}
	w.e.restart(w, st.last)
}

// dropStream cuts off a stream still open when the worker ends without
// ending it (its context ended, the partition was lost), and waits for
// the INSERT to end within AbandonTimeout (abandon).
func (w *worker) dropStream() {
	st := w.stream
	if st == nil {
		return
	}
	w.stream = nil
	st.s.Abort()
	w.abandon(context.Canceled)
}

// restart asks the poll loop to start w's partition again from its last
// commit (restartFailed): w is ending, and no stream goes up to through.
func (e *Engine) restart(w *worker, through int64) {
	e.mu.Lock()
	k := tp{w.p.Topic, w.partition}
	e.noStream[k] = max(e.noStream[k], through)
	e.restarts = append(e.restarts, w)
	e.mu.Unlock()
}

// restartFailed replaces the workers that asked for it (restart) by new
// ones on the same partitions, the client set back to each one's last
// commit (or the first offset it was handed). The poll loop calls it
// between a poll and AllowRebalance, where no rebalance runs, as for a
// reload (reconfigure.go); a worker that was stopped or replaced meanwhile
// is left alone.
func (e *Engine) restartFailed(cl *kgo.Client) {
	e.mu.Lock()
	ws := e.restarts
	e.restarts = nil
	e.mu.Unlock()
	seek := map[string]map[int32]kgo.EpochOffset{}
	var fresh []*worker
	for _, w := range ws {
		<-w.done
		k := tp{w.p.Topic, w.partition}
		e.mu.Lock()
		if e.workers[k] != w || w.stopping.Load() {
			e.mu.Unlock()
			continue
		}
		delete(e.workers, k)
		e.mu.Unlock()
		// Records handed over after it ended are in nobody's hands.
		w.release(w.held.Load())
		w.forget()
		w.seekBack(seek)
		fresh = append(fresh, w)
	}
	if len(fresh) == 0 {
		return
	}
	cl.SetOffsets(seek)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, old := range fresh {
		p := e.byTopic[old.p.Topic]
		if p == nil {
			continue
		}
		k := tp{p.Topic, old.partition}
		if _, taken := e.workers[k]; taken {
			continue
		}
		nw := newWorker(e, p, old.partition)
		e.workers[k] = nw
		e.m.Assigned.WithLabelValues(p.Name).Inc()
		go nw.run()
		e.log.Info("partition started again from its last commit after a failed INSERT stream",
			"pipeline", p.Name, "topic", p.Topic, "partition", old.partition, "from", seek[p.Topic][old.partition].Offset)
	}
}
