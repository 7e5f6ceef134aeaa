// Package batch cuts one partition's stream of records into batches.
//
// A Batcher belongs to one partition worker (it is not safe for concurrent
// use). Records are added in offset order; a batch is ready when the first
// of its limits is reached: max_rows records, max_bytes of key+value bytes,
// or max_wait since its first record arrived. A record that would push a
// non-empty batch past max_bytes starts the next batch instead, so a batch
// exceeds max_bytes only when a single record does.
//
// A partition's first batch is cut early, by a share of max_wait fixed by
// the partition's number (phase): partitions assigned together would
// otherwise open their first batches together and, under a steady flow,
// cut every batch at the same moments ever after, all queueing for the
// processing slots at once (make bench case f: a wait of up to 600 ms for
// a slot in each round). Spread, each finds a slot free.
//
// The limits may change between batches (SetLimits): the partition's worker
// lowers them while ClickHouse is short of memory for its INSERTs and
// stretches max_wait while the table has too many parts (see
// pkg/pipeline/adapt.go). Batches already cut keep their size.
package batch

import (
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/record"
)

// Limits bound one batch.
type Limits struct {
	MaxRows  int
	MaxBytes int
	MaxWait  time.Duration
}

// Batcher accumulates the records of one partition.
type Batcher struct {
	pipeline  string
	topic     string
	partition int32
	limits    Limits

	cur *record.Batch
	// opened is when the open batch's first record arrived, deadline
	// when its max_wait expires (opened + MaxWait, less early's share).
	opened   time.Time
	deadline time.Time
	// early is the share of max_wait the open batch is cut before it
	// expires: the partition's phase until its first batch is cut, 0
	// after.
	early float64
	ready []*record.Batch
	// spare is a drained batch whose Items slice is reused, so a steady
	// stream does not allocate a new slice per batch.
	spare []record.Item
}

// New returns a batcher for one partition.
func New(pipeline, topic string, partition int32, l Limits) *Batcher {
	return &Batcher{pipeline: pipeline, topic: topic, partition: partition, limits: l, early: phase(partition)}
}

// phase is partition p's share of max_wait its first batch is cut early
// by, in [0, 1): the golden-ratio sequence, so that partitions are spread
// over the interval (partitions 0 to n-1 leave no gap wider than 1.9/n of
// it) and partition 0's first batch waits the whole max_wait.
func phase(p int32) float64 {
	x := float64(p) * 0.6180339887498949
	return x - math.Floor(x)
}

// waitEnd is when the open batch's max_wait expires.
func (b *Batcher) waitEnd() time.Time {
	return b.opened.Add(b.limits.MaxWait - time.Duration(float64(b.limits.MaxWait)*b.early))
}

// Size is the bytes a record counts for against max_bytes.
func Size(r *kgo.Record) int { return len(r.Key) + len(r.Value) }

// RecordOverhead is what a fetched record occupies beyond its key and
// value (its kgo.Record and its share of the decompressed fetch buffer):
// the in-flight budget counts Held, so inflight_bytes bounds the memory
// the records held take (docs/DESIGN.md, "Memory bound").
const RecordOverhead = 192

// RecordFraming is the part of RecordOverhead that lies in the fetch
// buffer beside a record's key and value: Kafka's v2 record framing
// (length, attributes, timestamp and offset deltas, key and value lengths,
// header count, all varints), at most 36 B. A columnar batch that gives
// its records back to the budget once its rows are in its block keeps
// this much counted per record until its commit, since the block's strings
// keep the buffer alive (pkg/pipeline, releaseRecords).
const RecordFraming = 40

// Held is what a record counts against the in-flight budget.
func Held(r *kgo.Record) int { return Size(r) + RecordOverhead }

