package record

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestSplitGood(t *testing.T) {
	mk := func(failed ...bool) *Batch {
		b := &Batch{}
		for i, f := range failed {
			b.Items = append(b.Items, Item{Rec: &kgo.Record{Offset: int64(i)}})
			if f {
				b.Items[i].Fail(StageDecode, "bad")
			}
		}
		return b
	}
	cases := []struct {
		failed []bool
		want   int
	}{
		{[]bool{false, false}, 1},
		{[]bool{false, false, false}, 1},
		{[]bool{false, false, false, false}, 2},
		{[]bool{true, false, true, false}, 3},        // good at 1 and 3
		{[]bool{false, true, true, true, false}, 4},  // good at 0 and 4
		{[]bool{true, false, false, false, true}, 2}, // good at 1, 2, 3
	}
	for _, c := range cases {
		b := mk(c.failed...)
		mid := b.SplitGood()
		if mid != c.want {
			t.Errorf("%v: split at %d, want %d", c.failed, mid, c.want)
			continue
		}
		left, right := b.Slice(0, mid), b.Slice(mid, len(b.Items))
		if left.Good() == 0 || right.Good() == 0 || left.Good()+right.Good() != b.Good() {
			t.Errorf("%v: halves hold %d and %d good items of %d", c.failed, left.Good(), right.Good(), b.Good())
		}
	}
}
