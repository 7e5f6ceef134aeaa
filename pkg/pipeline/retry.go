package pipeline

import (
	"math/rand/v2"
	"time"
)

// This file is the retry policy of a worker: what it does while something
// it needs (ClickHouse, the dead-letter topic, the schema registry, the
// group coordinator) fails. It never gives up on its own: a partition
// retries until it succeeds or is stopped, shown as failing in /readyz and
// the metrics meanwhile. What to retry is decided by the callers.

// retry runs fn until it succeeds, with capped exponential backoff and
// jitter. False when the worker's context ended first.
func (w *worker) retry(what string, fn func() error) bool {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return true
		}
		if w.ctx.Err() != nil || w.givesUp(err) {
			return false
		}
		w.retried(retryOp(what), err)
		if attempt == 0 { // shown as failing (and not ready) until this returns
			w.st.failing.Add(1)
			w.e.failing.Add(1)
			defer w.st.failing.Add(-1)
			defer w.e.failing.Add(-1)
		}
		w.log.Warn(what+" failed; retrying", "err", err, "attempt", attempt+1)
		if !w.sleep(attempt, 0) {
			return false
		}
	}
}

// acquire takes a live-batch token (Options.Parallel + Options.Combine:
// the batches with decoded rows at once) and a processing slot
// (Options.Parallel: the batches being decoded and transformed); false when
// the worker was stopped first. A columnar batch gives its slot up for the
// INSERT (worker.send) and keeps its token until it is done.
func (w *worker) acquire() bool {
	return w.acquireLive() && w.acquireSlot()
}

func (w *worker) acquireLive() bool {
	if w.hasLive {
		return true
	}
	select {
	case w.e.live <- struct{}{}:
		w.hasLive = true
		return true
	case <-w.ctx.Done():
		return false
	}
}

func (w *worker) acquireSlot() bool {
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

// releaseAll gives the slot and the live-batch token back.
func (w *worker) releaseAll() {
	w.releaseSlot()
	if w.hasLive {
		w.hasLive = false
		<-w.e.live
		if len(w.e.live) == 0 && w.e.spent() {
			// Nothing is in process any more: with the budget spent the
			// open batches must be cut (worker.starved), and the poll
			// loop wakes the workers for it (Engine.backpressure).
			signal(w.e.freed)
		}
	}
}

// sleep waits the backoff of the attempt, and at least floor; false when
// the worker's context ended (a stop during a flush keeps retrying until
// its deadline).
func (w *worker) sleep(attempt int, floor time.Duration) bool {
	return w.wait(max(w.backoff(w.e.opts.BackoffMin, w.e.opts.BackoffMax, attempt), floor))
}

// backoff is the delay before retry attempt (0 for the first): base
// doubled per attempt, capped at limit, with jitter.
func (w *worker) backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base << min(max(attempt, 0), 16)
	if d > limit || d <= 0 {
		d = limit
	}
	return d/2 + rand.N(d/2+1) // jitter: spread retries of many partitions
}

// wait pauses for d; false when the worker's context ended first.
func (w *worker) wait(d time.Duration) bool {
	// A waiting worker lets others use its processing slot and its
	// live-batch token: one failing table must not stall the pipelines
	// whose tables are fine. (Its buffers stay: while tables fail, the
	// batches held may outnumber the tokens.) The records its batch gave
	// back to the in-flight budget (releaseRecords) are counted in it
	// again meanwhile: the memory bound counts released records per slot
	// or token, and a batch without either is counted by the budget, which
	// stops the polls while they are over it.
	slot, live := w.hasSlot, w.hasLive
	w.releaseAll()
	if r := w.released; r > 0 && (slot || live) {
		w.held.Add(r)
		w.e.inflight.Add(r)
		defer func() {
			w.release(r)
		}()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return (!live || w.acquireLive()) && (!slot || w.acquireSlot())
	case <-w.ctx.Done():
		return false
	}
}

// givesUp says whether the worker must stop trying, with the batch not
// committed: fenced while it stops, the partition is being handed over and
// this member may no longer own it; what is left is the next owner's.
func (w *worker) givesUp(err error) bool {
	if classify(err) != classFenced || !w.stopping.Load() {
		return false
	}
	w.log.Warn("fenced while stopping; leaving the batch to the next owner", "err", err)
	return true
}
