package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// Options configure an Engine.
type Options struct {
	Pipelines   []*Pipeline
	DeadLetters DeadLetters
	// Group is the consumer group (for reading commit metadata back).
	Group string
	// Metadata encodes the dead-letter position stored with each commit.
	Metadata DeadLetterMetadata
	// RecordSkip adds to a commit's metadata the source offsets [from,
	// to) a partition gave up (OutOfRangeResume), and ReadSkip reads them
	// back, so that every later commit carries the record on and `sluice
	// audit` reports it as an accepted gap. Nil: no record.
	RecordSkip func(md string, from, to int64) string
	ReadSkip   func(md string) (from, to int64, ok bool)
	// InflightBytes bounds the bytes handed to workers and not committed.
	InflightBytes int64
	// ShutdownTimeout bounds the final flush and commit.
	ShutdownTimeout time.Duration
	// RevokeTimeout bounds the flush of revoked partitions, and
	// AbandonTimeout the wait that follows for an INSERT cut short by it
	// to end (defaults 30s and 10s). Their sum must stay below the
	// group's rebalance timeout: a member whose revoke outlasts it is
	// expelled and rejoins under a new identity.
	RevokeTimeout, AbandonTimeout time.Duration
	// OutcomeWait is the least pause after an INSERT whose outcome is
	// unknown before the table is read again (default 1s): time for bytes
	// of the abandoned INSERT still on their way to reach the server,
	// where the wait for running inserts sees them (docs/DESIGN.md).
	OutcomeWait time.Duration
	Log         *slog.Logger
	Metrics     *Metrics
	// Backoff bounds the retry delays of a failing load (defaults 100ms..10s).
	BackoffMin, BackoffMax time.Duration
	// PartsBackoff is the first pause after an INSERT refused for too
	// many parts (252), doubling per refusal in a row up to BackoffMax
	// (default 1s): merges need seconds, not the 100 ms of a network
	// retry.
	PartsBackoff time.Duration
	// OnOutOfRange says what a partition does when its committed offset
	// is no longer in the Kafka log (retention removed records before they
	// were loaded): OutOfRangeStop (the default) stops it, loudly, until an
	// operator acts; OutOfRangeResume gives the lost range up and resumes at
	// the log start.
	OnOutOfRange OutOfRangePolicy
	// Parallel bounds the batches decoded, transformed and loaded at once
	// across partitions (default GOMAXPROCS). Each holds its decoded rows
	// and column buffers, so this, not the partition count, bounds memory;
	// more than the cores only adds garbage-collector work.
	Parallel int
	// Combine is how many partitions' batches of a table may share one
	// INSERT (combine.go; default 1, each alone). A columnar batch gives
	// its processing slot up for its INSERT, so up to Parallel + Combine
	// batches hold decoded rows at once (the live-batch tokens).
	Combine int
	// StreamWait is how long one INSERT of a partition may stay open
	// across its batches cut full (stream.go; 0: one INSERT per batch);
	// StreamRows and StreamBytes end it earlier, and are the server's
	// squashing sizes for it.
	StreamWait              time.Duration
	StreamRows, StreamBytes int
}

// OutOfRangePolicy is Options.OnOutOfRange (config
// kafka.on_offset_out_of_range).
type OutOfRangePolicy string

const (
	OutOfRangeStop   OutOfRangePolicy = "stop"
	OutOfRangeResume OutOfRangePolicy = "resume_from_log_start"
)

