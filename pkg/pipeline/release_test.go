package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/record"
)

// A columnar batch gives its records back to the in-flight budget once
// its rows are in its block, before its INSERT: the partitions fetch on
// while it loads. The whole topic is one batch here, held in its INSERT
// until the test has looked: the budget must then count only its records'
// framing (batch.RecordFraming), and the batch's items must hold no record.
func TestColumnarBatchGivesItsRecordsBackBeforeItsInsert(t *testing.T) {
	f := newFixture(t, 1)
	const n = 300
	recs, _, dec, ts, column := orderColumns(t, f, n)
	entered, proceed := make(chan *record.Batch, 1), make(chan struct{})
	s := &blockSink{memSink: newMemSink(), column: column}
	first := true
	s.onSendBatch = func(b *record.Batch) {
		if first {
			first = false
			entered <- b
			<-proceed
		}
	}
	one := batch.Limits{MaxRows: n, MaxBytes: 16 << 20, MaxWait: 2 * time.Second}
	r := f.startWith("g-release", s, one, func(o *Options) {
		o.Pipelines[0].Decoder = dec
		o.Pipelines[0].Transforms = ts
		o.InflightBytes = 16 << 20
	})
	var b *record.Batch
	select {
	case b = <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no INSERT within 20 s")
	}
	held, total, released := int64(0), int64(0), 0
	for _, r := range recs {
		total += int64(batch.Held(r))
	}
	for i := range b.Items {
		held += int64(b.Items[i].Size() + batch.RecordOverhead - batch.RecordFraming)
		if b.Items[i].Released() {
			released++
		}
	}
	if released != len(b.Items) {
		close(proceed)
		t.Fatalf("%d of the batch's %d items released at its INSERT, want all", released, len(b.Items))
	}
	// Records of a later batch, if the first was cut before all arrived,
	// are counted until they are loaded.
	waitFor(t, "the in-flight budget to count only the INSERT's framing and records not in it", 10*time.Second, func() bool {
		return r.engine.inflight.Load() == total-held
	})
	close(proceed)
	waitFor(t, "every order stored", 20*time.Second, func() bool { total, _ := s.stats(); return total >= n })
	waitFor(t, "the budget empty once all is committed", 10*time.Second, func() bool { return r.engine.inflight.Load() == 0 })
	r.stop(t)
	if c := f.committed("g-release"); c[0] != n {
		t.Fatalf("committed %v, want %d", c, n)
	}
}

// A row the server refuses for its content, found by bisecting a columnar
// batch whose records were released, gets a dead letter with its record's
// original key and value, read again from Kafka; a record that is gone
// from Kafka by then (deleted below the log start) gets a letter that
// says so, without key or value. Every other row is stored once.
func TestRowRefusedAfterItsRecordWasReleasedIsLetteredWithTheOriginal(t *testing.T) {
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprintf("gone=%v", gone), func(t *testing.T) {
			f := newFixture(t, 1)
			const n, poison = 200, 137
			recs, _, dec, ts, column := orderColumns(t, f, n)
			s := &blockSink{memSink: newMemSink(), column: column}
			deleted := false
			s.refuse = func(b *record.Batch, rows []*record.Item) error {
				for _, it := range rows {
					if it.Offset() != poison {
						continue
					}
					if !it.Released() {
						t.Errorf("offset %d holds its record at the INSERT; want it released", poison)
					}
					if gone && !deleted {
						deleted = true
						if _, err := f.adm.DeleteRecords(context.Background(), kadm.Offsets{f.topic: {0: kadm.Offset{Topic: f.topic, Partition: 0, At: n}}}); err != nil {
							t.Errorf("delete records: %v", err)
						}
					}
					return fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 53, Message: "Type mismatch in column total"})
				}
				return nil
			}
			r := f.startWith("g-refused", s, small, func(o *Options) {
				o.Pipelines[0].Decoder = dec
				o.Pipelines[0].Transforms = ts
			})
			waitFor(t, "every offset committed", 20*time.Second, func() bool { return f.committed("g-refused")[0] == n })
			r.stop(t)
			if total, distinct := s.stats(); total != n-1 || distinct != n-1 {
				t.Fatalf("%d rows stored, %d distinct; want %d of each", total, distinct, n-1)
			}
			l := f.letters(1)[0]
			if off := dlq.Header(l, dlq.HeaderOffset); off != fmt.Sprint(poison) || dlq.Header(l, dlq.HeaderStage) != "load" {
				t.Fatalf("letter for offset %s at stage %s, want %d at load", off, dlq.Header(l, dlq.HeaderStage), poison)
			}
			reason := dlq.Header(l, dlq.HeaderReason)
			if gone {
				if len(l.Value) != 0 || len(l.Key) != 0 || !strings.Contains(reason, "gone from Kafka") {
					t.Fatalf("letter of a record gone from Kafka: %d key bytes, %d value bytes, reason %q; want none, and a reason that says so", len(l.Key), len(l.Value), reason)
				}
				return
			}
			if string(l.Value) != string(recs[poison].Value) || string(l.Key) != string(recs[poison].Key) || !strings.Contains(reason, "Type mismatch") {
				t.Fatalf("letter does not carry the original record (value %d bytes, want %d) or the server's reason (%q)", len(l.Value), len(recs[poison].Value), reason)
			}
		})
	}
}

