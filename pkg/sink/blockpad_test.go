package sink

import (
	"testing"
	"time"
)

// TestBlockPadsColumnsPutLateOrNever: EndRow pads only the columns put so
// far in the batch; a column first put at row 1, one never put, one only
// overwritten by SetInt, and a row failed half-way must still come out
// with a value (zero or NULL) for every row, on both kinds of buffers.
// Without the padding of lazy columns (sync) the reads below index past
// the end of the never-put column and the lengths differ.
func TestBlockPadsColumnsPutLateOrNever(t *testing.T) {
	for _, native := range []bool{false, true} {
		tab := tableOf(t, "pad", [][2]string{{"a", "String"}, {"b", "Nullable(Int64)"}, {"c", "DateTime('UTC')"}, {"d", "Nullable(String)"}, {"e", "UInt32"}})
		if native {
			if err := tab.UseNative(new(NativeWriter)); err != nil {
				t.Fatal(err)
			}
		}
		bufs := tab.NewBuffers()
		at := time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC)
		for batch := range 2 { // the second batch reuses the block: nothing carries over
			bl := tab.Block(bufs, nil)
			bl.PutString(0, "a0")
			if err := bl.EndRow(); err != nil {
				t.Fatal(err)
			}
			bl.PutString(0, "a1")
			bl.PutInt(1, 5)
			bl.PutTime(2, at)
			if err := bl.EndRow(); err != nil {
				t.Fatal(err)
			}
			bl.PutString(0, "a2")
			bl.PutInt(1, 6)
			bl.FailRow()
			bl.PutString(0, "a3")
			if err := bl.EndRow(); err != nil {
				t.Fatal(err)
			}
			if err := bl.SetInt(4, 1, 7); err != nil {
				t.Fatal(err)
			}
			if bl.Rows() != 4 {
				t.Fatalf("native %v batch %d: %d rows, want 4", native, batch, bl.Rows())
			}
			for r, want := range []string{"a0", "a1", "", "a3"} {
				if got, ok := bl.String(0, r); !ok || got != want {
					t.Errorf("native %v batch %d: a[%d] = %q, %v; want %q", native, batch, r, got, ok, want)
				}
				if got, ok := bl.String(3, r); ok {
					t.Errorf("native %v batch %d: d[%d] = %q, want NULL", native, batch, r, got)
				}
			}
			if tm, _ := bl.Time(2, 1); !tm.Equal(at) {
				t.Errorf("native %v batch %d: c[1] = %v, want %v", native, batch, tm, at)
			}
			for _, r := range []int{0, 2, 3} {
				if tm, _ := bl.Time(2, r); !tm.Equal(time.Unix(0, 0)) && !tm.IsZero() {
					t.Errorf("native %v batch %d: c[%d] = %v, want the zero value", native, batch, r, tm)
				}
			}
			for j, c := range bufs.cols {
				if c.len() != 4 {
					t.Errorf("native %v batch %d: column %s holds %d values, want 4", native, batch, tab.cols[j].Name, c.len())
				}
			}
			var b []any
			switch v := bufs.cols[1].slice().(type) {
			case []*int64:
				for _, p := range v {
					if p == nil {
						b = append(b, nil)
					} else {
						b = append(b, *p)
					}
				}
			case nullCols[int64]:
				for i, n := range v.nulls {
					if n == 1 {
						b = append(b, nil)
					} else {
						b = append(b, v.vals[i])
					}
				}
			default:
				t.Fatalf("b's buffer holds %T", v)
			}
			if want := []any{nil, int64(5), nil, nil}; len(b) != 4 || b[0] != want[0] || b[1] != want[1] || b[2] != want[2] || b[3] != want[3] {
				t.Errorf("native %v batch %d: b = %v, want %v", native, batch, b, want)
			}
			if e, ok := bufs.cols[4].slice().([]uint32); !ok || len(e) != 4 || e[0] != 0 || e[1] != 7 || e[2] != 0 || e[3] != 0 {
				t.Errorf("native %v batch %d: e = %v, want [0 7 0 0]", native, batch, bufs.cols[4].slice())
			}
		}
	}
}