// Engine runs the pipelines of one process on one consumer-group client.
type Engine struct {
	opts Options
	log  *slog.Logger
	m    *Metrics
	cl   *kgo.Client

	mu sync.Mutex
	// byTopic and opts.Pipelines are the pipelines in force (under mu):
	// Reconfigure replaces them, from the poll loop (reconfigure.go).
	byTopic map[string]*Pipeline
	workers map[tp]*worker
	// skips are the source offsets [from, to) each partition gave up to
	// retention, carried in its commits' metadata (Options.RecordSkip).
	skips map[tp][2]int64
	// restarts are workers whose INSERT stream failed, for the poll loop
	// to start again (stream.go); noStream is, per partition, the last
	// offset of its latest failed stream: no stream goes up to it.
	// Both under mu.
	restarts []*worker
	noStream map[tp]int64

	// slots holds one token per batch being processed (Options.Parallel).
	slots chan struct{}
	// live holds one token per batch with decoded rows (Options.Parallel
	// + Options.Combine).
	live chan struct{}

	// limits holds the effective batch limits of the partitions whose
	// limits differ from their pipeline's configured ones (adapt.go), for
	// the gauges.
	limitsMu sync.Mutex
	limits   map[*Pipeline]map[int32]batch.Limits

	// started is closed by Run: workers the group assigns earlier (the
	// client joins as soon as it is created) wait for it, so everything
	// set before Run is visible to them.
	started chan struct{}
	// reconf takes Reconfigure's requests to the poll loop, which
	// applies them between polls; polled is closed when the poll loop
	// ends, so a request that comes later is refused.
	reconf chan *reconfig
	polled chan struct{}

	inflight atomic.Int64
	// freed is signalled when a release leaves the budget with room: the
	// poll loop, not polling while it was spent, goes on (awaitBudget).
	freed chan struct{}
	// noRecords is a cancelled context: a poll with it takes no records
	// and blocks rebalances (Run).
	noRecords context.Context
	polling   atomic.Bool
	// member is the group member ID under which the workers map was last
	// known to be the client's assignment: set by the assigned callback,
	// which franz-go calls after every sync, once the partitions the new
	// assignment dropped are revoked. (Not by the poll loop: a poll can
	// return while a join is in flight and the client's member ID is
	// already the new one.) A commit under another ID is refused
	// (errIdentityChanged): a member that was expelled and rejoined under
	// a new ID inside one rebalance gets a revoke, not a loss, and the
	// coordinator would accept its commits for partitions another member
	// owns by then.
	member  atomic.Pointer[string]
	failing atomic.Int32 // workers whose sink is failing right now
	stalled atomic.Int32 // partitions stopped out of the log's range
	// clientClosed is closed once the Kafka client is, which may be after
	// Run returned (see shutdown).
	clientClosed chan struct{}
	// deadline is when shutdown must be over (unix nanoseconds; 0 while
	// running): commits and the wait for abandoned INSERTs stay within it.
	deadline atomic.Int64

	// hardCtx ends every worker's work; cancelled when the shutdown
	// deadline passes or Run returns.
	hardCtx    context.Context
	hardCancel context.CancelFunc
}

type tp struct {
	topic     string
	partition int32
}

// New builds an engine. Call ClientOpts to get the franz-go options it needs,
// create the client with them, and pass it to Run.
func New(o Options) (*Engine, error) {
	if len(o.Pipelines) == 0 {
		return nil, errors.New("pipeline: no pipelines")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 10 * time.Second
	}
	if o.PartsBackoff <= 0 {
		o.PartsBackoff = defaultPartsBackoff
	}
	if o.RevokeTimeout <= 0 {
		o.RevokeTimeout = 30 * time.Second
	}
	if o.AbandonTimeout <= 0 {
		o.AbandonTimeout = 10 * time.Second
	}
	if o.OutcomeWait <= 0 {
		o.OutcomeWait = time.Second
	}
	if o.Combine <= 0 {
		o.Combine = 1
	}
	if o.Parallel <= 0 {
		o.Parallel = runtime.GOMAXPROCS(0)
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	switch o.OnOutOfRange {
	case "":
		o.OnOutOfRange = OutOfRangeStop
	case OutOfRangeStop, OutOfRangeResume:
	default:
		return nil, fmt.Errorf("pipeline: unknown out-of-range policy %q", o.OnOutOfRange)
	}
	e := &Engine{
		opts:         o,
		log:          o.Log,
		m:            o.Metrics,
		byTopic:      map[string]*Pipeline{},
		workers:      map[tp]*worker{},
		skips:        map[tp][2]int64{},
		noStream:     map[tp]int64{},
		started:      make(chan struct{}),
		reconf:       make(chan *reconfig),
		polled:       make(chan struct{}),
		freed:        make(chan struct{}, 1),
		clientClosed: make(chan struct{}),
		slots:        make(chan struct{}, o.Parallel),
		// With Combine 1 no batch gives its slot up (load.go, send):
		// the slots bound them, as before shared INSERTs.
		live:   make(chan struct{}, o.Parallel+o.Combine),
		limits: map[*Pipeline]map[int32]batch.Limits{},
	}
	for _, p := range o.Pipelines {
		if _, dup := e.byTopic[p.Topic]; dup {
			return nil, fmt.Errorf("pipeline: topic %s read by two pipelines", p.Topic)
		}
		e.byTopic[p.Topic] = p
		e.publishLimits(p, -1, p.Limits, false) // the gauges start at the configured limits
		o.Metrics.startPipeline(p.Name)
	}
	e.opts.DeadLetters = e.countLetters(o.DeadLetters)
	e.hardCtx, e.hardCancel = context.WithCancel(context.Background())
	noRecords, cancel := context.WithCancel(context.Background())
	cancel()
	e.noRecords = noRecords
	return e, nil
}

// SetDeadLetters sets the dead-letter writer when it needs the client that
// is built from ClientOpts; call it before Run (not concurrently with it).
func (e *Engine) SetDeadLetters(d DeadLetters) { e.opts.DeadLetters = e.countLetters(d) }

// Topics lists the topics the engine consumes. Safe for concurrent use.
func (e *Engine) Topics() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.byTopic))
	for _, p := range e.opts.Pipelines {
		out = append(out, p.Topic)
	}
	return out
}

