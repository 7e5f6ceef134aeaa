package sink

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/sluice-etl/sluice/pkg/sink/native"
)

// wireOf is the native encoding of a String column of vals.
func wireOf(vals []string) []byte {
	var b []byte
	for _, v := range vals {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// encoded is what col puts on the wire, through both of its ways.
func encoded(t *testing.T, col proto.ColInput) []byte {
	t.Helper()
	var b proto.Buffer
	col.EncodeColumn(&b)
	return b.Buf
}

// TestNstrKeepsItsValuesAndTheirWireForm: a native String buffer reads
// back what was put and set, and hands over exactly the encoding of its
// rows, whether its data is still in row order (the slice sent as it is)
// or not (encoded row by row), after a failed row's truncation, an
// overwrite, padding and a gather.
func TestNstrKeepsItsValuesAndTheirWireForm(t *testing.T) {
	long := strings.Repeat("x", 300) // a two-byte length
	b := newNstr(true)
	for _, s := range []string{"a", "", long, "bc"} {
		if err := b.putString(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.add(nil); err != nil {
		t.Fatal(err)
	}
	if err := b.putInt(7); err == nil || !strings.Contains(err.Error(), "want a string") {
		t.Fatalf("putInt: %v, want toString's refusal", err)
	}
	b.putString("half a row")
	b.truncate(5) // the row failed half-way
	want := []string{"a", "", long, "bc", ""}
	check := func(what string, wantOrdered bool, nulls []uint8) {
		t.Helper()
		if b.ordered != wantOrdered {
			t.Errorf("%s: ordered %v, want %v", what, b.ordered, wantOrdered)
		}
		for i, w := range want {
			if got := b.str(i); got != w {
				t.Errorf("%s: row %d is %q, want %q", what, i, got, w)
			}
		}
		v := b.view(0, b.len()).(nullSpans)
		if !slices.Equal(v.nulls, nulls) {
			t.Errorf("%s: nulls %v, want %v", what, v.nulls, nulls)
		}
		if wantOrdered != (v.vals.Wire != nil) {
			t.Errorf("%s: wire form handed over: %v, want %v", what, v.vals.Wire != nil, wantOrdered)
		}
		if got := encoded(t, v.vals); !bytes.Equal(got, wireOf(want)) {
			t.Errorf("%s: encodes %q, want %q", what, got, wireOf(want))
		}
		mid := b.view(1, 4).(nullSpans)
		if got := encoded(t, mid.vals); !bytes.Equal(got, wireOf(want[1:4])) {
			t.Errorf("%s: rows 1..3 encode %q, want %q", what, got, wireOf(want[1:4]))
		}
		g := b.gather([]int{0, 2, 4}).(nullSpans)
		if got := encoded(t, g.vals); !bytes.Equal(got, wireOf([]string{want[0], want[2], want[4]})) || g.vals.Wire != nil {
			t.Errorf("%s: gather encodes %q (wire %v)", what, got, g.vals.Wire != nil)
		}
	}
	check("put", true, []uint8{0, 0, 0, 0, 1})
	if len(b.data) != len(wireOf(want)) {
		t.Errorf("data holds %d bytes after the truncation, want %d", len(b.data), len(wireOf(want)))
	}

	// Setting a row to the value it has changes nothing.
	if err := b.setString(3, "bc"); err != nil {
		t.Fatal(err)
	}
	check("same value set", true, []uint8{0, 0, 0, 0, 1})

	if err := b.setString(1, "new"); err != nil {
		t.Fatal(err)
	}
	if err := b.set(4, "was null"); err != nil {
		t.Fatal(err)
	}
	if err := b.set(0, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.set(2, 3.5); err == nil {
		t.Fatal("set of a float took it")
	}
	want = []string{"", "new", long, "bc", "was null"}
	check("overwritten", false, []uint8{1, 0, 0, 0, 0})

	b.padTo(7)
	want = append(want, "", "")
	check("padded", false, []uint8{1, 0, 0, 0, 0, 1, 1})

	b.reset()
	if b.len() != 0 || len(b.data) != 0 || !b.ordered {
		t.Fatalf("reset left %d rows, %d bytes, ordered %v", b.len(), len(b.data), b.ordered)
	}
	b.putString("again")
	if v := b.view(0, 1).(nullSpans); !bytes.Equal(v.vals.Wire, wireOf([]string{"again"})) {
		t.Errorf("after the reset the wire form is %q", v.vals.Wire)
	}
}

// TestNstrNotNullHandsOverPlainSpans: the NOT NULL buffer hands over the
// column itself, and Block.String reads it.
func TestNstrNotNullHandsOverPlainSpans(t *testing.T) {
	b := newNstr(false)
	b.putString("x")
	b.add(nil) // absent: the empty string
	c, ok := b.view(0, 2).(native.SpanStrings)
	if !ok {
		t.Fatalf("view is %T", b.view(0, 2))
	}
	if got := encoded(t, c); !bytes.Equal(got, wireOf([]string{"x", ""})) {
		t.Errorf("encodes %q", got)
	}
	col, err := nativeColumn(c, &colType{base: "String"}, "String")
	if err != nil || col.Rows() != 2 {
		t.Fatalf("nativeColumn: %v, %v", col, err)
	}
}
