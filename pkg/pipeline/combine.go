package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// This file is the shared INSERT: the ready batches of several partitions
// of one table go to ClickHouse as one block, so the server makes one part
// per table partition for all of them instead of one per batch (fewer
// parts to merge: docs/DESIGN.md, "Shared INSERTs"). Each partition keeps
// its own protocol (load.go): it settles, fences, reads what is stored,
// prepares and dead-letters alone, then hands its prepared batch to the
// table's combiner and waits for the outcome, which is the same for every
// batch of the INSERT. The query_id lists every partition, so each one's
// settle sees it (sink.SendMany).
//
// The combiner sends one INSERT at a time per table, like a group commit:
// the batches that become ready while one is being sent go together in the
// next, up to the pipeline's batch.combine (TableSink). A worker announces
// its batch to the combiner when it starts processing it (coming), and a
// ready batch waits for the announced ones, at most combineLinger: with
// as many processing slots as cores, few batches are ever ready at the
// same instant, and without the wait nearly every INSERT went alone. A
// batch waits for company only while one is being prepared: a lone batch
// is sent at once. A batch that waited (for an earlier INSERT, or for the
// announced ones) is fenced again right before its own, so no fence is
// older than the INSERT before it.

// sharedSender is a Writer whose Send may carry other partitions' batches
// in the same write (tableWriter).
type sharedSender interface {
	// SendShared is Send, but the write may include other partitions'
	// batches. fence is called (from another goroutine, while SendShared
	// waits) right before the write when the batch waited for an earlier
	// one; its error is returned and nothing of the batch is written.
	SendShared(ctx context.Context, b *record.Batch, fence func() error) error
}

// announcer is a sharedSender whose shared INSERTs wait for the batches
// announced as being prepared (tableWriter.Announce).
type announcer interface {
	Announce(partition int32)
	Unannounce()
}

// combiner serializes the INSERTs of one table and lets the batches that
// queue meanwhile share the next one.
type combiner struct {
	// insert writes parts as one INSERT (sink.Table.SendMany).
	insert func(ctx context.Context, parts []sink.Part) error
	max    int
	// linger bounds how long a ready batch waits for announced ones
	// (combineLinger; tests shorten it).
	linger time.Duration

	mu      sync.Mutex
	queue   []*shareReq
	sending bool
	// coming counts the batches announced and not yet queued or given up
	// (announce, gone).
	coming int
	// kick wakes a lingering run when a batch queues or an announced one
	// is gone.
	kick chan struct{}
}

// combineLinger bounds the wait of a ready batch for the batches being
// prepared beside it. Preparing a full batch takes tens of milliseconds
// here; the bound only matters when an announced batch is held up (a
// retry, a settle waiting for an INSERT), and it is well inside the
// latency budget of a batch (max_wait + 300 ms, issue 8).
const combineLinger = 150 * time.Millisecond

func newCombiner(insert func(ctx context.Context, parts []sink.Part) error, max int) *combiner {
	return &combiner{insert: insert, max: max, linger: combineLinger, kick: make(chan struct{}, 1)}
}

// announce says a batch of the table is being prepared: a ready batch
// waits for it (at most c.linger).
func (c *combiner) announce() {
	c.mu.Lock()
	c.coming++
	c.mu.Unlock()
}

// gone withdraws an announcement whose batch will not queue (it was sent
// alone, or its processing ended otherwise).
func (c *combiner) gone() {
	c.mu.Lock()
	c.coming--
	c.mu.Unlock()
	signal(c.kick)
}

type shareReq struct {
	ctx   context.Context
	part  sink.Part
	fence func() error
	done  chan error // one outcome, buffered
	// Under combiner.mu:
	waited    bool // queued while an INSERT of the table was being sent
	started   bool // part of an INSERT that has begun
	withdrawn bool // its worker stopped before the INSERT began
}