// ClientOpts are the franz-go options the engine relies on: group
// consuming of the pipelines' topics with cooperative-sticky balancing,
// manual commits, rebalances only between polls, callbacks that start and
// stop partition workers, and a reset policy that never silently rewinds.
func (e *Engine) ClientOpts(group string) []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(e.Topics()...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(e.assigned),
		kgo.OnPartitionsRevoked(e.revoked),
		kgo.OnPartitionsLost(e.lost),
		// A new group starts at the log start; when the broker reports an
		// offset out of range the partition stops with an error instead of
		// rewinding to the start (which would re-read the whole log after
		// a leader-epoch change) or skipping to the end (loss).
		kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}
}

// Ready says whether the engine is consuming: polling, no partition's sink
// is failing, and no partition is stopped out of the log's range.
func (e *Engine) Ready() bool {
	return e.polling.Load() && e.failing.Load() == 0 && e.stalled.Load() == 0
}

// Run polls until ctx ends, then flushes and commits every partition within
// the shutdown timeout, leaves the group and closes cl. cl must have been
// built with ClientOpts. Run returns nil after a clean shutdown.
func (e *Engine) Run(ctx context.Context, cl *kgo.Client) error {
	e.cl = cl
	close(e.started)
	defer e.hardCancel()
	e.polling.Store(true)
	for ctx.Err() == nil {
		if e.spent() {
			// The budget is spent: take no records until batches give
			// theirs back. Not polling holds the fetching back without
			// pausing partitions (a pause drops what the client has
			// buffered for them, fetched again later): with one fetch
			// at a time (MaxConcurrentFetches 1) the client buffers at
			// most one response, the fetch term of the memory bound.
			if !e.awaitBudget(ctx) {
				break
			}
			// A poll with a cancelled context takes no records, but
			// like any poll it waits out a rebalance under way and
			// holds the next one back until AllowRebalance (franz-go's
			// PollRecords): between runs as it does after a poll.
			cl.PollRecords(e.noRecords, 0)
			e.backpressure()
			e.between(cl)
			continue
		}
		// A short poll lets the loop resume paused partitions and notice
		// shutdown even when no records arrive.
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fetches := cl.PollRecords(pctx, 10000)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			if errors.Is(err, kerr.OffsetOutOfRange) {
				e.outOfRange(t, p)
				return
			}
			var dl *kgo.ErrDataLoss
			if errors.As(err, &dl) {
				e.m.DataLoss.Inc()
				e.log.Error("kafka reported data loss", "stage", "source", "topic", t, "partition", p, "err", err, logx.Type(logx.TypeDataLoss))
				return
			}
			e.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		now := time.Now()
		fetches.EachTopic(func(ft kgo.FetchTopic) {
			// The topic ID tells a topic's incarnations apart (a topic
			// deleted and created again starts again at offset 0).
			var topicID string
			if ft.TopicID != ([16]byte{}) {
				topicID = kadm.TopicID(ft.TopicID).String()
			}
			for _, fp := range ft.Partitions {
				e.handOver(ft.Topic, topicID, fp, now)
			}
		})
		e.backpressure()
		e.between(cl)
	}
	close(e.polled)
	e.polling.Store(false)
	return e.shutdown(cl)
}

