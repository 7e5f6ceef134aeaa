package audit

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"testing"
)

// fakeTable is a table in memory: rows per partition per offset. It
// answers every query by brute force and counts the queries, so tests can
// check both the verdicts and the bounds on what is read.
type fakeTable struct {
	rows    map[int32]map[int64]uint64
	buckets int // Buckets queries
	drills  int // Offsets queries
	maxSpan int64
}

func newFake() *fakeTable { return &fakeTable{rows: map[int32]map[int64]uint64{}} }

// put stores n rows at each offset from..to (inclusive) of partition p.
func (f *fakeTable) put(p int32, from, to int64, n uint64) {
	if f.rows[p] == nil {
		f.rows[p] = map[int64]uint64{}
	}
	for o := from; o <= to; o++ {
		f.rows[p][o] += n
	}
}

func (f *fakeTable) del(p int32, from, to int64) {
	for o := from; o <= to; o++ {
		delete(f.rows[p], o)
	}
}

func (f *fakeTable) in(p int32, from, to int64) []int64 {
	var out []int64
	for _, o := range slices.Sorted(maps.Keys(f.rows[p])) {
		if o >= from && (to < 0 || o < to) {
			out = append(out, o)
		}
	}
	return out
}

func (f *fakeTable) Buckets(_ context.Context, _ string, p int32, from, to, width int64) ([]BucketStats, error) {
	f.buckets++
	f.maxSpan = max(f.maxSpan, to-from)
	by := map[int64]*BucketStats{}
	for _, o := range f.in(p, from, to) {
		b := by[o/width]
		if b == nil {
			b = &BucketStats{Bucket: o / width}
			by[o/width] = b
		}
		b.Rows += f.rows[p][o]
		b.Distinct++
	}
	var out []BucketStats
	for _, b := range by {
		out = append(out, *b)
	}
	return out, nil
}

func (f *fakeTable) Offsets(_ context.Context, _ string, p int32, from, to int64, fn func(int64, uint64)) error {
	f.drills++
	for _, o := range f.in(p, from, to) {
		fn(o, f.rows[p][o])
	}
	return nil
}

func (f *fakeTable) RowsAt(_ context.Context, _ string, p int32, offsets []int64) (map[int64]uint64, error) {
	out := map[int64]uint64{}
	for _, o := range offsets {
		if n := f.rows[p][o]; n > 0 {
			out[o] = n
		}
	}
	return out, nil
}

func (f *fakeTable) Span(_ context.Context, _ string, p int32, from, to int64) (uint64, int64, int64, error) {
	var n uint64
	var lo, hi int64
	for i, o := range f.in(p, from, to) {
		if i == 0 {
			lo = o
		}
		hi = o
		n += f.rows[p][o]
	}
	return n, lo, hi, nil
}

// auditOne runs one partition's audit as Run does, with small buckets so
// that a few hundred offsets span many buckets and windows.
func auditOne(t *testing.T, a *auditor, tbl Table, logStart, committed, hwm int64, letters []int64, below int64, replayedOK bool) *PartitionReport {
	t.Helper()
	a.replayedOK = replayedOK
	p := &PartitionReport{Topic: "t", Partition: 0, LogStart: logStart, Committed: committed}
	p.init(0)
	pl := &partitionLetters{offsets: slices.Sorted(slices.Values(letters)), below: below}
	if err := a.partition(context.Background(), tbl, p, pl); err != nil {
		t.Fatal(err)
	}
	p.end(hwm)
	p.classify(replayedOK)
	return p
}

func smallAuditor() *auditor { return &auditor{width: 10, window: 30, maxDrill: 100} }

func rangesOf(s Ranges) []Range { return s.List }

func TestPartitionClean(t *testing.T) {
	f := newFake()
	// Offsets 3..996 checked (log start 3, committed 997); 40 and 41 and
	// 500 are dead letters; rows below the log start are ignored, and so
	// is a duplicate there.
	f.put(0, 0, 1000, 1)
	f.put(0, 1, 1, 1)
	f.del(0, 40, 41)
	f.del(0, 500, 500)
	a := smallAuditor()
	p := auditOne(t, a, f, 3, 997, 1003, []int64{40, 41, 500}, -1, false)
	if !p.Clean || len(p.Defects) != 0 {
		t.Fatalf("defects %v: %+v", p.Defects, p)
	}
	if p.Rows != 994-3 || p.DeadLetters != 3 {
		t.Fatalf("rows %d, dead letters %d; want %d, 3", p.Rows, p.DeadLetters, 994-3)
	}
	if *p.Checked != (Range{3, 996, 0}) || p.Lag != 6 {
		t.Fatalf("checked %v, lag %d", p.Checked, p.Lag)
	}
	// 997..1000 are stored above the committed offset: pending.
	if p.Pending.Rows != 4 || *p.Pending.Range != (Range{997, 1000, 0}) || p.BeyondEnd != nil {
		t.Fatalf("pending %+v, beyond end %v", p.Pending, p.BeyondEnd)
	}
	// Bounds: every window at most 30 offsets, one query per window,
	// nothing drilled.
	if f.maxSpan > 30 || f.buckets != 34 || f.drills != 0 {
		t.Fatalf("max span %d, %d bucket queries, %d drills", f.maxSpan, f.buckets, f.drills)
	}
	if len(p.AcceptedGaps) != 0 {
		t.Fatalf("accepted gaps %v", p.AcceptedGaps)
	}
}

