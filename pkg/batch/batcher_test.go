package batch_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/batch"
	"github.com/sluice-etl/sluice/pkg/record"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// rec is a record of size bytes (key+value) at offset off, epoch epoch.
func rec(off int64, size int, epoch int32) *kgo.Record {
	key := []byte("k")
	if size == 0 {
		key = nil
	}
	val := []byte(strings.Repeat("v", max(size-len(key), 0)))
	return &kgo.Record{Topic: "orders", Partition: 0, Offset: off, LeaderEpoch: epoch, Key: key, Value: val}
}

// shape is what a batch must look like.
type shape struct {
	first, last int64
	rows, bytes int
	epoch       int32
}

func shapeOf(b *record.Batch) shape {
	return shape{first: b.First, last: b.Last, rows: len(b.Items), bytes: b.Bytes, epoch: b.Epoch}
}

// checkBatch verifies the batch's coordinates and that its items are the
// records First..Last in offset order.
func checkBatch(t *testing.T, b *record.Batch, want shape) {
	t.Helper()
	if b == nil {
		t.Fatalf("got no batch, want %+v", want)
	}
	if got := shapeOf(b); got != want {
		t.Errorf("batch %+v, want %+v", got, want)
	}
	if b.Pipeline != "orders_pipe" || b.Topic != "orders" || b.Partition != 0 {
		t.Errorf("batch source %s/%s/%d, want orders_pipe/orders/0", b.Pipeline, b.Topic, b.Partition)
	}
	sum := 0
	for i, it := range b.Items {
		if want := b.First + int64(i); it.Rec.Offset != want {
			t.Errorf("item %d has offset %d, want %d", i, it.Rec.Offset, want)
		}
		if it.Row != nil || it.Failed != nil {
			t.Errorf("item %d is not fresh: %+v", i, it)
		}
		sum += batch.Size(it.Rec)
	}
	if sum != b.Bytes {
		t.Errorf("Bytes = %d, items sum to %d", b.Bytes, sum)
	}
}

// newBatcher is a batcher of partition 0, whose first batch waits the
// whole max_wait (TestBatcherStaggersFirstBatches).
func newBatcher(l batch.Limits) *batch.Batcher {
	return batch.New("orders_pipe", "orders", 0, l)
}

// TestBatcherStaggersFirstBatches: the first batch of each of 12
// partitions opened at the same instant is cut at its own moment within
// max_wait, no two closer than 1/60 of it and no gap wider than a sixth;
// each partition's second batch waits the whole max_wait again, and so
// does the first when max_wait changes while it is open (the same share).
func TestBatcherStaggersFirstBatches(t *testing.T) {
	const wait = time.Second
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var cuts []time.Duration
	for p := int32(0); p < 12; p++ {
		b := batch.New("orders_pipe", "orders", p, batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: wait})
		b.Add(rec(0, 2, 1), t0)
		d := b.Deadline().Sub(t0)
		if d <= 0 || d > wait {
			t.Fatalf("partition %d: first batch cut %v after its first record, want within (0, %v]", p, d, wait)
		}
		if got := b.Ready(t0.Add(d - time.Nanosecond)); got != nil {
			t.Fatalf("partition %d: batch ready before its deadline", p)
		}
		if got := b.Ready(t0.Add(d)); got == nil {
			t.Fatalf("partition %d: no batch at its deadline %v", p, d)
		}
		t1 := t0.Add(d)
		b.Add(rec(1, 2, 1), t1)
		if d2 := b.Deadline().Sub(t1); d2 != wait {
			t.Errorf("partition %d: second batch cut %v after its first record, want %v", p, d2, wait)
		}
		cuts = append(cuts, d)

		// max_wait doubled while the first batch is open: the same share
		// of the new value.
		c := batch.New("orders_pipe", "orders", p, batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: wait})
		c.Add(rec(0, 2, 1), t0)
		c.SetLimits(batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: 2 * wait})
		if d2 := c.Deadline().Sub(t0); d2 < 2*d-time.Microsecond || d2 > 2*d+time.Microsecond {
			t.Errorf("partition %d: first batch cut %v after SetLimits doubled max_wait, want %v", p, d2, 2*d)
		}
	}
	if cuts[0] != wait {
		t.Errorf("partition 0's first batch cut after %v, want the whole %v", cuts[0], wait)
	}
	slices.Sort(cuts)
	for i := 1; i < len(cuts); i++ {
		if gap := cuts[i] - cuts[i-1]; gap < wait/60 || gap > wait/6 {
			t.Errorf("first cuts %v: gap %v between neighbours, want within [%v, %v]", cuts, gap, wait/60, wait/6)
		}
	}
}

