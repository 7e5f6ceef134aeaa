package pipeline

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// TableSink adapts a ClickHouse table to the Sink the engine uses. Up to
// combine partitions' batches share one INSERT (combine.go); 1 sends each
// batch alone. On a cluster only the partitions of one shard share one.
func TableSink(t *sink.Table, combine int) Sink {
	cs := make([]*combiner, max(t.Shards(), 1))
	for i := range cs {
		cs[i] = newCombiner(t.SendMany, max(combine, 1))
	}
	return tableSink{t, &bufPool{}, cs}
}

type tableSink struct {
	t    *sink.Table
	pool *bufPool
	cs   []*combiner // one per shard
}

func (s tableSink) NewWriter() Writer { return &tableWriter{t: s.t, pool: s.pool, cs: s.cs} }

// bufPool holds the table's column buffers between batches. A writer
// takes one for a batch and gives it back when the batch is done
// (tableWriter.Done), so there are as many as batches processed at once
// (the engine's processing slots), not one per partition: their memory is
// bounded by the parallelism (config.MemoryBound).
type bufPool struct {
	mu   sync.Mutex
	free []*sink.Buffers
}

func (p *bufPool) get(t *sink.Table) *sink.Buffers {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	return t.NewBuffers()
}

func (p *bufPool) put(b *sink.Buffers) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}

func (s tableSink) Stored(ctx context.Context, topic string, partition int32, topicID string, from, to int64) ([]int64, int, error) {
	return s.t.Stored(ctx, topic, partition, topicID, from, to)
}

func (s tableSink) Highest(ctx context.Context, topic string, partition int32, topicID string, after int64) (int64, int, error) {
	return s.t.Highest(ctx, topic, partition, topicID, after)
}

func (s tableSink) Running(ctx context.Context, topic string, partition int32, kill bool) (int, error) {
	return s.t.Running(ctx, topic, partition, kill)
}

// tableWriter holds column buffers from the pool while a batch of its
// partition is processed.
type tableWriter struct {
	t    *sink.Table
	pool *bufPool
	cs   []*combiner
	bufs *sink.Buffers
	// alone: the last shared INSERT of this writer's batch failed; the
	// batch goes alone until it is stored (sharedError).
	alone bool
	// coming: the combiner this writer's batch was announced to, until it
	// queues there or is gone (Announce).
	coming *combiner
}

// Announce tells the combiner of partition's shard that a batch is being
// prepared, so that a ready batch of the table waits for it (combine.go).
// The announcement ends when the batch queues for a shared INSERT or at
// Unannounce, whichever comes first.
func (w *tableWriter) Announce(partition int32) {
	c := w.cs[w.t.ShardOf(partition)]
	if w.coming != nil || w.alone || c.max == 1 {
		return
	}
	w.coming = c
	c.announce()
}

// Unannounce ends an announcement the batch did not use (it ended, or
// went alone); a no-op after the batch queued.
func (w *tableWriter) Unannounce() {
	if w.coming != nil {
		w.coming.gone()
		w.coming = nil
	}
}

func (w *tableWriter) buffers() *sink.Buffers {
	if w.bufs == nil {
		w.bufs = w.pool.get(w.t)
	}
	return w.bufs
}

func (w *tableWriter) Prepare(b *record.Batch) int { return w.t.Prepare(w.buffers(), b) }

func (w *tableWriter) Send(ctx context.Context, b *record.Batch) error {
	return w.t.Send(ctx, w.buffers(), b)
}

func (w *tableWriter) SendShared(ctx context.Context, b *record.Batch, fence func() error) error {
	c := w.cs[w.t.ShardOf(b.Partition)]
	if w.alone || c.max == 1 {
		w.Unannounce()
		err := w.t.Send(ctx, w.buffers(), b)
		w.alone = err != nil && w.alone
		return err
	}
	announced := w.coming == c
	if w.coming != nil && !announced {
		w.Unannounce()
	}
	w.coming = nil
	err := c.send(ctx, w.buffers(), b, fence, announced)
	if se := (*sharedError)(nil); errors.As(err, &se) {
		w.alone = true
	}
	return err
}

// CanStream says whether the table can hold an INSERT open across
// batches (the native writer, a single server).
func (w *tableWriter) CanStream() bool { return w.t.CanStream() }

// OpenStream begins an INSERT held open across the partition's batches
// (stream.go); an error when it cannot (CanStream).
func (w *tableWriter) OpenStream(ctx context.Context, b *record.Batch, rows, bytes int, life time.Duration) (insertStream, error) {
	s, err := w.t.OpenStream(ctx, b.Topic, b.Partition, b.First, rows, bytes, life)
	if err != nil {
		return nil, err
	}
	return tableStream{s, w}, nil
}

// tableStream sends each batch's prepared buffers as a block of the stream.
type tableStream struct {
	s *sink.Stream
	w *tableWriter
}

func (s tableStream) Append(b *record.Batch) error { return s.s.Append(s.w.buffers(), b) }
func (s tableStream) End() error                   { return s.s.End() }
func (s tableStream) Abort()                       { s.s.Abort() }

// Done empties the buffers (they may point into the batch's records) and
// gives them back to the pool.
func (w *tableWriter) Done() {
	w.alone = false
	if w.bufs != nil {
		w.t.Release(w.bufs)
		w.pool.put(w.bufs)
		w.bufs = nil
	}
}

// Block resets the writer's columns for the next batch's rows (the
// columnar path, stage.Columnar).
func (w *tableWriter) Block(needs []string) record.Block { return w.t.Block(w.buffers(), needs) }
