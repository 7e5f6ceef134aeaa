package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// This file is the load protocol of one batch: how its rows reach the
// table and its failed records the dead-letter topic exactly once, whatever
// happened to earlier attempts. Each attempt, in this order:
//
//  1. settle: wait until ClickHouse runs no INSERT of the partition (ours
//     from an attempt whose outcome is unknown, a previous owner's, a
//     zombie's). Until then rows may still appear, so nothing read is final.
//  2. fence: commit the batch's first offset, which the coordinator
//     refuses to an expelled member and the engine refuses once the
//     member's identity changed since the assignment was last confirmed.
//  3. read back which of the batch's offsets the table holds, and mark
//     those items stored: they are neither loaded nor dead-lettered again.
//     This is what makes a partly stored batch (a crash between the parts
//     of an INSERT spanning several table partitions) end up exactly once.
//  4. dead-letter the failed items not produced before, then fence again.
//  5. send the rest as one INSERT. On success the caller commits. If the
//     server rejects the rows' content, split the batch (bisect). On any
//     other error the outcome is unknown: cancel and wait for the INSERT to
//     end (abandon), then start again at 1 after a pause that lets bytes
//     still on their way arrive. A refusal for the server's own load
//     (memory, too many parts) is abandoned the same way, then adapted to
//     (adapt.go): smaller pieces, or the same rows after a longer pause.

// errStopped says a step gave up because the worker must stop (its
// context ended, or it was fenced while stopping): the batch is not
// committed.
var errStopped = errors.New("the worker is stopping")

// errFenced says the group does not let this member commit: another
// member may own the partition now.
var errFenced = errors.New("fenced: the group refused this member's commit")

// load stores the pending items of b and dead-letters its failed ones. It
// returns the rows this worker inserted, and false when the worker must
// stop with the batch not committed.
func (w *worker) load(b *record.Batch) (int, bool) {
	// A batch cut before the limits were lowered (adapt.go) goes in
	// pieces that fit them.
	if pieces := w.adapt.cut(b); pieces != nil {
		return w.loadPieces(pieces)
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
		// A batch that cannot join the open INSERT stream waits for it
		// to end (stream.go).
		stream := attempt == 0 && w.streamable(b)
		if !stream && w.stream != nil && !w.endStream() {
			return 0, false
		}
		good, err := w.ready(b)
		if errors.Is(err, errStopped) {
			return 0, false
		}
		if err == nil && good > 0 && stream && w.readSkipped && (w.stream != nil || b.Full) {
			opened, serr := w.appendStream(b, good)
			if opened && serr != nil {
				w.streamFailed(w.stream, serr)
				return 0, false
			}
			if opened {
				w.inserted(b, good)
				return good, true
			}
			w.log.Info("could not open an INSERT stream; sending the batch alone", "first", b.First, "last", b.Last, logx.Err(serr))
		}
		if err == nil && good > 0 && w.stream != nil && !w.endStream() {
			return 0, false
		}
		if err == nil && good > 0 {
			if err = w.send(b); err == nil {
				w.inserted(b, good)
				return good, true
			}
			w.e.m.InsertErrors.WithLabelValues(w.p.Name).Inc()
			if view := sink.View(err); view != "" {
				// The table is the truth (docs/DESIGN.md,
				// "Materialized views"): what the next read finds
				// stored is kept, so the view's table lacks it.
				w.e.m.ViewFailures.WithLabelValues(w.p.Name).Inc()
				w.log.Error("a materialized view failed on the batch; rows the table stored are kept and not sent again, so the view's table lacks them",
					"stage", "load", "view", view, "first", b.First, "last", b.Last, logx.Err(err))
			}
			c := classify(err)
			switch c {
			case classBadRecord, classSplit:
				return w.bisect(b, good, err)
			case classShared:
				// The server refused an INSERT shared with other
				// partitions' batches: from step 1 at once, alone.
				w.log.Info("an INSERT shared with other partitions was refused; sending the batch alone", "first", b.First, "last", b.Last, "err", err)
				continue
			}
			// The outcome is unknown: the server may have stored some
			// or all rows, or may still be storing them. (A refusal for
			// pressure is an answer, so nothing runs any more; some
			// parts may be stored all the same.)
			if !w.abandon(err) {
				return 0, false
			}
			switch c {
			case classMemory:
				if pieces := w.refusedMemory(b, good, err); pieces != nil {
					if !w.pause(c) {
						return 0, false
					}
					return w.loadPieces(pieces)
				}
			case classParts:
				w.refusedParts(b, good, err)
			}
			if c == classMemory || c == classParts {
				// At the floor (memory) or whole (parts): the same
				// rows again, after a pause that grows with the
				// refusals in a row; logged once per episode.
				if !failing {
					failing = true
					w.e.failing.Add(1)
					w.st.failing.Add(1)
				}
				if !w.pause(c) {
					return 0, false
				}
				continue
			}
		}
		if err == nil {
			return good, true
		}
		if w.givesUp(err) {
			return 0, false
		}
		if !failing {
			failing = true
			w.e.failing.Add(1)
			w.st.failing.Add(1)
		}
		w.retried(retryOp("load"), err)
		w.log.Warn("load failed; retrying", "err", err, "attempt", attempt+1, "class", classify(err).String())
		if !w.sleep(attempt, w.e.opts.OutcomeWait) {
			return 0, false
		}
	}
}