func TestSize(t *testing.T) {
	r := &kgo.Record{Key: []byte("abc"), Value: []byte("12345"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("ignored")}}}
	if got := batch.Size(r); got != 8 {
		t.Errorf("Size = %d, want 8 (key+value, headers not counted)", got)
	}
	if got := batch.Size(&kgo.Record{}); got != 0 {
		t.Errorf("Size(empty) = %d, want 0", got)
	}
}

// TestBatcherLimits feeds records of given sizes (offsets 0, 1, ...) all at
// t0 and checks the batches Ready returns before max_wait and what is left.
func TestBatcherLimits(t *testing.T) {
	tests := []struct {
		name    string
		limits  batch.Limits
		sizes   []int
		ready   []shape // batches cut by rows or bytes
		pending int     // records left in the open batch
	}{
		{
			name:    "by rows",
			limits:  batch.Limits{MaxRows: 3, MaxBytes: 1 << 20, MaxWait: time.Second},
			sizes:   []int{10, 10, 10, 10, 10, 10, 10},
			ready:   []shape{{0, 2, 3, 30, 1}, {3, 5, 3, 30, 1}},
			pending: 1,
		},
		{
			name:    "by bytes, exactly full",
			limits:  batch.Limits{MaxRows: 100, MaxBytes: 30, MaxWait: time.Second},
			sizes:   []int{10, 10, 10, 10},
			ready:   []shape{{0, 2, 3, 30, 1}},
			pending: 1,
		},
		{
			// 25 + 10 would exceed 30: the second record starts the next
			// batch instead, so no batch exceeds max_bytes.
			name:    "record that would overflow starts the next batch",
			limits:  batch.Limits{MaxRows: 100, MaxBytes: 30, MaxWait: time.Second},
			sizes:   []int{25, 10, 10, 5, 6},
			ready:   []shape{{0, 0, 1, 25, 1}, {1, 3, 3, 25, 1}},
			pending: 1,
		},
		{
			// The big record closes the open batch and forms its own.
			name:    "single record bigger than max_bytes",
			limits:  batch.Limits{MaxRows: 100, MaxBytes: 30, MaxWait: time.Second},
			sizes:   []int{10, 100, 10},
			ready:   []shape{{0, 0, 1, 10, 1}, {1, 1, 1, 100, 1}},
			pending: 1,
		},
		{
			name:    "oversized record first",
			limits:  batch.Limits{MaxRows: 100, MaxBytes: 30, MaxWait: time.Second},
			sizes:   []int{31, 31},
			ready:   []shape{{0, 0, 1, 31, 1}, {1, 1, 1, 31, 1}},
			pending: 0,
		},
		{
			name:    "one row per batch",
			limits:  batch.Limits{MaxRows: 1, MaxBytes: 1 << 20, MaxWait: time.Second},
			sizes:   []int{5, 6, 7},
			ready:   []shape{{0, 0, 1, 5, 1}, {1, 1, 1, 6, 1}, {2, 2, 1, 7, 1}},
			pending: 0,
		},
		{
			name:    "rows before bytes",
			limits:  batch.Limits{MaxRows: 2, MaxBytes: 100, MaxWait: time.Second},
			sizes:   []int{40, 40, 40, 40, 40},
			ready:   []shape{{0, 1, 2, 80, 1}, {2, 3, 2, 80, 1}},
			pending: 1,
		},
		{
			name:    "nothing reaches a limit",
			limits:  batch.Limits{MaxRows: 10, MaxBytes: 100, MaxWait: time.Second},
			sizes:   []int{1, 2, 3},
			pending: 3,
		},
		{
			// Empty records cost no bytes and are cut only by rows.
			name:    "empty records",
			limits:  batch.Limits{MaxRows: 2, MaxBytes: 1, MaxWait: time.Second},
			sizes:   []int{0, 0, 0},
			ready:   []shape{{0, 1, 2, 0, 1}},
			pending: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatcher(tt.limits)
			for i, sz := range tt.sizes {
				b.Add(rec(int64(i), sz, 1), t0)
			}
			if got, want := b.Pending(), len(tt.sizes); got != want {
				t.Errorf("Pending after adds = %d, want %d", got, want)
			}
			before := t0.Add(tt.limits.MaxWait - time.Nanosecond)
			for _, want := range tt.ready {
				checkBatch(t, b.Ready(before), want)
			}
			if extra := b.Ready(before); extra != nil {
				t.Fatalf("unexpected ready batch %+v", shapeOf(extra))
			}
			if got := b.Pending(); got != tt.pending {
				t.Errorf("Pending after Ready = %d, want %d", got, tt.pending)
			}
			// Whatever is left is one open batch, and it holds the tail.
			if tt.pending > 0 {
				f := b.Flush()
				n := len(tt.sizes)
				bytes := 0
				for _, sz := range tt.sizes[n-tt.pending:] {
					bytes += sz
				}
				checkBatch(t, f, shape{int64(n - tt.pending), int64(n - 1), tt.pending, bytes, 1})
			}
			if f := b.Flush(); f != nil {
				t.Errorf("Flush on empty batcher = %+v, want nil", shapeOf(f))
			}
			if b.Pending() != 0 {
				t.Errorf("Pending at end = %d", b.Pending())
			}
		})
	}
}

