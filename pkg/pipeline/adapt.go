package pipeline

import (
	"time"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
)

// This file is how a partition worker adapts its batches to a ClickHouse
// server under pressure (docs/DESIGN.md, "Adaptive batches"). Two refusals
// of an INSERT say the server, not the rows, is the problem, and they ask
// for opposite things:
//
//   - 241 MEMORY_LIMIT_EXCEEDED: the INSERT needs more memory than the
//     server grants it. A smaller one needs less: the refused batch is
//     loaded in pieces, and the partition's next batches are cut smaller,
//     never below a floor. Some parts of the refused INSERT may be stored
//     (ClickHouse writes one part per table partition, one after the
//     other), so every piece goes through the whole load protocol and
//     sends only what the table does not hold.
//   - 252 TOO_MANY_PARTS: the table has more active parts than merges keep
//     up with. Smaller INSERTs would make more parts: the same rows are
//     sent whole again after a growing pause, and the next batches are cut
//     later (a longer max_wait), so a partition that loads by time makes
//     fewer, larger INSERTs.
//
// Consecutive successful INSERTs step the limits back toward the
// configured ones. Nothing here blames a row: a piece at the floor that is
// still refused is retried with backoff, never dead-lettered.

const (
	// maxShrink: the effective max_rows and max_bytes are the configured
	// ones halved at most this many times (a sixteenth: the floor). A
	// server that cannot take a sixteenth of the configured batch is
	// short of memory for reasons other than this batch (other queries, a
	// server-wide limit), and smaller INSERTs would only make more parts.
	maxShrink = 4
	// maxStretch: the effective max_wait is the configured one doubled at
	// most this many times (eight times as long).
	maxStretch = 3
	// growAfter is how many consecutive successful INSERTs step the limits
	// back up once (rows and bytes doubled, max_wait halved). A step up
	// that is refused at once doubles the successes the next one needs,
	// up to maxGrowAfter: a server that stays short of memory sees at
	// most one refused INSERT per growAfter+1, then per 9, 17, ... 65. A
	// step up that holds halves it again.
	growAfter    = 4
	maxGrowAfter = 64
)

// adaptive is one worker's effective batch limits: the configured ones
// with max_rows and max_bytes halved shrink times and max_wait doubled
// stretch times. Only the worker's goroutine uses it.
type adaptive struct {
	cfg             batch.Limits // as configured
	cur             batch.Limits // what batches are cut at now
	shrink, stretch int
	// ok counts the successful INSERTs since the limits last changed or
	// an INSERT was refused; need is how many step the limits up.
	ok, need int
	// grown says cur is a step up from before that no INSERT larger
	// than before has passed yet.
	grown  bool
	before batch.Limits
}

func newAdaptive(cfg batch.Limits) *adaptive {
	return &adaptive{cfg: cfg, cur: cfg, need: growAfter}
}

func (a *adaptive) set() bool {
	old := a.cur
	a.cur = batch.Limits{
		MaxRows:  max(1, a.cfg.MaxRows>>a.shrink),
		MaxBytes: max(1, a.cfg.MaxBytes>>a.shrink),
		MaxWait:  a.cfg.MaxWait << a.stretch,
	}
	return a.cur != old
}

// floor is the lowest max_rows and max_bytes.
func (a *adaptive) floor() batch.Limits {
	return batch.Limits{MaxRows: max(1, a.cfg.MaxRows>>maxShrink), MaxBytes: max(1, a.cfg.MaxBytes>>maxShrink), MaxWait: a.cfg.MaxWait}
}

// memory takes an INSERT of rows rows and bytes bytes refused for memory:
// max_rows and max_bytes are halved together until one of them is at
// most half of what was refused (so that the refused rows go in two
// pieces or more), or they are at the floor. It reports whether the
// limits changed.
func (a *adaptive) memory(rows, bytes int) bool {
	a.refused()
	k := min(a.shrink+1, maxShrink)
	for k < maxShrink && a.cfg.MaxRows>>k > rows/2 && a.cfg.MaxBytes>>k > bytes/2 {
		k++
	}
	a.shrink = max(a.shrink, k)
	return a.set()
}

// parts takes an INSERT refused for too many parts: max_wait doubles (up
// to the stretch limit); max_rows and max_bytes stay. It reports whether
// the limits changed.
func (a *adaptive) parts() bool {
	a.refused()
	a.stretch = min(a.stretch+1, maxStretch)
	return a.set()
}

