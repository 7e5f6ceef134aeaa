// Package dlq sends the records Sluice cannot load to the dead-letter topic.
//
// Place in the flow: after transforms and conversion, before the INSERT and
// the commit. A dead letter keeps the original key and value bytes unchanged
// and carries headers naming the pipeline, the stage that failed (decode,
// transform, load), the reason, and the source topic, partition and offset.
// A batch's offsets are committed only after its dead letters are
// acknowledged, so produced = loaded + dead-lettered holds across crashes.
//
// Exactly once in the dead-letter topic: all dead letters of one source
// partition go to one dead-letter partition (chosen by hashing the source
// topic and partition). With each offset commit the worker stores, in the
// commit's metadata, the dead-letter offset after its last letter. A new
// owner of the partition reads the dead-letter partition from there (Seen)
// and does not produce again the letters a previous owner produced before
// crashing between its dead letters and its commit.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/record"
)

// Header names on every dead letter.
const (
	HeaderPipeline  = "sluice.pipeline"
	HeaderStage     = "sluice.stage"
	HeaderReason    = "sluice.reason"
	HeaderTopic     = "sluice.source.topic"
	HeaderPartition = "sluice.source.partition"
	HeaderOffset    = "sluice.source.offset"
)

// Producer is the part of *kgo.Client the writer needs.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// Writer produces dead letters. Safe for concurrent use.
type Writer struct {
	p       Producer
	topic   string
	brokers []string
	opts    []kgo.Opt
}

// New returns a writer to topic. brokers and opts (e.g. TLS) serve the
// short-lived readers of Seen.
func New(p Producer, topic string, brokers []string, opts ...kgo.Opt) *Writer {
	return &Writer{p: p, topic: topic, brokers: brokers, opts: opts}
}

// Topic is the dead-letter topic.
func (w *Writer) Topic() string { return w.topic }

// Send produces one dead letter per failed item of the batch, except those
// skip says are already in the topic, and waits for every acknowledgement.
// It returns the letters produced per stage and the dead-letter offset after
// the last one (-1 when none was produced). An error means some may not be
// stored, and the batch must not be committed.
func (w *Writer) Send(ctx context.Context, b *record.Batch, skip func(offset int64) bool) (map[record.Stage]int, int64, error) {
	counts, next := map[record.Stage]int{}, int64(-1)
	var recs []*kgo.Record
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed == nil || (skip != nil && skip(it.Rec.Offset)) {
			continue
		}
		recs = append(recs, Letter(w.topic, b.Pipeline, it))
		counts[it.Failed.Stage]++
	}
	if len(recs) == 0 {
		return counts, next, nil
	}
	res := w.p.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return nil, -1, fmt.Errorf("dlq: %s[%d] %d..%d: produce %d dead letters to %s: %w",
			b.Topic, b.Partition, b.First, b.Last, len(recs), w.topic, err)
	}
	for _, r := range res {
		next = max(next, r.Record.Offset+1)
	}
	return counts, next, nil
}

// Letter builds the dead letter of a failed item.
func Letter(topic, pipeline string, it *record.Item) *kgo.Record {
	src := it.Rec
	return &kgo.Record{
		Topic: topic,
		Key:   src.Key,
		Value: src.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderPipeline, Value: []byte(pipeline)},
			{Key: HeaderStage, Value: []byte(it.Failed.Stage)},
			{Key: HeaderReason, Value: []byte(it.Failed.Reason)},
			{Key: HeaderTopic, Value: []byte(src.Topic)},
			{Key: HeaderPartition, Value: []byte(strconv.FormatInt(int64(src.Partition), 10))},
			{Key: HeaderOffset, Value: []byte(strconv.FormatInt(src.Offset, 10))},
		},
	}
}

// Header returns the value of the named header of a dead letter.
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Partitioner sends every dead letter of one source partition to the same
// dead-letter partition; other records keep franz-go's default placement.
// Use it as the producing client's kgo.RecordPartitioner.
func Partitioner(dlqTopic string) kgo.Partitioner {
	return partitioner{topic: dlqTopic, other: kgo.StickyKeyPartitioner(nil)}
}

type partitioner struct {
	topic string
	other kgo.Partitioner
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t != p.topic {
		return p.other.ForTopic(t)
	}
	return sourcePartitioner{}
}

type sourcePartitioner struct{}

func (sourcePartitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (sourcePartitioner) Partition(r *kgo.Record, n int) int {
	return PartitionFor(Header(r, HeaderTopic), Header(r, HeaderPartition), n)
}

// PartitionFor is the dead-letter partition of a source partition when the
// dead-letter topic has n partitions.
func PartitionFor(topic, partition string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write([]byte(partition))
	return int(h.Sum32() % uint32(n))
}

// MetadataPrefix marks Sluice's part of an offset commit's metadata.
const MetadataPrefix = "sluice:dlq="

// Metadata encodes the dead-letter offset to store with a commit.
func Metadata(next int64) string { return MetadataPrefix + strconv.FormatInt(next, 10) }

// ParseMetadata reads what Metadata wrote; 0 when absent or foreign.
func ParseMetadata(s string) int64 {
	if !strings.HasPrefix(s, MetadataPrefix) {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(s, MetadataPrefix), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Resume finds where a newly assigned source partition stands with its dead
// letters: it reads the group's committed metadata for the partition, then
// the partition's dead-letter partition from the offset stored there to its
// end, and returns the source offsets (at or above the committed offset)
// that already have a dead letter, plus the dead-letter offset to store with
// the next commit.
func (w *Writer) Resume(ctx context.Context, group, topic string, partition int32) (seen map[int64]bool, next int64, err error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(w.brokers...)}, w.opts...)...)
	if err != nil {
		return nil, 0, fmt.Errorf("dlq: resume %s[%d]: %w", topic, partition, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed := int64(0)
	from := int64(0)
	offs, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		if o, ok := offs.Lookup(topic, partition); ok && o.Err == nil {
			committed = o.At
			from = ParseMetadata(o.Metadata)
		}
	} else if !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, 0, fmt.Errorf("dlq: resume %s[%d]: committed offsets of %s: %w", topic, partition, group, err)
	}
	topics, err := adm.ListTopics(ctx, w.topic)
	if err != nil {
		return nil, 0, fmt.Errorf("dlq: resume: describe %s: %w", w.topic, err)
	}
	td, ok := topics[w.topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return nil, 0, fmt.Errorf("dlq: dead-letter topic %s does not exist (create it, or enable auto-creation)", w.topic)
	}
	dp := int32(PartitionFor(topic, strconv.FormatInt(int64(partition), 10), len(td.Partitions)))
	ends, err := adm.ListEndOffsets(ctx, w.topic)
	if err != nil {
		return nil, 0, fmt.Errorf("dlq: resume: end offsets of %s: %w", w.topic, err)
	}
	end := int64(0)
	if lo, ok := ends.Lookup(w.topic, dp); ok && lo.Err == nil {
		end = lo.Offset
	}
	seen = map[int64]bool{}
	if from >= end {
		return seen, max(from, end), nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{w.topic: {dp: kgo.NewOffset().At(from)}})
	src := strconv.FormatInt(int64(partition), 10)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for pos := from; pos < end; {
		fs := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("dlq: resume: read %s[%d] %d..%d: %w", w.topic, dp, from, end, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos = max(pos, r.Offset+1)
			if Header(r, HeaderTopic) != topic || Header(r, HeaderPartition) != src {
				return
			}
			if off, err := strconv.ParseInt(Header(r, HeaderOffset), 10, 64); err == nil && off >= committed {
				seen[off] = true
			}
		})
	}
	return seen, end, nil
}