func TestBatcherMaxWait(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: time.Second})

	if d := b.Deadline(); !d.IsZero() {
		t.Errorf("Deadline with nothing buffered = %v, want zero", d)
	}
	if r := b.Ready(t0.Add(time.Hour)); r != nil {
		t.Errorf("Ready with nothing buffered = %+v", shapeOf(r))
	}

	// The clock starts at the first record; later records do not move it.
	b.Add(rec(10, 5, 7), t0)
	b.Add(rec(11, 5, 7), t0.Add(600*time.Millisecond))
	b.Add(rec(12, 5, 8), t0.Add(900*time.Millisecond))
	deadline := t0.Add(time.Second)
	if d := b.Deadline(); !d.Equal(deadline) {
		t.Errorf("Deadline = %v, want %v (first record + max_wait)", d, deadline)
	}
	if r := b.Ready(deadline.Add(-time.Nanosecond)); r != nil {
		t.Fatalf("Ready before the deadline = %+v, want nil", shapeOf(r))
	}
	if b.Pending() != 3 {
		t.Errorf("Pending = %d, want 3", b.Pending())
	}
	// Epoch is the last record's leader epoch.
	checkBatch(t, b.Ready(deadline), shape{10, 12, 3, 15, 8})
	if d := b.Deadline(); !d.IsZero() {
		t.Errorf("Deadline after the batch left = %v, want zero", d)
	}
	if b.Pending() != 0 {
		t.Errorf("Pending = %d, want 0", b.Pending())
	}

	// The next record opens a new batch with its own clock.
	t1 := t0.Add(5 * time.Second)
	b.Add(rec(13, 5, 8), t1)
	if d := b.Deadline(); !d.Equal(t1.Add(time.Second)) {
		t.Errorf("Deadline of the second batch = %v, want %v", d, t1.Add(time.Second))
	}
	if r := b.Ready(t1.Add(999 * time.Millisecond)); r != nil {
		t.Fatalf("Ready before the second deadline = %+v", shapeOf(r))
	}
	checkBatch(t, b.Ready(t1.Add(time.Hour)), shape{13, 13, 1, 5, 8})
}

