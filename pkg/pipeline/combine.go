package pipeline

import (
	"context"
	"fmt"
	"sync"

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
// next, up to the pipeline's batch.combine (TableSink). Nothing waits for company: a lone batch is
// sent at once. A batch that waited for an earlier INSERT is fenced again
// right before its own, so no fence is older than the INSERT before it.

// sharedSender is a Writer whose Send may carry other partitions' batches
// in the same write (tableWriter).
type sharedSender interface {
	// SendShared is Send, but the write may include other partitions'
	// batches. fence is called (from another goroutine, while SendShared
	// waits) right before the write when the batch waited for an earlier
	// one; its error is returned and nothing of the batch is written.
	SendShared(ctx context.Context, b *record.Batch, fence func() error) error
}

// combiner serializes the INSERTs of one table and lets the batches that
// queue meanwhile share the next one.
type combiner struct {
	// insert writes parts as one INSERT (sink.Table.SendMany).
	insert func(ctx context.Context, parts []sink.Part) error
	max    int

	mu      sync.Mutex
	queue   []*shareReq
	sending bool
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
func (c *combiner) send(ctx context.Context, bufs *sink.Buffers, b *record.Batch, fence func() error) error {
	r := &shareReq{ctx: ctx, part: sink.Part{Bufs: bufs, Batch: b}, fence: fence, done: make(chan error, 1)}
	c.mu.Lock()
	r.waited = c.sending
	c.queue = append(c.queue, r)
	if !c.sending {
		c.sending = true
		go c.run()
	}
	c.mu.Unlock()
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

// run sends INSERTs until the queue is empty.
func (c *combiner) run() {
	for {
		c.mu.Lock()
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
