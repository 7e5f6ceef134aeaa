package audit

import (
	"reflect"
	"testing"
)

func TestBucketSpan(t *testing.T) {
	for _, c := range []struct {
		b, width, lo, hi int64
		from, to         int64
	}{
		{0, 10, 0, 100, 0, 10},
		{0, 10, 3, 100, 3, 10},  // the log start cuts the first bucket
		{9, 10, 3, 95, 90, 95},  // the committed offset cuts the last
		{2, 10, 23, 27, 23, 27}, // both inside one bucket
	} {
		if f, to := bucketSpan(c.b, c.width, c.lo, c.hi); f != c.from || to != c.to {
			t.Errorf("bucketSpan(%d, %d, %d, %d) = %d, %d; want %d, %d", c.b, c.width, c.lo, c.hi, f, to, c.from, c.to)
		}
	}
}

func TestCountInAndSlice(t *testing.T) {
	s := []int64{2, 5, 9, 10, 30}
	for _, c := range []struct {
		from, to int64
		want     []int64
	}{
		{0, 100, s}, {5, 10, []int64{5, 9}}, {3, 5, []int64{}}, {30, 31, []int64{30}}, {31, 40, []int64{}},
	} {
		got := slice(s, c.from, c.to)
		if len(got) != len(c.want) || (len(got) > 0 && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("slice [%d,%d) = %v, want %v", c.from, c.to, got, c.want)
		}
		if n := countIn(s, c.from, c.to); n != int64(len(c.want)) {
			t.Errorf("countIn [%d,%d) = %d, want %d", c.from, c.to, n, len(c.want))
		}
	}
}

// judge's counts are exact from the bucket's count, uniqExact and the rows
// at its dead-lettered offsets, whatever mix of defects the bucket has.
func TestJudge(t *testing.T) {
	for _, c := range []struct {
		name          string
		span, letters int64
		rows, uniq    uint64
		both          int64
		want          verdict
	}{
		{"clean", 100, 0, 100, 100, 0, verdict{Expected: 100}},
		{"clean with letters", 100, 3, 97, 97, 0, verdict{Expected: 97}},
		{"empty bucket, all dead-lettered", 4, 4, 0, 0, 0, verdict{Expected: 0}},
		{"gap", 100, 0, 90, 90, 0, verdict{Expected: 100, Missing: 10}},
		{"duplicate", 100, 0, 101, 100, 0, verdict{Expected: 100, Extra: 1}},
		// A duplicate and a gap cancel out in count() alone; uniqExact
		// tells them apart.
		{"duplicate hides a gap in count", 100, 0, 100, 99, 0, verdict{Expected: 100, Missing: 1, Extra: 1}},
		// A row at a dead-lettered offset and a gap elsewhere: count and
		// uniq both look right; the rows at letters tell.
		{"both hides a gap", 100, 1, 99, 99, 1, verdict{Expected: 99, Missing: 1, Both: 1}},
		{"both, duplicated", 100, 1, 101, 100, 1, verdict{Expected: 99, Extra: 1, Both: 1}},
		{"nothing stored", 100, 10, 0, 0, 0, verdict{Expected: 90, Missing: 90}},
	} {
		st := BucketStats{Rows: c.rows, Distinct: c.uniq}
		got := judge(c.span, c.letters, st, c.both)
		if got != c.want {
			t.Errorf("%s: judge = %+v, want %+v", c.name, got, c.want)
		}
		if got.Clean() != (c.want.Missing == 0 && c.want.Extra == 0 && c.want.Both == 0) {
			t.Errorf("%s: Clean() = %v", c.name, got.Clean())
		}
	}
}

func TestDistinctLetters(t *testing.T) {
	var dups Ranges
	got := distinct([]int64{1, 3, 3, 3, 4, 8, 8, 12}, 2, 10, &dups)
	if !reflect.DeepEqual(got, []int64{3, 4, 8}) {
		t.Fatalf("distinct = %v", got)
	}
	if want := []Range{{3, 3, 2}, {8, 8, 1}}; !reflect.DeepEqual(dups.List, want) || dups.Extra != 3 {
		t.Fatalf("duplicate letters %+v (extra %d), want %+v", dups.List, dups.Extra, want)
	}
}
