package audit

import (
	"reflect"
	"testing"
)

func TestRangesMerge(t *testing.T) {
	var s Ranges
	for _, o := range []int64{1, 2, 3, 7, 9, 10} {
		s.Add(o, 0)
	}
	s.AddRange(11, 20, 0) // adjacent to 10: merges
	s.AddRange(30, 29, 0) // empty: ignored
	want := []Range{{1, 3, 0}, {7, 7, 0}, {9, 20, 0}}
	if !reflect.DeepEqual(s.List, want) || s.Offsets != 3+1+12 || s.More != 0 {
		t.Fatalf("got %+v offsets %d more %d, want %+v", s.List, s.Offsets, s.More, want)
	}
	if got := s.String(); got != "1-3, 7, 9-20" {
		t.Fatalf("String() = %q", got)
	}
}

func TestRangesExtra(t *testing.T) {
	var s Ranges
	s.Add(5, 2)
	s.Add(6, 1)
	s.Add(9, 1)
	want := []Range{{5, 6, 3}, {9, 9, 1}}
	if !reflect.DeepEqual(s.List, want) || s.Extra != 4 || s.Offsets != 3 {
		t.Fatalf("got %+v extra %d offsets %d", s.List, s.Extra, s.Offsets)
	}
}

// The cap keeps the first Max ranges, never cuts the last kept one, and
// counts each further range once however many offsets it has.
func TestRangesCap(t *testing.T) {
	s := Ranges{Max: 2}
	s.AddRange(0, 0, 0)
	s.AddRange(10, 11, 0)
	s.AddRange(12, 15, 0) // extends the second kept range past the cap
	s.AddRange(20, 20, 0) // third range: counted
	s.AddRange(21, 25, 0) // extends the third: not counted again
	s.AddRange(30, 30, 0) // fourth
	s.Add(40, 7)          // fifth
	want := []Range{{0, 0, 0}, {10, 15, 0}}
	if !reflect.DeepEqual(s.List, want) {
		t.Fatalf("List = %+v, want %+v", s.List, want)
	}
	if s.More != 3 || s.Offsets != 1+6+6+1+1 || s.Extra != 7 {
		t.Fatalf("More %d Offsets %d Extra %d", s.More, s.Offsets, s.Extra)
	}
	if got := s.String(); got != "0, 10-15 and 3 more ranges" {
		t.Fatalf("String() = %q", got)
	}
}

func TestRangesDefaultCap(t *testing.T) {
	var s Ranges
	for i := range int64(DefaultMaxRanges + 5) {
		s.Add(i*2, 0)
	}
	if len(s.List) != DefaultMaxRanges || s.More != 5 {
		t.Fatalf("kept %d, more %d", len(s.List), s.More)
	}
}

func TestRangesOutOfOrderPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for an offset below the last one")
		}
	}()
	var s Ranges
	s.AddRange(10, 20, 0)
	s.Add(15, 0)
}