// between is the poll loop's work between polls: a reload's restart of
// pipelines, the restarts of failed streams, and the rebalances the polls
// held back.
func (e *Engine) between(cl *kgo.Client) {
	// Between polls no rebalance runs: a pipeline restarted here keeps
	// its partitions (reconfigure.go).
	select {
	case r := <-e.reconf:
		r.done <- e.reconfigure(cl, r.pipes)
	default:
	}
	e.restartFailed(cl)
	cl.AllowRebalance()
}

// processing is how many batches are in process, loading included: those
// holding a live-batch token (a columnar batch with combine above 1 gives
// its processing slot up for the INSERT and keeps its token).
func (e *Engine) processing() int { return len(e.live) }

// spent says the in-flight budget has no room left.
func (e *Engine) spent() bool { return e.inflight.Load() >= e.opts.InflightBytes }

// awaitBudget waits until the in-flight budget has room again, at most
// 250 ms (the loop's other work goes on meanwhile); false when ctx ended.
// Every release that leaves room signals freed (worker.release), so one
// after Run looked ends the wait at once; a wake-up left from before is
// taken too: it may be the last batch in process ending after
// backpressure looked (a spare pass of the loop is cheap).
func (e *Engine) awaitBudget(ctx context.Context) bool {
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	select {
	case <-e.freed:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// handOver gives a fetched partition's records to its worker and updates
// its lag.
func (e *Engine) handOver(topic, topicID string, p kgo.FetchPartition, now time.Time) {
	e.mu.Lock()
	w := e.workers[tp{topic, p.Partition}]
	e.mu.Unlock()
	if w != nil && p.Err == nil {
		w.st.hwm.Store(p.HighWatermark) // for Stats' lag
		if c := w.committed.Load(); c >= 0 {
			w.lag.Set(float64(max(p.HighWatermark-c, 0)))
		}
	}
	if len(p.Records) == 0 {
		return
	}
	if w == nil {
		// Cannot happen with BlockRebalanceOnPoll: assignment
		// starts the worker before fetching; revoke stops it
		// before polling resumes.
		e.log.Error("records for a partition without a worker", "stage", "source", "topic", topic, "partition", p.Partition, logx.Type(logx.TypeInternal))
		return
	}
	w.enqueue(p.Records, topicID, now)
}

// shutdown stops polling, flushes and commits every worker, and leaves the
// group, all within Options.ShutdownTimeout: the flushes get three
// quarters of it (then they are cut, uncommitted, and their records are
// re-delivered to the next owner); waiting for INSERTs cut short and
// leaving the group share the rest. A leave that cannot finish in time
// (the group is waiting for a dead member's join) goes on in the
// background: shutdown returns at the deadline regardless.
func (e *Engine) shutdown(cl *kgo.Client) error {
	e.log.Info("shutting down: flushing partitions", "timeout", e.opts.ShutdownTimeout)
	deadline := time.Now().Add(e.opts.ShutdownTimeout)
	e.deadline.Store(deadline.UnixNano())
	timer := time.AfterFunc(e.opts.ShutdownTimeout*3/4, func() {
		e.log.Error("shutdown timeout: abandoning unflushed batches (they will be re-delivered)", "stage", "shutdown", logx.Type(logx.TypeTimeout))
		e.hardCancel()
	})
	defer timer.Stop()
	// The workers stay in the map while they flush: a rebalance that
	// revokes their partitions meanwhile must wait for them (revoked), or
	// the partitions would be handed over while their INSERTs still run.
	e.mu.Lock()
	all := make(map[tp]*worker, len(e.workers))
	for k, w := range e.workers {
		all[k] = w
	}
	e.mu.Unlock()
	for _, w := range all {
		w.stop(stopFlush, 0)
	}
	for k, w := range all {
		<-w.done
		e.mu.Lock()
		mine := e.workers[k] == w
		if mine {
			delete(e.workers, k)
		}
		e.mu.Unlock()
		if mine {
			w.forget()
		}
	}
	cl.AllowRebalance()
	// With a static member (kafka.instance_id) this does not leave: the
	// partitions wait for the same instance to come back.
	lctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := cl.LeaveGroupContext(lctx); err != nil {
		e.log.Warn("could not leave the group before the shutdown deadline; the group notices at the session timeout", "err", err)
	}
	go func() {
		cl.Close() // revoke finds no workers left
		close(e.clientClosed)
	}()
	select {
	case <-e.clientClosed:
		e.log.Info("shut down")
	case <-lctx.Done():
		e.log.Warn("the Kafka client did not close before the shutdown deadline; exiting anyway")
	}
	return nil
}

// bounded returns a context for work that shutdown must not cut short
// (commits, the wait for an abandoned INSERT), lasting d at most and
// never past the shutdown deadline.
func (e *Engine) bounded(d time.Duration) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(e.hardCtx)
	if dl := e.deadline.Load(); dl != 0 {
		end := time.Now().Add(d)
		if last := time.Unix(0, dl); last.Before(end) {
			end = last
		}
		return context.WithDeadline(ctx, end)
	}
	return context.WithTimeout(ctx, d)
}

// outOfRange handles a partition whose fetch position is not in the log
// any more (with NoResetOffset the client reports it on every poll): once
// per worker it logs an ERROR with the lost range and counts it, then
// either stops the partition (paused, /readyz not ready) or moves it to
// the log start, as Options.OnOutOfRange says.
func (e *Engine) outOfRange(topic string, partition int32) {
	k := tp{topic, partition}
	e.mu.Lock()
	w := e.workers[k]
	if w == nil || w.outOfRange {
		e.mu.Unlock()
		return
	}
	w.outOfRange = true
	e.mu.Unlock()
	start, committed := e.logPosition(topic, partition)
	e.m.OutOfRange.WithLabelValues(w.p.Name).Inc()
	lost := int64(0) // unknown when either could not be read
	if start >= 0 && committed >= 0 {
		lost = max(start-committed, 0)
	}
	if e.opts.OnOutOfRange == OutOfRangeStop {
		w.stalled.Store(true)
		e.stalled.Add(1)
		e.m.Stalled.Inc()
		e.cl.PauseFetchPartitions(map[string][]int32{topic: {partition}})
		w.log.Error("the partition's committed offset is no longer in the Kafka log: records were removed before they were loaded; partition stopped (kafka.on_offset_out_of_range: stop)",
			"stage", "source", "committed", committed, "log_start", start, "lost", lost, logx.Type(logx.TypeDataLoss))
		return
	}
	w.log.Error("the partition's committed offset is no longer in the Kafka log: records were removed before they were loaded; resuming at the log start (kafka.on_offset_out_of_range: resume_from_log_start)",
		"stage", "source", "committed", committed, "log_start", start, "lost", lost, logx.Type(logx.TypeDataLoss))
	e.m.SkippedOffsets.WithLabelValues(w.p.Name).Add(float64(lost))
	if lost > 0 {
		e.mu.Lock()
		e.skips[k] = [2]int64{committed, start}
		e.mu.Unlock()
	}
	e.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{topic: {partition: {Epoch: -1, Offset: start}}})
	e.mu.Lock()
	w.outOfRange = false // a later fall out of the log is a new event
	e.mu.Unlock()
}