// TestBatcherDeadlineWhileReady: while a batch cut by size waits to be taken,
// Deadline is zero (the caller must not sleep), and the open batch behind it
// keeps its own clock.
func TestBatcherDeadlineWhileReady(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: time.Second})
	b.Add(rec(0, 1, 1), t0)
	b.Add(rec(1, 1, 1), t0) // cut by rows
	b.Add(rec(2, 1, 1), t0.Add(300*time.Millisecond))
	if d := b.Deadline(); !d.IsZero() {
		t.Errorf("Deadline with a ready batch = %v, want zero", d)
	}
	checkBatch(t, b.Ready(t0), shape{0, 1, 2, 2, 1})
	if d, want := b.Deadline(), t0.Add(1300*time.Millisecond); !d.Equal(want) {
		t.Errorf("Deadline of the open batch = %v, want %v", d, want)
	}
	if r := b.Ready(t0.Add(time.Second)); r != nil {
		t.Errorf("open batch ready at the first batch's deadline: %+v", shapeOf(r))
	}
	checkBatch(t, b.Ready(t0.Add(1300*time.Millisecond)), shape{2, 2, 1, 1, 1})
}

// TestBatcherFlush: on revoke, Flush hands out every buffered record, the
// batches already cut first, in offset order, without waiting for max_wait.
func TestBatcherFlush(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 3, MaxBytes: 1 << 20, MaxWait: time.Hour})
	for off := int64(100); off < 108; off++ {
		b.Add(rec(off, 4, int32(off-100)), t0)
	}
	want := []shape{
		{100, 102, 3, 12, 2},
		{103, 105, 3, 12, 5},
		{106, 107, 2, 8, 7},
	}
	next := int64(100)
	for i, w := range want {
		f := b.Flush()
		checkBatch(t, f, w)
		if f != nil && f.First != next {
			t.Errorf("batch %d starts at %d, want %d (gap or reorder)", i, f.First, next)
		}
		if f != nil {
			next = f.Last + 1
		}
		if got, want := b.Pending(), 8-int(next-100); got != want {
			t.Errorf("Pending after batch %d = %d, want %d", i, got, want)
		}
	}
	if f := b.Flush(); f != nil {
		t.Errorf("extra batch %+v", shapeOf(f))
	}
	if d := b.Deadline(); !d.IsZero() {
		t.Errorf("Deadline after Flush = %v, want zero", d)
	}
}

func TestBatcherReset(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: time.Second})
	for off := int64(0); off < 5; off++ {
		b.Add(rec(off, 3, 1), t0)
	}
	if b.Pending() != 5 {
		t.Fatalf("Pending = %d, want 5", b.Pending())
	}
	b.Reset()
	if b.Pending() != 0 {
		t.Errorf("Pending after Reset = %d, want 0", b.Pending())
	}
	if d := b.Deadline(); !d.IsZero() {
		t.Errorf("Deadline after Reset = %v, want zero", d)
	}
	if r := b.Ready(t0.Add(time.Hour)); r != nil {
		t.Errorf("Ready after Reset = %+v", shapeOf(r))
	}
	if f := b.Flush(); f != nil {
		t.Errorf("Flush after Reset = %+v", shapeOf(f))
	}
	// After a reassignment the partition resumes at some other offset; the
	// batcher starts clean from there.
	b.Add(rec(42, 3, 9), t0.Add(time.Minute))
	b.Add(rec(43, 3, 9), t0.Add(time.Minute))
	checkBatch(t, b.Ready(t0.Add(time.Minute)), shape{42, 43, 2, 6, 9})
}