// send is step 5: the INSERT, shared with other partitions' ready batches
// of the table when the writer can (combine.go). With sharing on
// (Options.Combine > 1) a columnar batch gives its processing slot up first: what is left of it is I/O, and its rows are
// its column buffers, which the engine's live-batch tokens bound
// (Options.Combine). A row-path batch keeps its slot: its decoded Rows
// are what Options.Parallel bounds.
func (w *worker) send(b *record.Batch) error {
	w.clean.sent(b.Last)
	ss, ok := w.writer.(sharedSender)
	if !ok {
		return w.writer.Send(w.ctx, b)
	}
	if w.sharesInserts() {
		w.releaseSlot()
	}
	return ss.SendShared(w.ctx, b, func() error { return w.fence(b) })
}

// sharesInserts says the worker's batches may share an INSERT with other
// partitions' (columnar, Options.Combine > 1): they give their processing
// slot up for it and are announced to the table's combiner.
func (w *worker) sharesInserts() bool { return w.columnar && w.e.opts.Combine > 1 }

// ready runs steps 1 to 4 of an attempt and prepares the rows to send; it
// returns how many there are.
func (w *worker) ready(b *record.Batch) (int, error) {
	// The assignment as confirmed before the fence: the clean region
	// holds only under the one it was read under.
	under := w.e.member.Load()
	from := pendingFrom(b)
	skip := from >= 0 && w.clean.covers(from, b.TopicID, under)
	if !skip && w.stream != nil && !w.endStream() {
		// The settle would wait for the worker's own open stream.
		return 0, errStopped
	}
	if !skip {
		if err := w.settle(w.ctx, false); err != nil {
			return 0, err
		}
	}
	if err := w.fence(b); err != nil {
		return 0, err
	}
	w.readSkipped = skip
	if from >= 0 {
		outcome := "skipped"
		if !skip {
			outcome = "read"
			if err := w.markStored(b, from, under); err != nil {
				return 0, err
			}
		}
		w.e.m.StoredReads.WithLabelValues(w.p.Name, outcome).Inc()
	}
	good := w.writer.Prepare(b)
	if w.unlettered(b) == 0 {
		return good, nil
	}
	if !w.deadLetter(b) {
		return 0, errStopped
	}
	if good == 0 {
		return 0, nil
	}
	// Producing took a while: prove ownership again right before the
	// INSERT.
	return good, w.fence(b)
}

