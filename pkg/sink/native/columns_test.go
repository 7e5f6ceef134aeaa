package native

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

// spansOf lays vals out as a String buffer of pkg/sink does: each value's
// length, then its bytes; with wire, the column carries that form.
func spansOf(vals []string, wire bool) SpanStrings {
	var c SpanStrings
	for _, v := range vals {
		c.Data = binary.AppendUvarint(c.Data, uint64(len(v)))
		c.Spans = append(c.Spans, Span{Start: uint32(len(c.Data)), Len: uint32(len(v))})
		c.Data = append(c.Data, v...)
	}
	if wire {
		c.Wire = c.Data
	}
	return c
}

// written is what col puts on the socket through WriteColumn, the path
// the INSERT takes (vector I/O for the wire form).
func written(t *testing.T, col proto.ColInput) []byte {
	t.Helper()
	var out bytes.Buffer
	w := proto.NewWriter(&out, new(proto.Buffer))
	col.WriteColumn(w)
	if _, err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestSpanStringsConcatenate: a shared INSERT's column made of parts in
// their wire form and parts encoded row by row, plain and Nullable,
// writes and encodes what one String column of all the rows would.
func TestSpanStringsConcatenate(t *testing.T) {
	a, b := []string{"x", "", "long enough"}, []string{"yz", "w"}
	var want proto.Buffer
	Strings(append(append([]string{}, a...), b...)).EncodeColumn(&want)

	plain := Concat{spansOf(a, true), spansOf(b, false)}
	if got := written(t, plain); !bytes.Equal(got, want.Buf) {
		t.Errorf("written %q, want %q", got, want.Buf)
	}
	var enc proto.Buffer
	plain.EncodeColumn(&enc)
	if !bytes.Equal(enc.Buf, want.Buf) {
		t.Errorf("encoded %q, want %q", enc.Buf, want.Buf)
	}

	nulls := Concat{
		Nullable{Nulls: []uint8{0, 1, 0}, Values: spansOf(a, false)},
		Nullable{Nulls: []uint8{1, 0}, Values: spansOf(b, true)},
	}
	wantN := append([]byte{0, 1, 0, 1, 0}, want.Buf...)
	if got := written(t, nulls); !bytes.Equal(got, wantN) {
		t.Errorf("Nullable written %q, want %q", got, wantN)
	}
	if nulls.Rows() != 5 {
		t.Errorf("rows %d, want 5", nulls.Rows())
	}
}