// TestBatcherRecycle: a recycled batch's Items array serves the next batch,
// and none of the old records or rows stay reachable through it.
func TestBatcherRecycle(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 4, MaxBytes: 1 << 20, MaxWait: time.Second})
	for off := int64(0); off < 4; off++ {
		b.Add(rec(off, 2, 1), t0)
	}
	first := b.Ready(t0)
	checkBatch(t, first, shape{0, 3, 4, 8, 1})
	// Later stages fill rows and failures in place.
	for i := range first.Items {
		first.Items[i].Row = record.Row{"order_id": i}
	}
	first.Items[1].Fail(record.StageDecode, "bad")
	items := first.Items
	backing := &items[:cap(items)][0]
	capacity := cap(items)

	b.Recycle(first)
	if first.Items != nil {
		t.Errorf("recycled batch still holds its Items")
	}
	for i, it := range items[:cap(items)] {
		if it.Rec != nil || it.Row != nil || it.Failed != nil {
			t.Errorf("recycled slot %d still references %+v", i, it)
		}
	}

	// A shorter batch reuses the array; the slots past it stay empty.
	b.Add(rec(4, 2, 2), t0)
	b.Add(rec(5, 2, 2), t0)
	second := b.Flush()
	checkBatch(t, second, shape{4, 5, 2, 4, 2})
	if cap(second.Items) != capacity || &second.Items[:1][0] != backing {
		t.Errorf("second batch did not reuse the recycled Items array (cap %d, want %d)", cap(second.Items), capacity)
	}
	for i, it := range second.Items[:cap(second.Items)][len(second.Items):] {
		if it.Rec != nil || it.Row != nil || it.Failed != nil {
			t.Errorf("slot %d past the batch leaks an old item: %+v", len(second.Items)+i, it)
		}
	}

	// The spare is used once: the batch after gets its own array, so two
	// batches in flight never share one.
	b.Add(rec(6, 2, 2), t0)
	third := b.Flush()
	checkBatch(t, third, shape{6, 6, 1, 2, 2})
	if &third.Items[0] == &second.Items[0] {
		t.Errorf("third batch shares the second batch's Items array")
	}
	if second.Items[0].Rec.Offset != 4 {
		t.Errorf("second batch was overwritten: first item offset %d", second.Items[0].Rec.Offset)
	}
}

// TestBatcherRecycleWhileOpen: recycling while a batch is open does not
// disturb it; the spare serves the batch after.
func TestBatcherRecycleWhileOpen(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: time.Second})
	b.Add(rec(0, 1, 1), t0)
	b.Add(rec(1, 1, 1), t0)
	done := b.Ready(t0)
	b.Add(rec(2, 1, 1), t0) // opens the next batch before done is recycled
	backing := &done.Items[0]
	b.Recycle(done)
	b.Add(rec(3, 1, 1), t0)
	open := b.Ready(t0)
	checkBatch(t, open, shape{2, 3, 2, 2, 1})
	if &open.Items[0] == backing {
		t.Errorf("open batch moved into the recycled array")
	}
	b.Add(rec(4, 1, 1), t0)
	next := b.Flush()
	checkBatch(t, next, shape{4, 4, 1, 1, 1})
	if &next.Items[0] != backing {
		t.Errorf("batch after the recycle did not reuse the spare array")
	}
}

func TestBatcherPending(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: time.Second})
	steps := []struct {
		op   string
		want int
	}{
		{"add", 1}, {"add", 2}, {"add", 3}, {"add", 4}, {"add", 5},
		{"ready", 3}, {"ready", 1}, {"ready", 1}, {"flush", 0}, {"flush", 0},
	}
	off := int64(0)
	for i, s := range steps {
		switch s.op {
		case "add":
			b.Add(rec(off, 1, 1), t0)
			off++
		case "ready":
			b.Ready(t0)
		case "flush":
			b.Flush()
		}
		if got := b.Pending(); got != s.want {
			t.Errorf("step %d (%s): Pending = %d, want %d", i, s.op, got, s.want)
		}
	}
}

