// Package pipeline owns Sluice's goroutines: the Kafka poll loop, one worker
// per assigned partition, and the order in which a batch is decoded,
// transformed, dead-lettered, loaded and committed.
//
// The flow of one partition, in its worker goroutine:
//
//	poll loop --records--> worker queue --> batcher (max_rows/bytes/wait)
//	  -> decode -> transforms -> sink.Prepare (marks rows that cannot be stored)
//	  -> dead letters produced and acknowledged
//	  -> sink.Send: one INSERT, retried with backoff until it is stored
//	  -> commit Last+1 of the batch
//
// Batches of one partition are loaded strictly in order and never
// concurrently; partitions load in parallel. The poll loop never blocks on a
// worker: it hands records over and pauses fetching of a partition whose
// worker holds more than two batches' worth of bytes (backpressure), and
// takes no records while the global in-flight budget is spent.
//
// Before every write a worker waits until no write of its partition is
// still running in ClickHouse, proves it still owns the partition (a fence
// commit, refused once the member's identity changed), and reads which of
// the batch's offsets the table already holds: those are neither loaded nor
// dead-lettered again. A crash, a lost acknowledgement, a cut link or an
// INSERT committed only in some table partitions therefore re-delivers
// records that are not loaded twice. An INSERT the server refuses for its
// own load adapts the partition's batches (adapt.go): smaller pieces and
// smaller batches when it is short of memory, the same rows after a pause
// and later batches when the table has too many parts. On revoke a worker flushes and
// commits; on loss it drops its state; on shutdown every worker flushes and
// commits before the client leaves the group. docs/DESIGN.md lists the
// invariants and the order they rely on.
package pipeline

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/stage"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// Decoder turns one record value into a Row; safe for concurrent use. An
// error wrapping decode.ErrUnavailable means the decoder could not reach what
// it depends on (the schema registry): the worker retries the record rather
// than dead-lettering it. Every other error marks the record bad.
type Decoder interface {
	Decode(value []byte) (record.Row, error)
}

// Sink is a pipeline's target table.
type Sink interface {
	// NewWriter returns the writer of one partition worker; it may hold
	// buffers reused across that worker's batches.
	NewWriter() Writer
	// Stored returns the offsets of the partition in [from, to] that the
	// table holds for the topic incarnation topicID, ascending, and how
	// many rows of that range belong to another incarnation. It is final
	// only while Running reports 0.
	Stored(ctx context.Context, topic string, partition int32, topicID string, from, to int64) ([]int64, int, error)
	// Highest returns the highest offset of the partition above after
	// that the table holds for topicID (-1 for none), and how many rows
	// above after belong to another incarnation. Final only while Running
	// reports 0.
	Highest(ctx context.Context, topic string, partition int32, topicID string, after int64) (int64, int, error)
	// Running counts the writes of the partition the store is still
	// executing (from any process); with kill it asks the store to
	// cancel them. A write whose outcome is unknown may still commit
	// while it runs.
	Running(ctx context.Context, topic string, partition int32, kill bool) (int, error)
}

// Writer loads the batches of one partition. Not safe for concurrent use.
type Writer interface {
	// Prepare readies the good items for loading, marking those that
	// cannot be stored (stage load); it returns how many are ready.
	Prepare(b *record.Batch) int
	// Send stores the prepared rows in one write, named so that Running
	// sees it. After an error any subset of the rows may be stored, and
	// the write may still be running.
	Send(ctx context.Context, b *record.Batch) error
}

// DeadLetters stores the failed items of a batch, exactly once per record
// across owners of a partition.
//
// A position (opaque to the engine, made by the implementation) names the
// dead-letter partition a source partition's letters go to and an offset in
// it; the engine stores one with every commit (Options.Metadata). Positions
// of one partition compare as their offsets do, and at+1 is the position
// after the letter at at.
type DeadLetters interface {
	// Send produces, to the dead-letter partition of pos, the failed items
	// of b that skip does not name, and waits for their acknowledgement.
	// It calls acked, in the caller's goroutine, for each letter the topic
	// acknowledged (its item, its position, whether its value was cut to
	// fit the topic), also when it returns an error: the letters not
	// acknowledged then may not be stored, and only they must be produced
	// again.
	Send(ctx context.Context, b *record.Batch, pos int64, skip func(offset int64) bool, acked func(it *record.Item, at int64, truncated bool)) error
	// Resume returns, for a newly assigned partition, the source offsets
	// that already have a dead letter (produced by a previous owner after
	// its last commit) with their letters' positions, and the position of
	// the partition's next letters, to store with commits. An error (also
	// a read of the dead-letter partition that made no progress) is
	// retried.
	Resume(ctx context.Context, group, topic string, partition int32) (map[int64]int64, int64, error)
}

// Originals reads source records again: the DeadLetters of a columnar
// pipeline implement it (dlq.Writer does) so that a batch's records can be
// released once their rows are in its block (worker.process), and read
// again for the few whose rows fail later, at the load, whose letters
// carry the original key and value. It returns the records it found at
// offsets (ascending) of the partition; an offset the partition no longer
// holds, or holds in another incarnation of the topic (topicID), is
// absent. An error is retried.
type Originals interface {
	Originals(ctx context.Context, topic string, partition int32, topicID string, offsets []int64) (map[int64]*kgo.Record, error)
}

// DeadLetterMetadata encodes, for an offset commit's metadata, a
// dead-letter position (DeadLetters); nil means no metadata.
type DeadLetterMetadata func(pos int64) string

// Pipeline is one topic's path to one table.
type Pipeline struct {
	Name       string
	Topic      string
	Decoder    Decoder
	Transforms []transform.Transform
	Sink       Sink
	Limits     batch.Limits
}

// stages lists the pipeline's transforms as the stage runner takes them.
func (p *Pipeline) stages() []stage.Transform {
	ts := make([]stage.Transform, len(p.Transforms))
	for i, t := range p.Transforms {
		ts[i] = t
	}
	return ts
}