func TestPartitionDefects(t *testing.T) {
	f := newFake()
	f.put(0, 0, 299, 1)
	f.put(0, 5, 5, 2)     // offset 5: three rows
	f.put(0, 19, 21, 1)   // 19..21: two rows each, across a bucket boundary
	f.del(0, 100, 109)    // gap, exactly one bucket
	f.del(0, 148, 153)    // gap across a bucket boundary
	f.del(0, 60, 60)      // dead-lettered: fine
	f.del(0, 61, 61)      // dead-lettered twice
	f.del(0, 200, 200)    // a gap hidden by a duplicate in the same bucket
	f.put(0, 205, 205, 1) //   (count() alone would look right)
	// 42 and 250 are stored AND dead-lettered; 250 also has two rows.
	f.put(0, 250, 250, 1)
	letters := []int64{42, 60, 61, 61, 250}
	p := auditOne(t, smallAuditor(), f, 0, 300, 300, letters, -1, false)

	wantDefects := []string{DefectDuplicates, DefectGaps, DefectBoth, DefectDuplicateLetters}
	if !reflect.DeepEqual(p.Defects, wantDefects) || p.Clean {
		t.Fatalf("defects %v, want %v", p.Defects, wantDefects)
	}
	if want := []Range{{5, 5, 2}, {19, 21, 3}, {205, 205, 1}, {250, 250, 1}}; !reflect.DeepEqual(rangesOf(p.Duplicates), want) {
		t.Fatalf("duplicates %+v, want %+v", p.Duplicates.List, want)
	}
	if p.DuplicateRows != 7 || p.Duplicates.Extra != 7 {
		t.Fatalf("duplicate rows %d (ranges %d), want 7", p.DuplicateRows, p.Duplicates.Extra)
	}
	if want := []Range{{100, 109, 0}, {148, 153, 0}, {200, 200, 0}}; !reflect.DeepEqual(rangesOf(p.Gaps), want) {
		t.Fatalf("gaps %+v, want %+v", p.Gaps.List, want)
	}
	if p.MissingOffsets != 17 || p.Gaps.Offsets != 17 {
		t.Fatalf("missing %d (ranges %d), want 17", p.MissingOffsets, p.Gaps.Offsets)
	}
	if want := []Range{{42, 42, 0}, {250, 250, 0}}; !reflect.DeepEqual(rangesOf(p.Both), want) || p.BothOffsets != 2 {
		t.Fatalf("both %+v (%d), want %+v", p.Both.List, p.BothOffsets, want)
	}
	if want := []Range{{61, 61, 1}}; !reflect.DeepEqual(rangesOf(p.DuplicateLetters), want) {
		t.Fatalf("duplicate letters %+v, want %+v", p.DuplicateLetters.List, want)
	}
	if p.DeadLetters != 4 || !p.Undrilled.Empty() {
		t.Fatalf("dead letters %d, undrilled %v", p.DeadLetters, p.Undrilled.String())
	}
}

// Past MaxDrill the counts stay exact and the buckets are named; past
// MaxRanges only the number of further ranges is kept.
func TestPartitionCaps(t *testing.T) {
	f := newFake()
	f.put(0, 0, 999, 1)
	// A one-offset gap every 20 offsets: 50 gaps in 50 buckets.
	for o := int64(7); o < 1000; o += 20 {
		f.del(0, o, o)
	}
	f.put(0, 993, 993, 1) // and a duplicate in the last bucket
	a := &auditor{width: 10, window: 100, maxDrill: 3}
	p := &PartitionReport{Topic: "t", LogStart: 0, Committed: 1000}
	p.init(2)
	if err := a.partition(context.Background(), f, p, &partitionLetters{below: -1}); err != nil {
		t.Fatal(err)
	}
	p.end(1000)
	p.classify(false)
	if f.drills != 3 {
		t.Fatalf("%d buckets drilled, want 3", f.drills)
	}
	if p.MissingOffsets != 50 || p.DuplicateRows != 1 {
		t.Fatalf("missing %d, duplicate rows %d: counts must stay exact past the drill cap", p.MissingOffsets, p.DuplicateRows)
	}
	// Drilled: gaps at 7, 27, 47 — two kept, one more.
	if want := []Range{{7, 7, 0}, {27, 27, 0}}; !reflect.DeepEqual(p.Gaps.List, want) || p.Gaps.More != 1 || p.Gaps.Offsets != 3 {
		t.Fatalf("gaps %+v more %d offsets %d", p.Gaps.List, p.Gaps.More, p.Gaps.Offsets)
	}
	// Undrilled: the 48 other defective buckets, 60-69, 80-89, ...,
	// 980-999 (the duplicate's bucket 990-999 is adjacent to 980-989).
	if p.Undrilled.Offsets != 48*10 || len(p.Undrilled.List) != 2 || p.Undrilled.List[0] != (Range{60, 69, 0}) || p.Undrilled.More != 45 {
		t.Fatalf("undrilled %+v more %d offsets %d", p.Undrilled.List, p.Undrilled.More, p.Undrilled.Offsets)
	}
	if !reflect.DeepEqual(p.Defects, []string{DefectDuplicates, DefectGaps}) {
		t.Fatalf("defects %v", p.Defects)
	}
}