// TestBatcherSetLimits: new limits cut the next batches; an open batch that
// already reached them is cut at once, one that has not keeps its records
// and its first record's arrival as the start of the new max_wait; a batch
// already cut keeps its size.
func TestBatcherSetLimits(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 4, MaxBytes: 1 << 20, MaxWait: time.Second})
	for off := int64(0); off < 6; off++ { // 0..3 cut by rows, 4..5 open
		b.Add(rec(off, 10, 1), t0)
	}
	b.SetLimits(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: time.Second})
	if got := b.Limits().MaxRows; got != 2 {
		t.Errorf("Limits().MaxRows = %d, want 2", got)
	}
	checkBatch(t, b.Ready(t0), shape{0, 3, 4, 40, 1}) // cut before: kept whole
	checkBatch(t, b.Ready(t0), shape{4, 5, 2, 20, 1}) // open, at the new max_rows: cut
	for off := int64(6); off < 9; off++ {             // 6..7 cut, 8 open
		b.Add(rec(off, 10, 1), t0.Add(100*time.Millisecond))
	}
	checkBatch(t, b.Ready(t0), shape{6, 7, 2, 20, 1})
	if r := b.Ready(t0); r != nil {
		t.Fatalf("open batch ready early: %+v", shapeOf(r))
	}

	// A longer max_wait moves the open batch's deadline; a shorter one
	// that has already passed makes it ready.
	b.SetLimits(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: 4 * time.Second})
	if d, want := b.Deadline(), t0.Add(4100*time.Millisecond); !d.Equal(want) {
		t.Errorf("Deadline after stretching max_wait = %v, want %v", d, want)
	}
	b.SetLimits(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond})
	checkBatch(t, b.Ready(t0.Add(time.Second)), shape{8, 8, 1, 10, 1})

	// Lower max_bytes cuts an open batch that reached it.
	b.Add(rec(9, 10, 1), t0.Add(2*time.Second))
	b.Add(rec(10, 10, 1), t0.Add(2*time.Second)) // cut by rows (2)
	b.SetLimits(batch.Limits{MaxRows: 100, MaxBytes: 1 << 20, MaxWait: time.Second})
	b.Add(rec(11, 10, 1), t0.Add(2*time.Second))
	b.Add(rec(12, 10, 1), t0.Add(2*time.Second))
	b.SetLimits(batch.Limits{MaxRows: 100, MaxBytes: 15, MaxWait: time.Second})
	checkBatch(t, b.Ready(t0.Add(2*time.Second)), shape{9, 10, 2, 20, 1})
	checkBatch(t, b.Ready(t0.Add(2*time.Second)), shape{11, 12, 2, 20, 1})
	if b.Pending() != 0 {
		t.Errorf("Pending = %d, want 0", b.Pending())
	}
}

// TestBatcherOldest: Oldest is the first record not yet returned, whether
// it is in a batch already cut or in the open one, and nil once all is out.
func TestBatcherOldest(t *testing.T) {
	b := newBatcher(batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: time.Second})
	offsetOf := func() int64 {
		if r := b.Oldest(); r != nil {
			return r.Offset
		}
		return -1
	}
	if got := offsetOf(); got != -1 {
		t.Fatalf("empty batcher: Oldest at %d", got)
	}
	for off := int64(10); off < 15; off++ { // cut: 10-11, 12-13; open: 14
		b.Add(rec(off, 1, 1), t0)
	}
	for _, want := range []int64{10, 12, 14, -1} {
		if got := offsetOf(); got != want {
			t.Fatalf("Oldest at %d, want %d", got, want)
		}
		b.Flush()
	}
}

// Seal cuts the open batch and stamps the topic ID on every batch held
// without one; batches opened after it are not stamped.
func TestSealStampsTheBatchesHeld(t *testing.T) {
	b := batch.New("p", "t", 0, batch.Limits{MaxRows: 2, MaxBytes: 1 << 20, MaxWait: time.Hour})
	now := time.Now()
	for o := int64(0); o < 3; o++ {
		b.Add(&kgo.Record{Offset: o, Value: []byte("v")}, now)
	}
	b.Seal("a")
	b.Add(&kgo.Record{Offset: 0, Value: []byte("v")}, now)
	var got []string
	for x := b.Flush(); x != nil; x = b.Flush() {
		got = append(got, fmt.Sprintf("%d-%d:%q", x.First, x.Last, x.TopicID))
	}
	if want := []string{`0-1:"a"`, `2-2:"a"`, `0-0:""`}; !slices.Equal(got, want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
}