// Add appends r (records must come in offset order). now is the arrival
// time, which starts the max_wait clock of a new batch.
func (b *Batcher) Add(r *kgo.Record, now time.Time) {
	sz := Size(r)
	if b.cur != nil && b.cur.Bytes+sz > b.limits.MaxBytes {
		b.cur.Full = true
		b.cut()
	}
	if b.cur == nil {
		b.cur = &record.Batch{
			Pipeline: b.pipeline, Topic: b.topic, Partition: b.partition,
			First: r.Offset, Items: b.spare[:0],
		}
		b.spare = nil
		b.opened = now
		b.deadline = b.waitEnd()
	}
	b.cur.Items = append(b.cur.Items, record.Item{Rec: r})
	b.cur.Last = r.Offset
	b.cur.Epoch = r.LeaderEpoch
	b.cur.Bytes += sz
	if len(b.cur.Items) >= b.limits.MaxRows || b.cur.Bytes >= b.limits.MaxBytes {
		b.cur.Full = true
		b.cut()
	}
}

func (b *Batcher) cut() {
	b.ready = append(b.ready, b.cur)
	b.cur = nil
	b.opened, b.deadline, b.early = time.Time{}, time.Time{}, 0
}

// Seal cuts the open batch and stamps topicID on every batch held that
// has none: the records so far belong to that incarnation of the topic,
// and the next ones (of another, created again since) start a batch of
// their own.
func (b *Batcher) Seal(topicID string) {
	if b.cur != nil {
		b.cut()
	}
	for _, r := range b.ready {
		if r.TopicID == "" {
			r.TopicID = topicID
		}
	}
}

// Limits are the limits the next batches are cut at.
func (b *Batcher) Limits() Limits { return b.limits }

// SetLimits changes the limits from now on. The open batch is cut at once
// when it already reached the new max_rows or max_bytes, and its max_wait
// counts from its first record's arrival under the new value; batches
// already cut (Ready) keep their size.
func (b *Batcher) SetLimits(l Limits) {
	b.limits = l
	if b.cur == nil {
		return
	}
	if len(b.cur.Items) >= l.MaxRows || b.cur.Bytes >= l.MaxBytes {
		b.cut()
		return
	}
	b.deadline = b.waitEnd()
}

// Ready returns the next batch that reached a limit (by rows or bytes, or by
// max_wait at now), or nil. Batches come out in offset order.
func (b *Batcher) Ready(now time.Time) *record.Batch {
	if len(b.ready) == 0 && b.cur != nil && !now.Before(b.deadline) {
		b.cut()
	}
	if len(b.ready) == 0 {
		return nil
	}
	out := b.ready[0]
	b.ready = b.ready[1:]
	return out
}

// Flush returns the next batch whether or not it reached a limit (used on
// revoke and shutdown), or nil when nothing is buffered.
func (b *Batcher) Flush() *record.Batch {
	if len(b.ready) == 0 && b.cur != nil {
		b.cut()
	}
	return b.Ready(time.Time{})
}

// Deadline is when the open batch's max_wait expires; zero when no batch
// is open or one is already ready.
func (b *Batcher) Deadline() time.Time {
	if len(b.ready) > 0 {
		return time.Time{}
	}
	return b.deadline
}

// Pending counts the buffered records not yet returned.
func (b *Batcher) Pending() int {
	n := 0
	for _, r := range b.ready {
		n += len(r.Items)
	}
	if b.cur != nil {
		n += len(b.cur.Items)
	}
	return n
}

// Oldest is the first buffered record not yet returned (by Ready or
// Flush), nil when none is: the oldest record of the partition that still
// waits to be loaded once the batches returned are.
func (b *Batcher) Oldest() *kgo.Record {
	if len(b.ready) > 0 {
		return b.ready[0].Items[0].Rec
	}
	if b.cur != nil {
		return b.cur.Items[0].Rec
	}
	return nil
}

// Recycle hands back a batch that was loaded and committed so its Items
// slice serves the next batch. The batch must not be used afterwards.
func (b *Batcher) Recycle(done *record.Batch) {
	clear(done.Items) // drop references to records and rows
	b.spare = done.Items[:0]
	done.Items = nil
}

// Reset drops everything buffered (partition lost).
func (b *Batcher) Reset() {
	b.cur, b.ready, b.opened, b.deadline = nil, nil, time.Time{}, time.Time{}
}