func (a *adaptive) refused() {
	a.ok = 0
	if a.grown { // the step up was too far: wait longer before the next
		a.need = min(a.need*2, maxGrowAfter)
		a.grown = false
	}
}

// success takes an INSERT of rows rows and bytes bytes that passed. After
// need of them in a row the limits step back toward the configured ones.
// It reports whether the limits changed.
func (a *adaptive) success(rows, bytes int) bool {
	if a.grown && (rows > a.before.MaxRows || bytes > a.before.MaxBytes ||
		a.before.MaxRows == a.cur.MaxRows && a.before.MaxBytes == a.cur.MaxBytes) {
		// The step up held (an INSERT larger than the limits before
		// it passed, or only max_wait changed): the next may come
		// sooner.
		a.need = max(a.need/2, growAfter)
		a.grown = false
	}
	if !a.reduced() {
		a.ok, a.need = 0, growAfter
		return false
	}
	if a.ok++; a.ok < a.need {
		return false
	}
	a.ok = 0
	a.shrink, a.stretch = max(a.shrink-1, 0), max(a.stretch-1, 0)
	a.grown, a.before = true, a.cur
	return a.set()
}

// reduced says the effective limits differ from the configured ones.
func (a *adaptive) reduced() bool { return a.shrink > 0 || a.stretch > 0 }

// pending counts the items of b still to load and their key+value bytes.
func pending(b *record.Batch) (rows, bytes int) {
	for i := range b.Items {
		if b.Items[i].Pending() {
			rows++
			bytes += b.Items[i].Size()
		}
	}
	return rows, bytes
}

// cut splits b into consecutive slices (in offset order, sharing its
// items) of at most max_rows pending items and max_bytes of their bytes,
// or returns nil when b cannot be cut: it fits whole, or holds one item
// to load. A slice holds at least one pending item, so a record larger
// than max_bytes goes alone; items that are not pending go with the slice
// they fall in (a failed one is dead-lettered by that slice's attempt).
func (a *adaptive) cut(b *record.Batch) []*record.Batch {
	if rows, bytes := pending(b); rows <= a.cur.MaxRows && bytes <= a.cur.MaxBytes {
		return nil
	}
	var out []*record.Batch
	lo, rows, bytes := 0, 0, 0
	for i := range b.Items {
		it := &b.Items[i]
		if !it.Pending() {
			continue
		}
		sz := it.Size()
		if rows > 0 && (rows+1 > a.cur.MaxRows || bytes+sz > a.cur.MaxBytes) {
			out = append(out, b.Slice(lo, i))
			lo, rows, bytes = i, 0, 0
		}
		rows++
		bytes += sz
	}
	if len(out) == 0 { // one pending item, larger than max_bytes
		return nil
	}
	return append(out, b.Slice(lo, len(b.Items)))
}

// loadPieces loads the pieces of a batch in order, each through the whole
// protocol (load); false when the worker must stop.
func (w *worker) loadPieces(pieces []*record.Batch) (int, bool) {
	n := 0
	for _, p := range pieces {
		k, ok := w.load(p)
		if !ok {
			return 0, false
		}
		n += k
	}
	return n, true
}

// refusedMemory handles an INSERT of b (rows prepared) that the server
// refused with 241: it lowers the limits and returns the pieces to load b
// in, or nil when b is at the floor and must be retried whole.
func (w *worker) refusedMemory(b *record.Batch, rows int, err error) []*record.Batch {
	_, bytes := pending(b)
	w.e.m.Pressure.WithLabelValues(w.p.Name, "241").Inc()
	w.streak++
	if w.adapt.memory(rows, bytes) {
		w.applyLimits()
	}
	pieces := w.adapt.cut(b)
	floor := pieces == nil // b fits the floor: there is nothing smaller
	cur := w.adapt.cur
	switch {
	case !w.memEpisode:
		w.memEpisode = true
		w.log.Warn("clickhouse is short of memory for the partition's INSERTs (241): loading in smaller pieces and cutting smaller batches until inserts pass again; no row is to blame",
			"code", 241, "first", b.First, "last", b.Last, "rows", rows, "bytes", bytes,
			"max_rows", cur.MaxRows, "max_bytes", cur.MaxBytes, "at_floor", floor, "err", err)
	default:
		w.log.Debug("clickhouse is short of memory for the INSERT (241)",
			"code", 241, "first", b.First, "last", b.Last, "rows", rows, "bytes", bytes,
			"max_rows", cur.MaxRows, "max_bytes", cur.MaxBytes, "at_floor", floor, "err", err)
	}
	if floor {
		if !w.floorLogged {
			w.floorLogged = true
			w.log.Info("the INSERT is refused for memory at the smallest batch size; retrying it with backoff, it is not dead-lettered",
				"first", b.First, "last", b.Last, "rows", rows, "floor_rows", cur.MaxRows, "floor_bytes", cur.MaxBytes)
		}
	}
	return pieces
}

