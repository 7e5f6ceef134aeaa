package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
)

// shapedSink wraps memSink with a writer that decides, per Send, whether
// the server refuses the prepared rows (refuse returns the error) and
// whether it stores them first (storeFirst: the table's parts were
// committed before a view failed; firstPart: the part of the first table
// partition was committed before the server failed on the next). It
// records the offsets and the time of every Send.
type shapedSink struct {
	*memSink
	refuse     func(rows []*record.Item) error
	storeFirst bool
	firstPart  bool

	mu    sync.Mutex
	sends [][]int64
	times []time.Time
}

func (s *shapedSink) sentAt() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.times)
}

func (s *shapedSink) NewWriter() Writer { return &shapedWriter{memWriter{s: s.memSink}, s} }

func (s *shapedSink) sent() [][]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sends)
}

type shapedWriter struct {
	memWriter
	sh *shapedSink
}

func (w *shapedWriter) Send(ctx context.Context, b *record.Batch) error {
	offs := make([]int64, len(w.rows))
	for i, it := range w.rows {
		offs[i] = it.Rec.Offset
	}
	w.sh.mu.Lock()
	w.sh.sends = append(w.sh.sends, offs)
	w.sh.times = append(w.sh.times, time.Now())
	w.sh.mu.Unlock()
	err := w.sh.refuse(w.rows)
	if err == nil {
		return w.memWriter.Send(ctx, b)
	}
	switch {
	case w.sh.storeFirst:
		w.s.mu.Lock()
		w.s.store(b.Topic, b.Partition, w.rows)
		w.s.mu.Unlock()
	case w.sh.firstPart:
		var part []*record.Item
		for _, it := range w.rows {
			if tablePartition(it.Rec.Offset) == tablePartition(w.rows[0].Rec.Offset) {
				part = append(part, it)
			}
		}
		w.s.mu.Lock()
		w.s.store(b.Topic, b.Partition, part)
		w.s.mu.Unlock()
	}
	return fmt.Errorf("sink: events insert: %w", err)
}

// tablePartition stands in for the table's PARTITION BY: 25 consecutive
// offsets per partition, as consecutive events share a month.
func tablePartition(offset int64) int64 { return offset / 25 }

// counterSum reads the sum of a counter vector's series.
func counterSum(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// A batch that touches more table partitions than one INSERT may write
// (ClickHouse's max_partitions_per_insert_block, error 252 "Too many
// partitions for single INSERT block") is loaded in halves, in offset
// order, until each INSERT passes: every row stored once, none
// dead-lettered, the batch committed.
func TestBatchOverThePartitionLimitIsLoadedInHalves(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(200, nil) // offsets 0..199: eight table partitions
	const limit = 2
	s := &shapedSink{memSink: newMemSink(), refuse: func(rows []*record.Item) error {
		parts := map[int64]bool{}
		for _, it := range rows {
			parts[tablePartition(it.Rec.Offset)] = true
		}
		if len(parts) > limit {
			return &clickhouse.Exception{Code: 252, Name: "DB::Exception", Message: fmt.Sprintf(
				"Too many partitions for single INSERT block (more than %d). The limit is controlled by 'max_partitions_per_insert_block' setting.", limit)}
		}
		return nil
	}}
	r := f.start("g_split", s, batch.Limits{MaxRows: 200, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond})
	waitFor(t, "commit at 200", 10*time.Second, func() bool { return f.committed("g_split")[0] == 200 })
	r.stop(t)

	if total, distinct := s.stats(); total != 200 || distinct != 200 {
		t.Fatalf("stored %d rows, %d distinct; want 200 and 200", total, distinct)
	}
	if n := f.endOffset("dlq", 0); n != 0 {
		t.Fatalf("%d dead letters; a batch split for its shape blames no row", n)
	}
	s.set(func(m *memSink) {
		if order := m.order["events/0"]; !slices.IsSorted(order) {
			t.Errorf("rows stored out of offset order: %v", order)
		}
	})
	sends := s.sent()
	if len(sends) < 2 || len(sends[0]) != 200 {
		t.Fatalf("sends %v: want the whole batch first, then pieces", sends)
	}
	refused, stored := 0, 0
	for _, offs := range sends {
		parts := map[int64]bool{}
		for _, o := range offs {
			parts[tablePartition(o)] = true
		}
		if len(parts) > limit {
			refused++
		} else {
			stored += len(offs)
		}
	}
	if refused == 0 || stored != 200 {
		t.Fatalf("%d sends refused, %d rows in passing sends; want some refused and every row sent once in a passing one: %v", refused, stored, sends)
	}
}

// A materialized view that rejects a row (throwIf, a BadData code) after
// the table stored the whole batch, as ClickHouse 18.16 does it: the split
// halves find their rows stored, so nothing is sent again and no record
// gets a dead letter, the rejected one included (it is a row of the
// table). The failure is counted as a view failure.
func TestRowStoredBeforeAViewFailedGetsNoLetter(t *testing.T) {
	f := newFixture(t, 1)
	f.produceN(200, nil)
	s := &shapedSink{memSink: newMemSink(), storeFirst: true, refuse: func(rows []*record.Item) error {
		for _, it := range rows {
			if string(it.Rec.Value) == "v=0-137" {
				return &clickhouse.Exception{Code: 395, Name: "DB::Exception",
					Message: "Value passed to 'throwIf' function is non zero: while pushing to view db.fragile_mv"}
			}
		}
		return nil
	}}
	r := f.start("g_view", s, batch.Limits{MaxRows: 200, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond})
	waitFor(t, "commit at 200", 10*time.Second, func() bool { return f.committed("g_view")[0] == 200 })
	r.stop(t)
	if total, distinct := s.stats(); total != 200 || distinct != 200 {
		t.Fatalf("stored %d rows, %d distinct; want 200 and 200 (no row sent again)", total, distinct)
	}
	if sends := s.sent(); len(sends) != 1 {
		t.Fatalf("%d sends, want 1: the halves of the refused batch are stored already", len(sends))
	}
	if n := f.endOffset("dlq", 0); n != 0 {
		letters := f.consumeAll(t, "dlq", int(n))
		var offs []string
		for _, l := range letters {
			offs = append(offs, string(l.Value))
		}
		t.Fatalf("dead letters for stored rows: %s", strings.Join(offs, ", "))
	}
	if v := counterSum(t, r.engine.m.ViewFailures); v != 1 {
		t.Fatalf("sluice_view_failures_total = %v, want 1", v)
	}
}