func TestPartitionNoCommit(t *testing.T) {
	f := newFake()
	f.put(0, 0, 9, 1)
	p := auditOne(t, smallAuditor(), f, 0, -1, 20, nil, -1, false)
	if !p.Clean || p.Checked != nil || p.Pending.Rows != 10 || p.Lag != 20 || f.buckets != 0 {
		t.Fatalf("%+v (bucket queries %d)", p, f.buckets)
	}
}

func TestPartitionOutOfRange(t *testing.T) {
	f := newFake()
	f.put(0, 0, 49, 1)
	// Committed 50, but retention moved the log start to 80.
	p := auditOne(t, smallAuditor(), f, 80, 50, 100, nil, -1, false)
	if !reflect.DeepEqual(p.Defects, []string{DefectOutOfRange}) || *p.OutOfRange != (Range{50, 79, 0}) || p.Lag != 50 {
		t.Fatalf("defects %v, out of range %v, lag %d", p.Defects, p.OutOfRange, p.Lag)
	}
}

func TestPartitionBeyondEnd(t *testing.T) {
	f := newFake()
	f.put(0, 0, 120, 1) // the topic was recreated: its log ends at 100
	p := auditOne(t, smallAuditor(), f, 0, 100, 100, nil, -1, false)
	if !reflect.DeepEqual(p.Defects, []string{DefectBeyondEnd}) || *p.BeyondEnd != (Range{100, 120, 0}) {
		t.Fatalf("defects %v, beyond end %v", p.Defects, p.BeyondEnd)
	}
}

func TestPartitionAcceptedGap(t *testing.T) {
	f := newFake()
	// Rows 0..399 and 1000..1499; the log starts at 1000 (the group
	// resumed from the log start after 400..999 expired unread). The
	// letter at 450 (below the log start) narrows the gap.
	f.put(0, 0, 399, 1)
	f.put(0, 1000, 1499, 1)
	a := smallAuditor()
	p := auditOne(t, a, f, 1000, 1500, 1500, nil, 450, false)
	if !p.Clean || !reflect.DeepEqual(p.AcceptedGaps, []Range{{451, 999, 0}}) {
		t.Fatalf("clean %v, accepted gaps %v", p.Clean, p.AcceptedGaps)
	}
	// Normal retention: everything below the log start was loaded.
	g := newFake()
	g.put(0, 0, 1499, 1)
	if p := auditOne(t, a, g, 1000, 1500, 1500, nil, -1, false); len(p.AcceptedGaps) != 0 {
		t.Fatalf("accepted gaps %v after plain retention", p.AcceptedGaps)
	}
	// Nothing stored below the log start: not derivable, empty.
	h := newFake()
	h.put(0, 1000, 1499, 1)
	if p := auditOne(t, a, h, 1000, 1500, 1500, nil, -1, false); len(p.AcceptedGaps) != 0 || p.AcceptedGaps == nil {
		t.Fatalf("accepted gaps %#v with nothing below the log start", p.AcceptedGaps)
	}
}

func TestPartitionReplayedOK(t *testing.T) {
	f := newFake()
	f.put(0, 0, 99, 1) // 42 was dead-lettered, then replayed
	p := auditOne(t, smallAuditor(), f, 0, 100, 100, []int64{42}, -1, true)
	if !p.Clean || p.BothOffsets != 1 || !reflect.DeepEqual(p.Replayed.List, []Range{{42, 42, 0}}) || !p.Both.Empty() {
		t.Fatalf("clean %v both %d replayed %+v", p.Clean, p.BothOffsets, p.Replayed.List)
	}
	p = auditOne(t, smallAuditor(), f, 0, 100, 100, []int64{42}, -1, false)
	if p.Clean || !reflect.DeepEqual(p.Both.List, []Range{{42, 42, 0}}) {
		t.Fatalf("without ReplayedOK: clean %v both %+v", p.Clean, p.Both.List)
	}
}
