package refdata

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/logx"
)

// This file is how far the follower can be trusted. Follow retries every
// failure (never gives up, never exits the process) and lists the topics'
// high watermarks every second. Comparing what it has applied with the
// latest listing says, per topic, since when the Store is known to hold
// every record: that is what a lookup that missed waits for
// (Store.AwaitCurrent), what /readyz reports (Loader.Health) and what the
// metrics show.

// DefaultMaxStaleness applies when LoaderConfig.MaxStaleness is zero; it is
// the config default of reference.max_staleness. Thirty seconds rides out
// a leader election on a reference topic without flapping /readyz, yet
// reports a follower that is stuck well before anyone notices wrong rows.
const DefaultMaxStaleness = 30 * time.Second

// DefaultMissWait applies when LoaderConfig.MissWait is zero: long enough
// for a listing round trip to a busy broker, short enough that a worker
// whose follower fails logs its retries every few seconds.
const DefaultMissWait = 5 * time.Second

// ErrNotCurrent: the Store could not be confirmed to hold every reference
// record produced before now (Follow is failing or behind). A transform
// whose lookup missed returns it, wrapped, instead of failing the row: the
// batch is retried, so a record whose customer or rate is on its way is
// not dead-lettered.
var ErrNotCurrent = logx.WithType(errors.New("reference data not current"), logx.TypeStaleReference)

// Table names one of the two reference tables.
type Table int

const (
	Customers Table = iota
	FxRates
	numTables
)

// Defaults of the follower's timing (tuning); tests shorten them.
const (
	// refreshEvery: how often the high watermarks are listed, and so how
	// stale "current" is at most while all is well.
	defaultRefreshEvery = time.Second
	// listTimeout bounds one listing; an unreachable broker is a failure
	// after it, not a hang.
	defaultListTimeout = 5 * time.Second
	// Failed fetches and listings are retried after 200ms, doubling up to
	// 10s, half of it random so that many processes spread out: at most
	// one WARN per 5-10s per failing operation once it lasts.
	defaultBackoffMin = 200 * time.Millisecond
	defaultBackoffMax = 10 * time.Second
)

type tuning struct {
	refreshEvery, listTimeout time.Duration
	backoffMin, backoffMax    time.Duration
}

var defaultTuning = tuning{
	refreshEvery: defaultRefreshEvery, listTimeout: defaultListTimeout,
	backoffMin: defaultBackoffMin, backoffMax: defaultBackoffMax,
}