// A batch waiting out a failed INSERT gives its processing slot to other
// partitions; the records it released are counted in the in-flight budget
// again meanwhile, since the memory bound counts released records only
// for batches holding a slot (config.MemoryBound). Once it is loaded and
// committed the budget is empty.
func TestBatchWaitingToRetryCountsItsReleasedRecordsAgain(t *testing.T) {
	f := newFixture(t, 1)
	const n = 300
	recs, _, dec, ts, column := orderColumns(t, f, n)
	total := int64(0)
	for _, r := range recs {
		total += int64(batch.Held(r))
	}
	refused := make(chan struct{})
	s := &blockSink{memSink: newMemSink(), column: column}
	first := true
	s.refuse = func(b *record.Batch, rows []*record.Item) error {
		if first {
			first = false
			close(refused)
			return errors.New("write: connection reset by peer")
		}
		return nil
	}
	one := batch.Limits{MaxRows: n, MaxBytes: 16 << 20, MaxWait: 2 * time.Second}
	r := f.startWith("g-wait", s, one, func(o *Options) {
		o.Pipelines[0].Decoder = dec
		o.Pipelines[0].Transforms = ts
		o.InflightBytes = 16 << 20
		o.BackoffMin, o.BackoffMax = 4*time.Second, 4*time.Second
	})
	select {
	case <-refused:
	case <-time.After(20 * time.Second):
		t.Fatal("no INSERT within 20 s")
	}
	waitFor(t, "the budget to count the waiting batch's records again", 3*time.Second, func() bool {
		return r.engine.inflight.Load() == total
	})
	waitFor(t, "every order stored", 20*time.Second, func() bool { total, _ := s.stats(); return total >= n })
	waitFor(t, "the budget empty once all is committed", 10*time.Second, func() bool { return r.engine.inflight.Load() == 0 })
	r.stop(t)
	if c := f.committed("g-wait"); c[0] != n {
		t.Fatalf("committed %v, want %d", c, n)
	}
	if total, distinct := s.stats(); total != n || distinct != n {
		t.Fatalf("%d rows stored, %d distinct; want %d of each", total, distinct, n)
	}
}

// Records of a topic's earlier incarnation still waiting in a worker when
// the one created since arrives keep their topic ID: the batches holding
// them are cut and stamped with it, and the new records start a batch of
// their own, stamped with the new ID when processed. Stamped with the new
// one, their stored-offsets read and their dead letters' originals would
// be the other incarnation's.
func TestRecordsOfAnEarlierIncarnationKeepItsTopicID(t *testing.T) {
	e, err := New(Options{Pipelines: []*Pipeline{{Name: "events", Topic: "t", Decoder: textDecoder{}, Sink: newMemSink(),
		Limits: batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: time.Hour}}}, InflightBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(e, e.opts.Pipelines[0], 0)
	recs := func(n int) []*kgo.Record {
		var out []*kgo.Record
		for o := 0; o < n; o++ {
			out = append(out, &kgo.Record{Topic: "t", Offset: int64(o), Value: []byte("v")})
		}
		return out
	}
	now := time.Now()
	w.enqueue(recs(5), "old-id", now)
	w.drain()
	w.enqueue(recs(2), "old-id", now)
	w.enqueue(recs(3), "new-id", now)
	w.drain()
	old, next := w.batcher.Flush(), w.batcher.Flush()
	if old == nil || next == nil || w.batcher.Flush() != nil {
		t.Fatalf("a first batch %v, a second %v, no third: want all three true", old != nil, next != nil)
	}
	if len(old.Items) != 7 || old.TopicID != "old-id" {
		t.Errorf("first batch: %d records, topic ID %q; want 7 of old-id", len(old.Items), old.TopicID)
	}
	if len(next.Items) != 3 || next.TopicID != "" || w.topicID != "new-id" {
		t.Errorf("second batch: %d records, topic ID %q, worker's %q; want 3 stamped later with new-id", len(next.Items), next.TopicID, w.topicID)
	}
}