// settle waits until the table runs no INSERT of the partition; with kill
// it asks ClickHouse to cancel them first. An error means ClickHouse could
// not be asked.
func (w *worker) settle(ctx context.Context, kill bool) error {
	logged := false
	for {
		n, err := w.p.Sink.Running(ctx, w.p.Topic, w.partition, kill)
		if err != nil || n == 0 {
			return err
		}
		if !logged {
			logged = true
			w.log.Warn("an earlier INSERT of the partition is still running; waiting for it to end before reading what is stored", "running", n, "cancel", kill)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// abandon makes sure an INSERT whose outcome is unknown can no longer
// commit before the table is read again: it cancels the partition's running
// inserts and waits until ClickHouse lists none. When the worker is being
// stopped it still does so, within Options.AbandonTimeout, so that the
// partition's next owner does not start while the INSERT runs (the owner
// waits for it too, in settle). False when the worker must stop.
func (w *worker) abandon(cause error) bool {
	if w.ctx.Err() == nil {
		return w.retry("wait for an INSERT of unknown outcome to end", func() error {
			return w.settle(w.ctx, true)
		})
	}
	ctx, cancel := w.e.bounded(w.e.opts.AbandonTimeout)
	defer cancel()
	if err := w.settle(ctx, true); err != nil {
		w.log.Error("stopped during an INSERT and could not confirm it ended; the next owner waits for it",
			"stage", "load", logx.Err(err), "insert_err", cause)
	}
	return false
}

// pendingFrom is the offset of b's first item not known stored, -1 when
// every item is.
func pendingFrom(b *record.Batch) int64 {
	for i := range b.Items {
		if !b.Items[i].Stored {
			return b.Items[i].Offset()
		}
	}
	return -1
}

// cleanRegion is where a worker knows the table holds no row of its
// partition that it did not send itself: every offset from `from` up, for
// the topic incarnation topicID, as long as the group assignment is the
// one confirmed under `under` (Engine.member, a new pointer at every
// assigned callback). A batch whose pending items all lie there needs
// neither settle nor stored read: nobody wrote there. The first read of an
// assignment establishes it (markStored, Sink.Highest), and every INSERT
// moves it above the rows it carried before it is sent (send), so a retry
// or any piece of a batch already sent reads the table again
// (docs/DESIGN.md, invariant 3).
type cleanRegion struct {
	from    int64
	under   *string
	topicID string
}

// known says the region was read under the assignment under for topicID.
func (c *cleanRegion) known(topicID string, under *string) bool {
	return c.under != nil && c.under == under && c.topicID == topicID
}

// covers says offsets from `from` up lie in the region.
func (c *cleanRegion) covers(from int64, topicID string, under *string) bool {
	return c.known(topicID, under) && from >= c.from
}

// sent moves the region above last: an INSERT carrying rows up to it is
// about to be sent, and may store any of them whatever it returns.
func (c *cleanRegion) sent(last int64) {
	if c.under != nil {
		c.from = max(c.from, last+1)
	}
}

// markStored reads which offsets of b from `from` up the table holds and
// marks those items stored. The first read under an assignment (under)
// also asks for the highest offset stored above the batch: above that and
// the batch, nobody but this worker writes while the assignment holds
// (cleanRegion). A table holding another incarnation's rows there gets a
// read for every batch, as before.
func (w *worker) markStored(b *record.Batch, from int64, under *string) error {
	offs, foreign, err := w.p.Sink.Stored(w.ctx, w.p.Topic, w.partition, b.TopicID, from, b.Last)
	if err != nil {
		return err
	}
	if !w.clean.known(b.TopicID, under) && under != nil {
		highest, above, err := w.p.Sink.Highest(w.ctx, w.p.Topic, w.partition, b.TopicID, b.Last)
		if err != nil {
			return err
		}
		if foreign == 0 && above == 0 {
			w.clean = cleanRegion{from: max(b.Last, highest) + 1, under: under, topicID: b.TopicID}
		}
	}
	if foreign > 0 && !w.otherIncarnation {
		w.otherIncarnation = true
		w.log.Warn("the table holds rows of an earlier incarnation of the topic at these offsets (it was deleted and created again): loading this incarnation's records beside them",
			"topic_id", b.TopicID, "rows_of_other_incarnations", foreign, "first", b.First, "last", b.Last)
	}
	if len(offs) == 0 {
		return nil
	}
	n, j := 0, 0
	for i := range b.Items {
		it := &b.Items[i]
		for j < len(offs) && offs[j] < it.Offset() {
			j++
		}
		if j < len(offs) && offs[j] == it.Offset() && !it.Stored {
			it.MarkStored()
			n++
		}
	}
	if n > 0 {
		w.e.m.Skipped.WithLabelValues(w.p.Name).Add(float64(n))
		w.log.Info("records already stored; not loading them again", "count", n, "first", b.First, "last", b.Last)
	}
	return nil
}

// unlettered counts the failed items of b without a dead letter yet.
func (w *worker) unlettered(b *record.Batch) int {
	n := 0
	for i := range b.Items {
		if b.Items[i].Failed != nil && !w.lettered(b.Items[i].Offset()) {
			n++
		}
	}
	return n
}

// bisect handles a batch the server refused as a whole with err: BadData
// (some row's content is rejected) or Split (the batch touches more table
// partitions than one INSERT may write; no row is to blame). It splits the
// batch in two and loads each half, left to right, through the whole
// protocol, so rows an earlier attempt stored (a part committed before the
// refusal, or the table's parts before a view failed) are neither sent nor
// dead-lettered again. A single row the server still refuses is
// dead-lettered with its message; the attempt that produces the letter
// reads the table first, so a row that is stored gets none (invariant 8).
func (w *worker) bisect(b *record.Batch, good int, err error) (int, bool) {
	split := classify(err) == classSplit
	if good == 1 {
		reason := "clickhouse rejected the row: "
		if split {
			reason = "clickhouse refused an INSERT of this row alone: "
		}
		for i := range b.Items {
			if b.Items[i].Pending() {
				b.Items[i].Fail(record.StageLoad, reason+err.Error())
			}
		}
		return w.load(b)
	}
	mid := b.SplitGood()
	if split {
		w.log.Info("the batch touches more table partitions than one INSERT may; loading it in halves", "first", b.First, "last", b.Last, "rows", good, "err", err)
	} else {
		w.log.Info("clickhouse rejected a batch's content; splitting it", "first", b.First, "last", b.Last, "rows", good, "err", err)
	}
	left, ok := w.load(b.Slice(0, mid))
	if !ok {
		return 0, false
	}
	right, ok := w.load(b.Slice(mid, len(b.Items)))
	return left + right, ok
}

// deadLetter produces the failed items of b that have no letter yet and
// waits for their acknowledgement, retrying; false when the worker must
// stop first. Like an insert, it happens only after a successful fence.
// A letter the topic acknowledged is in dlqSeen at once, even when others
// of the same attempt failed: the retry produces only those.
func (w *worker) deadLetter(b *record.Batch) bool {
	return w.retry("dead-letter produce", func() error {
		if err := w.restoreOriginals(b); err != nil {
			return err
		}
		if err := w.fence(b); err != nil {
			return err
		}
		return w.e.opts.DeadLetters.Send(w.ctx, b, w.dlqNext, w.lettered, func(it *record.Item, at int64, truncated bool) {
			w.dlqSeen[it.Offset()] = at
			w.dlqNext = max(w.dlqNext, at+1)
			w.e.m.DeadLetters.WithLabelValues(w.p.Name, string(it.Failed.Stage)).Inc()
			w.st.deadLetters.Add(1)
			if truncated {
				w.e.m.TruncatedLetters.WithLabelValues(w.p.Name).Inc()
				w.log.Warn("dead letter too large for the dead-letter topic; its value was cut (headers keep its size and SHA-256)",
					"offset", it.Offset(), "value_bytes", len(it.Rec.Value))
			}
		})
	})
}

// restoreOriginals reads again, from Kafka, the records of the failed
// items of b that were released (releaseRecords) and have no letter yet.
// A record the partition no longer holds (retention, compaction, the topic
// created again since) gets a letter with the source coordinates and the
// reason but no key or value, said in the reason and logged.
func (w *worker) restoreOriginals(b *record.Batch) error {
	var items []*record.Item
	var offs []int64
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed != nil && it.Released() && !w.lettered(it.Offset()) {
			items, offs = append(items, it), append(offs, it.Offset())
		}
	}
	if len(offs) == 0 {
		return nil
	}
	o := w.e.originals()
	if o == nil {
		return fmt.Errorf("%d released records to read again, and no reader for them", len(offs))
	}
	found, err := o.Originals(w.ctx, b.Topic, b.Partition, b.TopicID, offs)
	if err != nil {
		return err
	}
	gone := 0
	for _, it := range items {
		r, ok := found[it.Offset()]
		if !ok {
			gone++
			r = &kgo.Record{Topic: b.Topic, Partition: b.Partition, Offset: it.Offset()}
			it.Failed.Reason += " (the record was gone from Kafka when this letter was made: it has no key or value)"
		}
		it.Restore(r)
	}
	w.log.Info("read records again from Kafka for their dead letters", "count", len(offs), "gone", gone)
	if gone > 0 {
		w.log.Error("records whose rows failed at the load were gone from Kafka when their dead letters were made; the letters carry no key or value",
			"stage", "load", "count", gone, "first", b.First, "last", b.Last, logx.Type(logx.TypeDataLoss))
	}
	return nil
}

// lettered says whether the record at offset already has a dead letter.
func (w *worker) lettered(offset int64) bool {
	_, ok := w.dlqSeen[offset]
	return ok
}

// dlqAt is the dead-letter position to store with a commit of next: that
// of the first letter a later owner must still see (one for an offset at
// or past next, produced for a batch not committed yet, by this worker or
// the one before), else the position after the partition's last letter.
func (w *worker) dlqAt(next int64) int64 {
	at := w.dlqNext
	for off, pos := range w.dlqSeen {
		if off >= next {
			at = min(at, pos)
		}
	}
	return at
}

// fence commits b.First, which is no later than what this worker already
// committed plus what it has since dead-lettered, to prove the member still
// owns the partition.
func (w *worker) fence(b *record.Batch) error {
	at := b.First
	if w.stream != nil {
		// The stream's batches are not stored yet (stream.go).
		at = min(at, w.stream.first)
	}
	err := w.e.commit(w.p.Topic, w.partition, b.Epoch, at, w.dlqAt(at))
	if err == nil {
		w.committed.Store(max(w.committed.Load(), at))
		return nil
	}
	for _, f := range []error{errIdentityChanged, kerr.IllegalGeneration, kerr.UnknownMemberID, kerr.FencedInstanceID, kerr.StaleMemberEpoch} {
		if errors.Is(err, f) {
			return fmt.Errorf("%w: %w", errFenced, err)
		}
	}
	return err
}
