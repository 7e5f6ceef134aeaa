// Package record holds the types that flow between Sluice's stages.
//
// A Kafka record enters the pipeline as an Item; the decode stage fills its
// Row (or marks it failed), transforms read and write Rows on a whole Batch
// (and may mark single items failed), the sink loads the rows that are still
// good, failed items go to the dead-letter topic, and the Batch's offset range
// is the ack token that the source commits once the load succeeded.
//
// Row values are normalised by the decoders so that every later stage sees
// one Go type per Avro type:
//
//	string, enum             -> string
//	int / long               -> int32 / int64
//	float / double           -> float32 / float64
//	boolean                  -> bool
//	timestamp-millis         -> time.Time (UTC)
//	decimal(p, s)            -> decimal.Decimal (exact, github.com/shopspring/decimal)
//	null / ["null", T]       -> nil or the T value (unions are unwrapped)
//	array                    -> []any
//	record                   -> map[string]any
package record

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Row is one decoded record: field (and later column) name to value.
type Row map[string]any

// Stage names where in the flow a record failed; it is the dead letter's
// "stage" header and a metric label, so the set is closed.
type Stage string

const (
	StageDecode    Stage = "decode"
	StageTransform Stage = "transform"
	StageLoad      Stage = "load"
)

// Failure says why one record could not be loaded.
type Failure struct {
	Stage  Stage
	Reason string
	// Class is the reason's class (reason.go), set by stages that know it
	// (FailClass); empty when the stage did not say, and ReasonClass
	// derives it.
	Class string
}

// Item is one Kafka record and what the stages made of it.
type Item struct {
	// Rec is the Kafka record; nil once released (Release), when only its
	// offset and size are kept.
	Rec *kgo.Record
	Row Row
	// Failed is non-nil once a stage gave up on this record; later stages
	// skip it and it is dead-lettered with the batch.
	Failed *Failure
	// Stored says the table already holds this record's row (an earlier
	// attempt, or a previous owner, loaded it): it is neither loaded nor
	// dead-lettered again.
	Stored bool
	// off and size are the record's offset and key+value bytes once Rec
	// was released.
	off  int64
	size int
}

// Offset is the record's offset.
func (it *Item) Offset() int64 {
	if it.Rec != nil {
		return it.Rec.Offset
	}
	return it.off
}

// Size is the record's key and value bytes, what max_bytes counts.
func (it *Item) Size() int {
	if it.Rec != nil {
		return len(it.Rec.Key) + len(it.Rec.Value)
	}
	return it.size
}

// Release drops the item's reference to its Kafka record (and so to the
// fetch buffer its key and value point into), keeping its offset and size.
// The columnar path releases an item once its row is in the batch's block:
// the row is then all a load needs, and a dead letter for the item reads
// the record from Kafka again (Restore).
func (it *Item) Release() {
	if it.Rec == nil {
		return
	}
	it.off, it.size = it.Rec.Offset, it.Size()
	it.Rec = nil
}

// Released says the item's record was released.
func (it *Item) Released() bool { return it.Rec == nil }

// Restore gives a released item its record back.
func (it *Item) Restore(r *kgo.Record) { it.Rec = r }

// Pending says the item still has to be loaded: no stage failed it and the
// table does not hold it yet.
func (it *Item) Pending() bool { return it.Failed == nil && !it.Stored }

// MarkStored records that the table holds the item's row. A failure seen
// in this attempt is dropped: the record is stored, so a dead letter for it
// would make it both a row and a letter.
func (it *Item) MarkStored() {
	it.Stored = true
	it.Failed = nil
}

// Fail marks the item failed at stage with reason, unless it failed before
// (the first failure is the one reported).
func (it *Item) Fail(stage Stage, reason string) {
	if it.Failed == nil {
		it.Failed = &Failure{Stage: stage, Reason: reason}
	}
}

// FailClass is Fail with the reason's class (one of the Reason*
// constants), for a stage that knows what kind of failure it is.
func (it *Item) FailClass(stage Stage, class, reason string) {
	if it.Failed == nil {
		it.Failed = &Failure{Stage: stage, Reason: reason, Class: class}
	}
}

// Batch is the unit of work of one partition: records First..Last
// (inclusive offsets) in order. Once it is loaded, committing Last+1 acks it.
type Batch struct {
	Pipeline  string
	Topic     string
	Partition int32
	First     int64
	Last      int64
	// Epoch is the leader epoch of the last record, passed on to the commit.
	Epoch int32
	// TopicID is the Kafka topic ID of the records' topic (base64; "" when
	// the broker does not say): it tells incarnations of a topic apart.
	TopicID string
	Items   []Item
	// Bytes is the sum of key and value sizes, what max_bytes bounds.
	Bytes int
	// Block, when set, holds the items' rows in the table's columns (the
	// columnar path; Row is then unused), Items[i] at row Base+i.
	Block Block
	Base  int
	// Ingested is the _ingested_at of the batch's rows, set by the first
	// Prepare and kept by every retry and slice, so that the same records
	// make the same rows: ReplicatedMergeTree drops a block it has seen
	// (insert deduplication), which makes a resend of an INSERT whose
	// outcome was unknown a no-op (docs/DESIGN.md, "Replicated tables").
	Ingested time.Time
	// Full says the batcher cut the batch at max_rows or max_bytes (not
	// at max_wait, a flush or a seal): more records were waiting, so its
	// INSERT may stay open for the next batch (INSERT streams).
	Full bool
}

// Good counts the items still to load (Pending).
func (b *Batch) Good() int {
	n := 0
	for i := range b.Items {
		if b.Items[i].Pending() {
			n++
		}
	}
	return n
}

// Slice returns the batch of items lo..hi-1, sharing their memory: marking
// an item of the slice failed marks it in b too.
func (b *Batch) Slice(lo, hi int) *Batch {
	s := &Batch{Pipeline: b.Pipeline, Topic: b.Topic, Partition: b.Partition, Epoch: b.Epoch, TopicID: b.TopicID, Items: b.Items[lo:hi:hi],
		Block: b.Block, Base: b.Base + lo, Ingested: b.Ingested}
	if hi > lo {
		s.First, s.Last = b.Items[lo].Offset(), b.Items[hi-1].Offset()
	}
	for i := range s.Items {
		s.Bytes += s.Items[i].Size()
	}
	return s
}

// SplitGood returns the index that splits b into two slices holding half of
// its good items each (the left one the smaller half): where a batch the
// server rejects is cut to isolate the rows it refuses. b must hold at
// least two good items.
func (b *Batch) SplitGood() int {
	half, seen := b.Good()/2, 0
	for i := range b.Items {
		if b.Items[i].Pending() {
			if seen == half {
				return i
			}
			seen++
		}
	}
	return len(b.Items)
}
