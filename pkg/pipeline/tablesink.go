package pipeline

import (
	"context"

	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// TableSink adapts a ClickHouse table to the Sink the engine uses.
func TableSink(t *sink.Table) Sink { return tableSink{t} }

type tableSink struct{ t *sink.Table }

func (s tableSink) NewWriter() Writer { return &tableWriter{t: s.t, bufs: s.t.NewBuffers()} }

func (s tableSink) Stored(ctx context.Context, topic string, partition int32, topicID string, from, to int64) ([]int64, int, error) {
	return s.t.Stored(ctx, topic, partition, topicID, from, to)
}

func (s tableSink) Running(ctx context.Context, topic string, partition int32, kill bool) (int, error) {
	return s.t.Running(ctx, topic, partition, kill)
}

// tableWriter keeps one partition's column buffers across its batches.
type tableWriter struct {
	t    *sink.Table
	bufs *sink.Buffers
}

func (w *tableWriter) Prepare(b *record.Batch) int { return w.t.Prepare(w.bufs, b) }

func (w *tableWriter) Send(ctx context.Context, b *record.Batch) error {
	return w.t.Send(ctx, w.bufs, b)
}

// Block resets the writer's columns for the next batch's rows (the
// columnar path, stage.Columnar).
func (w *tableWriter) Block(needs []string) record.Block { return w.t.Block(w.bufs, needs) }