// backoff is the wait after the attempt-th consecutive failure (from 1).
func (t tuning) backoff(attempt int) time.Duration {
	d := t.backoffMax
	if attempt < 32 {
		if e := t.backoffMin << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// The operations that fail, the op attribute of the WARN.
const (
	opFetch = "fetch"
	opList  = "list_offsets"
)

// errorType is the bounded error_type of a failure, logx's fixed set
// shared by every log and metric of Sluice (a refused ACL is auth, any
// other Kafka error code kafka, a missing topic config, ...).
func errorType(err error) string { return logx.ErrorType(err) }

// partNext is where a poll left one partition: the offset after its last
// record; data says whether a non-control record was among them.
type partNext struct {
	tp   topicPartition
	next int64
	data bool
}

// tracker is the follower's state as the other goroutines see it: the
// poll goroutine advances positions, the listing goroutine sets the high
// watermarks, transforms wait on it, /readyz and the metrics read it.
// Safe for concurrent use.
type tracker struct {
	topics   [numTables]string
	missWait time.Duration // await's bound
	poke     chan struct{} // asks the listing goroutine for a listing now

	mu       sync.Mutex
	pos      map[topicPartition]int64 // offset after the last record applied
	ends     map[topicPartition]int64 // last stable offsets of the last listing
	listedAt time.Time                // when that listing was sent
	// current is, per table, when the latest listing was sent that the
	// Store has since been read up to: every record produced before it
	// is applied.
	current    [numTables]time.Time
	lastRecord [numTables]time.Time
	changed    chan struct{} // closed (and replaced) when current or following change
	following  bool
	// The failure in progress per operation (nil once it succeeded again),
	// and since when one of them has been failing without a break.
	fetchErr, listErr   error
	fetchType, listType string // their error_type
	failingSince        time.Time
}

func newTracker(customersTopic, fxRatesTopic string, missWait time.Duration) *tracker {
	return &tracker{
		topics:   [numTables]string{customersTopic, fxRatesTopic},
		missWait: missWait,
		poke:     make(chan struct{}, 1),
		pos:      map[topicPartition]int64{},
		ends:     map[topicPartition]int64{},
		changed:  make(chan struct{}),
	}
}

func (tr *tracker) table(topic string) (Table, bool) {
	for t, n := range tr.topics {
		if n == topic {
			return Table(t), true
		}
	}
	return 0, false
}

// broadcast wakes every waiter; tr.mu is held.
func (tr *tracker) broadcast() {
	close(tr.changed)
	tr.changed = make(chan struct{})
}

// track starts tracking partitions at offset start (where the client
// begins reading them) unless they are tracked already.
func (tr *tracker) track(starts map[topicPartition]int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for tp, s := range starts {
		if _, ok := tr.pos[tp]; !ok {
			tr.pos[tp] = s
		}
	}
}

// untracked says whether a listing names a partition not tracked yet (one
// added to a topic after Bootstrap).
func (tr *tracker) untracked(ends map[topicPartition]int64) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for tp := range ends {
		if _, ok := tr.pos[tp]; !ok {
			return true
		}
	}
	return false
}

// advance records what one poll applied.
func (tr *tracker) advance(ps []partNext, now time.Time) {
	if len(ps) == 0 {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, p := range ps {
		if p.next > tr.pos[p.tp] {
			tr.pos[p.tp] = p.next
		}
		if t, ok := tr.table(p.tp.topic); ok && p.data {
			tr.lastRecord[t] = now
		}
	}
	tr.check()
}

// listed records a listing of the high watermarks sent at at.
func (tr *tracker) listed(at time.Time, ends map[topicPartition]int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if at.Before(tr.listedAt) {
		return // an older listing that took longer
	}
	tr.ends, tr.listedAt = ends, at
	tr.check()
}

// check moves current up to the last listing for each table read up to
// it; tr.mu is held.
func (tr *tracker) check() {
	moved := false
	for t := range numTables {
		if !tr.current[t].Before(tr.listedAt) || tr.lag(Table(t)) > 0 {
			continue
		}
		tr.current[t] = tr.listedAt
		moved = true
	}
	if moved {
		tr.broadcast()
	}
}

// lag is how many offsets of table t the Store is behind the last listing
// (0 for a table whose partitions were not listed yet); tr.mu is held.
func (tr *tracker) lag(t Table) int64 {
	var n int64
	for tp, end := range tr.ends {
		if tp.topic != tr.topics[t] {
			continue
		}
		pos, ok := tr.pos[tp]
		if !ok {
			pos = 0
		}
		if end > pos {
			n += end - pos
		}
	}
	return n
}

// failed records a failure of op; it returns its error_type.
func (tr *tracker) failed(op string, err error, now time.Time) string {
	et := errorType(err)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if op == opFetch {
		tr.fetchErr, tr.fetchType = err, et
	} else {
		tr.listErr, tr.listType = err, et
	}
	if tr.failingSince.IsZero() {
		tr.failingSince = now
	}
	return et
}

// succeeded records a success of op; recovered is true when that ended
// a failure of the follower (neither operation fails any more).
func (tr *tracker) succeeded(op string) (recovered bool, failedFor time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if op == opFetch {
		tr.fetchErr = nil
	} else {
		tr.listErr = nil
	}
	if tr.failingSince.IsZero() || tr.fetchErr != nil || tr.listErr != nil {
		return false, 0
	}
	failedFor = time.Since(tr.failingSince)
	tr.failingSince = time.Time{}
	return true, failedFor
}

func (tr *tracker) setFollowing(on bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.following = on
	if !on {
		tr.fetchErr, tr.listErr, tr.failingSince = nil, nil, time.Time{}
	}
	tr.broadcast()
}

// healthy is the sluice_refdata_following gauge: Follow runs and neither
// its fetches nor its listings are failing.
func (tr *tracker) healthy() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.following && tr.failingSince.IsZero()
}

// failure describes the failure in progress (the fetch's first) as
// "<error_type>: <err>"; tr.mu is held.
func (tr *tracker) failure() string {
	if tr.fetchErr != nil {
		return tr.fetchType + ": " + tr.fetchErr.Error()
	}
	if tr.listErr != nil {
		return tr.listType + ": " + tr.listErr.Error()
	}
	return "none"
}

// health is nil while the follower is trusted: it runs, has not been
// failing for longer than max, and has read each topic up to a listing
// sent within max. Otherwise it says why not.
func (tr *tracker) health(max time.Duration, now time.Time) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.following {
		return errors.New("reference data: not following the reference topics")
	}
	if !tr.failingSince.IsZero() && now.Sub(tr.failingSince) > max {
		return fmt.Errorf("reference data: following has failed for %v (%s)",
			now.Sub(tr.failingSince).Round(100*time.Millisecond), tr.failure())
	}
	for t := range numTables {
		if d := now.Sub(tr.current[t]); d > max {
			err := fmt.Errorf("reference data: %s not read up to its high watermark for %v (%d records behind at the last listing)",
				tr.topics[t], d.Round(100*time.Millisecond), tr.lag(Table(t)))
			if !tr.failingSince.IsZero() {
				err = fmt.Errorf("%w; following fails since %v (%s)", err, now.Sub(tr.failingSince).Round(100*time.Millisecond), tr.failure())
			}
			return err
		}
	}
	return nil
}