// logPosition reads the partition's log start offset and the group's
// committed offset (-1 each when they cannot be read).
func (e *Engine) logPosition(topic string, partition int32) (start, committed int64) {
	start, committed = -1, -1
	ctx, cancel := context.WithTimeout(e.hardCtx, 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(e.cl)
	if so, err := adm.ListStartOffsets(ctx, topic); err == nil {
		if o, ok := so.Lookup(topic, partition); ok && o.Err == nil {
			start = o.Offset
		}
	}
	if co, err := adm.FetchOffsets(ctx, e.opts.Group); err == nil {
		if o, ok := co.Lookup(topic, partition); ok && o.Err == nil {
			committed = o.At
		}
	}
	return start, committed
}

func (e *Engine) assigned(_ context.Context, cl *kgo.Client, parts map[string][]int32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// franz-go calls this at the end of every successful join and sync,
	// also when nothing new is assigned, and only after the revoke of
	// what the new assignment dropped: the workers map is the client's
	// assignment now, under the member ID the join gave (see member).
	if id, _ := cl.GroupMetadata(); id != "" {
		e.member.Store(&id)
	}
	for topic, ps := range parts {
		p := e.byTopic[topic]
		if p == nil {
			continue
		}
		for _, part := range ps {
			k := tp{topic, part}
			if _, ok := e.workers[k]; ok {
				continue
			}
			w := newWorker(e, p, part)
			e.workers[k] = w
			e.m.Assigned.WithLabelValues(p.Name).Inc()
			go w.run()
		}
		member, generation := cl.GroupMetadata()
		e.log.Info("partitions assigned", "topic", topic, "partitions", ps, "member", member, "generation", generation)
	}
}

func (e *Engine) revoked(_ context.Context, cl *kgo.Client, parts map[string][]int32) {
	// A revoke that runs while shutdown flushes finds the workers still
	// registered and waits for them.
	e.stopPartitions(parts, stopFlush, e.opts.RevokeTimeout)
	for topic, ps := range parts {
		member, generation := cl.GroupMetadata()
		e.log.Info("partitions revoked: flushed and committed, or left to the next owner where this member was fenced", "topic", topic, "partitions", ps, "member", member, "generation", generation)
	}
}

func (e *Engine) lost(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	e.stopPartitions(parts, stopDrop, 0)
	for topic, ps := range parts {
		e.log.Warn("partitions lost: in-flight batches dropped", "topic", topic, "partitions", ps)
	}
}

func (e *Engine) stopPartitions(parts map[string][]int32, mode stopMode, flushTimeout time.Duration) {
	var ws []*worker
	e.mu.Lock()
	for topic, ps := range parts {
		for _, part := range ps {
			k := tp{topic, part}
			if w, ok := e.workers[k]; ok {
				ws = append(ws, w)
				delete(e.workers, k)
			}
		}
	}
	e.mu.Unlock()
	stopAll(ws, mode, flushTimeout)
}

func stopAll(ws []*worker, mode stopMode, flushTimeout time.Duration) {
	for _, w := range ws {
		w.stop(mode, flushTimeout)
	}
	for _, w := range ws {
		<-w.done
		w.forget()
	}
}

// forget drops what the engine keeps of a stopped worker's partition; the
// one who removed the worker from the map calls it, once.
func (w *worker) forget() {
	w.e.mu.Lock()
	delete(w.e.skips, tp{w.p.Topic, w.partition}) // the next owner reads it back
	w.e.mu.Unlock()
	if w.stalled.Load() {
		w.e.stalled.Add(-1)
		w.e.m.Stalled.Dec()
	}
	w.e.m.Assigned.WithLabelValues(w.p.Name).Dec()
	w.e.m.Lag.DeleteLabelValues(w.p.Name, strconv.Itoa(int(w.partition)))
	// The next owner starts at the configured limits; the gauges of a
	// pipeline a reload replaced or removed are no longer this one's.
	w.e.mu.Lock()
	current := w.e.byTopic[w.p.Topic] == w.p
	w.e.mu.Unlock()
	if current {
		w.e.publishLimits(w.p, w.partition, w.p.Limits, false)
	}
	// Per-partition transform state (velocity) belongs to the
	// partition's next owner now.
	for _, t := range w.p.Transforms {
		if ps, ok := t.(transform.PartitionState); ok {
			ps.Forget(w.partition)
		}
	}
}

// backpressure pauses fetching for partitions whose workers hold more than
// two batches' worth of bytes, and resumes them once they drain below one
// batch. A spent global budget pauses no partition (the poll loop stops
// polling instead), but the workers holding records are told they are held
// back, so that they cut their open batches (worker.starved).
// The client's own set of paused partitions is the state it reconciles
// with, not a flag of the worker's: a partition revoked while paused and
// assigned back later gets a new worker but is still paused in the client,
// and partitions no worker holds any more are resumed.
func (e *Engine) backpressure() {
	total := e.inflight.Load()
	e.m.InflightBytes.Set(float64(total))
	over := total >= e.opts.InflightBytes
	// No batch in process: nothing will give records back unless the
	// open batches are cut (worker.starved).
	stuck := over && e.processing() == 0
	isPaused := map[tp]bool{}
	for topic, ps := range e.cl.PauseFetchPartitions(nil) {
		for _, p := range ps {
			isPaused[tp{topic, p}] = true
		}
	}
	pause := map[string][]int32{}
	resume := map[string][]int32{}
	paused := 0
	e.mu.Lock()
	for k, w := range e.workers {
		held := w.held.Load()
		limit := int64(w.p.Limits.MaxBytes)
		was := isPaused[k]
		delete(isPaused, k)
		now := was
		switch {
		case w.stalled.Load(): // out of the log's range: stays stopped
			if !was {
				pause[k.topic] = append(pause[k.topic], k.partition)
			}
			now = true
		case !was && held > 2*limit:
			pause[k.topic] = append(pause[k.topic], k.partition)
			now = true
		case was && held <= limit:
			resume[k.topic] = append(resume[k.topic], k.partition)
			now = false
		}
		back := now || (over && held > 0)
		if was := w.paused.Swap(back); back && over && (!was || stuck) {
			w.poke() // its open batch may be all it gets (worker.starved)
		}
		if back {
			paused++
		}
	}
	e.mu.Unlock()
	for k := range isPaused { // no worker: nothing holds its records back
		resume[k.topic] = append(resume[k.topic], k.partition)
	}
	if len(pause) > 0 {
		e.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		e.cl.ResumeFetchPartitions(resume)
	}
	e.m.Paused.Set(float64(paused))
}

// commit stores next as the partition's committed offset, with the
// dead-letter position dlqNext in its metadata. It uses a context that
// shutdown does not cancel: a SIGTERM between a load and its commit would
// otherwise re-deliver the whole batch.
func (e *Engine) commit(topic string, partition int32, epoch int32, next, dlqNext int64) error {
	ctx, cancel := e.bounded(10 * time.Second)
	defer cancel()
	member := e.member.Load()
	e.mu.Lock()
	skip, skipped := e.skips[tp{topic, partition}]
	e.mu.Unlock()
	ctx = kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		if member == nil || req.MemberID != *member {
			return errIdentityChanged
		}
		if e.opts.Metadata != nil {
			md := e.opts.Metadata(dlqNext)
			if skipped && e.opts.RecordSkip != nil {
				md = e.opts.RecordSkip(md, skip[0], skip[1])
			}
			for i := range req.Topics {
				if req.Topics[i].Topic != topic {
					continue
				}
				for j := range req.Topics[i].Partitions {
					if req.Topics[i].Partitions[j].Partition == partition {
						req.Topics[i].Partitions[j].Metadata = &md
					}
				}
			}
		}
		return nil
	})
	var cerr error
	e.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{
		topic: {partition: {Epoch: epoch, Offset: next}},
	}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		cerr = commitRespErr(resp)
	})
	if cerr != nil {
		e.m.CommitErrors.Inc()
		return fmt.Errorf("commit %s[%d] at %d: %w", topic, partition, next, cerr)
	}
	return nil
}

// errIdentityChanged refuses a commit issued under another member ID than
// the one the assignment was last confirmed under (Engine.member).
var errIdentityChanged = errors.New("the group member ID changed since the assignment was confirmed")

// commitRespErr returns the first per-partition error of a commit response.
func commitRespErr(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}