// refusedParts handles an INSERT of b that the server refused with 252
// "Too many parts": max_wait is stretched; the caller retries b whole
// after pause.
func (w *worker) refusedParts(b *record.Batch, rows int, err error) {
	w.e.m.Pressure.WithLabelValues(w.p.Name, "252").Inc()
	w.streak++
	if w.adapt.parts() {
		w.applyLimits()
	}
	args := []any{"code", 252, "first", b.First, "last", b.Last, "rows", rows,
		"max_wait", w.adapt.cur.MaxWait, "retry_in_at_least", w.e.opts.PartsBackoff, "err", err}
	if !w.partsEpisode {
		w.partsEpisode = true
		w.log.Warn("the table has too many active parts (252): backing off so merges catch up, then sending the batch whole again; cutting later batches later, not smaller", args...)
		return
	}
	w.log.Debug("the table has too many active parts (252)", args...)
}

// inserted takes an INSERT of b (rows prepared) that passed: the limits
// may step back up, and an episode of pressure ends (one INFO) once they
// are the configured ones again.
func (w *worker) inserted(b *record.Batch, rows int) {
	w.streak = 0
	_, bytes := pending(b)
	if w.adapt.success(rows, bytes) {
		w.applyLimits()
	}
	if !w.adapt.reduced() && (w.memEpisode || w.partsEpisode) {
		w.memEpisode, w.partsEpisode, w.floorLogged = false, false, false
		w.log.Info("batch limits back at the configured ones", "max_rows", w.adapt.cfg.MaxRows,
			"max_bytes", w.adapt.cfg.MaxBytes, "max_wait", w.adapt.cfg.MaxWait)
	}
}

// pause waits before the next INSERT after a refusal for pressure: the
// worker's backoff for memory, and for too many parts a longer one that
// starts at Options.PartsBackoff, so merges have time to catch up. Both
// grow with the refusals in a row (streak) and are capped at BackoffMax
// (or PartsBackoff, when that is longer). False when the worker must stop.
func (w *worker) pause(c errClass) bool {
	if c == classParts {
		base := w.e.opts.PartsBackoff
		return w.wait(max(w.backoff(base, max(base, w.e.opts.BackoffMax), w.streak-1), base))
	}
	return w.wait(w.backoff(w.e.opts.BackoffMin, w.e.opts.BackoffMax, w.streak-1))
}

// applyLimits makes the batcher cut at the effective limits and publishes
// them.
func (w *worker) applyLimits() {
	w.batcher.SetLimits(w.adapt.cur)
	w.e.publishLimits(w.p, w.partition, w.adapt.cur, w.adapt.reduced())
}

// publishLimits records a partition's effective limits (reduced: they
// differ from the configured ones) and sets the pipeline's gauges: the
// smallest max_rows and max_bytes, the longest max_wait among its
// partitions in this process, the configured ones when none is reduced.
func (e *Engine) publishLimits(p *Pipeline, partition int32, l batch.Limits, reduced bool) {
	e.limitsMu.Lock()
	defer e.limitsMu.Unlock()
	parts := e.limits[p]
	if reduced {
		if parts == nil {
			parts = map[int32]batch.Limits{}
			e.limits[p] = parts
		}
		parts[partition] = l
	} else {
		delete(parts, partition)
	}
	agg := p.Limits
	for _, l := range parts {
		agg.MaxRows = min(agg.MaxRows, l.MaxRows)
		agg.MaxBytes = min(agg.MaxBytes, l.MaxBytes)
		agg.MaxWait = max(agg.MaxWait, l.MaxWait)
	}
	e.m.EffectiveMaxRows.WithLabelValues(p.Name).Set(float64(agg.MaxRows))
	e.m.EffectiveMaxBytes.WithLabelValues(p.Name).Set(float64(agg.MaxBytes))
	e.m.EffectiveMaxWait.WithLabelValues(p.Name).Set(agg.MaxWait.Seconds())
}

// defaultPartsBackoff is the first pause after a 252 TOO_MANY_PARTS: about
// what one merge of small parts takes, so the retry has a chance.
const defaultPartsBackoff = time.Second