// await returns nil once table t is read up to a listing sent at or after
// since, asking for such a listing; after missWait it returns
// ErrNotCurrent saying why, or ctx's error.
func (tr *tracker) await(ctx context.Context, t Table, since time.Time) error {
	wait := tr.missWait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		tr.mu.Lock()
		ok, ch := !tr.current[t].Before(since), tr.changed
		tr.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case tr.poke <- struct{}{}:
		default: // a listing is asked for already
		}
		select {
		case <-ch:
		case <-timer.C:
			return tr.notCurrent(t, wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notCurrent is await's error after wait.
func (tr *tracker) notCurrent(t Table, wait time.Duration) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	topic := tr.topics[t]
	switch {
	case !tr.following:
		return fmt.Errorf("%w: %s is not followed", ErrNotCurrent, topic)
	case !tr.failingSince.IsZero():
		return fmt.Errorf("%w: following %s has failed for %v (%s)", ErrNotCurrent, topic,
			time.Since(tr.failingSince).Round(100*time.Millisecond), tr.failure())
	case tr.lag(t) > 0:
		return fmt.Errorf("%w: %s is %d records behind its high watermark", ErrNotCurrent, topic, tr.lag(t))
	}
	return fmt.Errorf("%w: %s not confirmed read up to its high watermark within %v", ErrNotCurrent, topic, wait)
}

// The metrics' readings (metrics.go).

func (tr *tracker) lagOf(t Table) float64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return float64(tr.lag(t))
}

func (tr *tracker) stalenessOf(t Table) float64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.current[t].IsZero() {
		return 0 // not bootstrapped yet
	}
	return time.Since(tr.current[t]).Seconds()
}

func (tr *tracker) lastRecordAge(t Table) float64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.lastRecord[t].IsZero() {
		return 0
	}
	return time.Since(tr.lastRecord[t]).Seconds()
}

// refresh lists the high watermarks every refreshEvery, at once when a
// waiter asks (unless listings are failing, when it backs off), until ctx
// ends or the client is closed. It runs beside Follow's poll loop.
func (l *Loader) refresh(ctx context.Context) {
	attempt := 0
	for {
		at := time.Now()
		lctx, cancel := context.WithTimeout(ctx, l.tune.listTimeout)
		err := l.listEnds(lctx, at)
		cancel()
		if ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
			return
		}
		wait, poke := l.tune.refreshEvery, l.tr.poke
		if err != nil {
			attempt++
			wait, poke = l.failed(opList, err, attempt), nil // a waiter does not shorten the backoff
		} else {
			attempt = 0
			l.succeeded(opList)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-poke:
			t.Stop()
		}
	}
}

// listEnds lists the last stable offsets of both topics (sent at at) into
// the tracker, tracking partitions added since Bootstrap from their start.
func (l *Loader) listEnds(ctx context.Context, at time.Time) error {
	topics := []string{l.cfg.CustomersTopic, l.cfg.FxRatesTopic}
	listed, err := l.adm.ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = listedErr(topics, listed)
	}
	if err != nil {
		return err
	}
	ends := offsetsOf(listed)
	if l.tr.untracked(ends) {
		starts, err := l.adm.ListStartOffsets(ctx, topics...)
		if err == nil {
			err = listedErr(topics, starts)
		}
		if err != nil {
			return err
		}
		l.tr.track(offsetsOf(starts))
	}
	l.tr.listed(at, ends)
	return nil
}

// failed counts and logs a failure of op and returns the backoff before
// the next attempt.
func (l *Loader) failed(op string, err error, attempt int) time.Duration {
	et := l.tr.failed(op, err, time.Now())
	l.m.errors.WithLabelValues(et).Inc()
	d := l.tune.backoff(attempt)
	l.log.Warn("following the reference topics failed; retrying",
		"op", op, "error_type", et, "attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
	return d
}

func (l *Loader) succeeded(op string) {
	if recovered, d := l.tr.succeeded(op); recovered {
		l.log.Info("following the reference topics again", "failed_for", d.Round(time.Millisecond))
	}
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// offsetsOf indexes a listing by partition.
func offsetsOf(listed kadm.ListedOffsets) map[topicPartition]int64 {
	out := map[topicPartition]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[topicPartition{o.Topic, o.Partition}] = o.Offset })
	return out
}