// send queues the prepared batch and waits for the INSERT that carries
// it. When ctx ends first, a batch not yet in an INSERT is withdrawn (not
// written); one in an INSERT cancels it (for every batch in it: each then
// settles and reads what is stored, load.go) and returns its outcome.
// announced says the batch was announced (announce): its announcement
// ends as it queues.
func (c *combiner) send(ctx context.Context, bufs *sink.Buffers, b *record.Batch, fence func() error, announced bool) error {
	r := &shareReq{ctx: ctx, part: sink.Part{Bufs: bufs, Batch: b}, fence: fence, done: make(chan error, 1)}
	c.mu.Lock()
	if announced {
		c.coming--
	}
	r.waited = c.sending
	c.queue = append(c.queue, r)
	if !c.sending {
		c.sending = true
		go c.run()
	}
	c.mu.Unlock()
	signal(c.kick)
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !r.started {
		r.withdrawn = true
		c.mu.Unlock()
		return fmt.Errorf("sink: %s[%d] %d..%d not sent: %w", b.Topic, b.Partition, b.First, b.Last, ctx.Err())
	}
	c.mu.Unlock()
	return <-r.done
}

// run sends INSERTs until the queue is empty. Before each, while the
// group is not full and announced batches are coming, it waits for them
// until c.linger after it began waiting.
func (c *combiner) run() {
	for {
		c.mu.Lock()
		c.awaitComing()
		var group, rest []*shareReq
		for _, r := range c.queue {
			switch {
			case r.withdrawn:
			case len(group) < c.max:
				group = append(group, r)
			default:
				rest = append(rest, r)
			}
		}
		c.queue = rest
		if len(group) == 0 {
			c.sending = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.sendGroup(group)
	}
}

// awaitComing waits, while the group is not full and announced batches
// are coming, for them to queue or be gone, until c.linger after it began.
// c.mu is held, and released while it waits.
func (c *combiner) awaitComing() {
	var timer *time.Timer
	for {
		live := 0
		for _, r := range c.queue {
			if !r.withdrawn {
				live++
			}
		}
		if live == 0 || live >= c.max || c.coming <= 0 {
			return
		}
		if timer == nil {
			timer = time.NewTimer(c.linger)
			defer timer.Stop()
		}
		// Every batch queued now waits: it is fenced again first.
		for _, r := range c.queue {
			r.waited = true
		}
		c.mu.Unlock()
		select {
		case <-c.kick:
			c.mu.Lock()
		case <-timer.C:
			c.mu.Lock()
			return
		}
	}
}

// sendGroup fences the batches that waited, then sends the rest as one
// INSERT, cancelled if any of their workers stops.
func (c *combiner) sendGroup(group []*shareReq) {
	errs := make([]error, len(group))
	var wg sync.WaitGroup
	for i, r := range group {
		if r.waited {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = r.fence()
			}()
		}
	}
	wg.Wait()
	var live []*shareReq
	var parts []sink.Part
	c.mu.Lock()
	for i, r := range group {
		switch {
		case r.withdrawn:
		case errs[i] != nil:
			r.done <- errs[i]
		default:
			r.started = true
			live = append(live, r)
			parts = append(parts, r.part)
		}
	}
	c.mu.Unlock()
	if len(live) == 0 {
		return
	}
	// In the order of the tables' sorting key, which starts with (_topic,
	// _partition, _offset): each batch's rows are in offset order, so the
	// block arrives sorted and the server need not sort it (and permute
	// every column), as it would for batches in the order they were ready.
	slices.SortFunc(parts, func(a, b sink.Part) int {
		return cmp.Or(strings.Compare(a.Batch.Topic, b.Batch.Topic), cmp.Compare(a.Batch.Partition, b.Batch.Partition))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, r := range live {
		stop := context.AfterFunc(r.ctx, cancel)
		defer stop()
	}
	err := c.insert(ctx, parts)
	if err != nil && len(live) > 1 {
		err = &sharedError{n: len(live), err: err, refused: refusal(err)}
	}
	for _, r := range live {
		r.done <- err
	}
}

// sharedError is the failure of an INSERT that carried several
// partitions' batches. It does not unwrap: which rows a refusal blames, or
// which batch's shape, is only known for a batch alone, so the classes of
// the server's error do not apply to each batch. The writer sends its
// batch alone next time (tableWriter).
type sharedError struct {
	n   int
	err error
	// refused: the server answered (the rows' content or the block's
	// shape, its memory, its parts): nothing of the INSERT still runs, so
	// the batch may go again at once, alone. Otherwise the outcome is
	// unknown, as for any INSERT.
	refused bool
}

func (e *sharedError) Error() string {
	return fmt.Sprintf("an INSERT shared by %d partitions' batches failed (each goes again alone): %v", e.n, e.err)
}

func refusal(err error) bool {
	switch sink.Classify(err) {
	case sink.BadData, sink.Split, sink.Memory, sink.TooManyParts:
		return true
	}
	return false
}
