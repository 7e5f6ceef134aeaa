// Package dlq sends the records Sluice cannot load to the dead-letter topic.
//
// Place in the flow: after the sink, before the commit. A dead letter keeps
// the original key and value bytes unchanged and carries headers naming the
// pipeline, the stage that failed (decode, transform, load), the reason,
// and the source topic, partition and offset. A batch's offsets are
// committed only after its dead letters are acknowledged, so produced =
// loaded + dead-lettered holds across crashes.
package dlq

import (
	"context"
	"fmt"
	"strconv"

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
	p     Producer
	topic string
}

// New returns a writer to topic.
func New(p Producer, topic string) *Writer { return &Writer{p: p, topic: topic} }

// Topic is the dead-letter topic.
func (w *Writer) Topic() string { return w.topic }

// Send produces one dead letter per failed item of the batch and waits for
// all acknowledgements. It returns how many it sent per stage; an error
// means some may not be stored, and the batch must not be committed.
func (w *Writer) Send(ctx context.Context, b *record.Batch) (map[record.Stage]int, error) {
	var recs []*kgo.Record
	counts := map[record.Stage]int{}
	for i := range b.Items {
		it := &b.Items[i]
		if it.Failed == nil {
			continue
		}
		recs = append(recs, Letter(w.topic, b.Pipeline, it))
		counts[it.Failed.Stage]++
	}
	if len(recs) == 0 {
		return counts, nil
	}
	if err := w.p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, fmt.Errorf("dlq: %s[%d] %d..%d: produce %d dead letters to %s: %w",
			b.Topic, b.Partition, b.First, b.Last, len(recs), w.topic, err)
	}
	return counts, nil
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
