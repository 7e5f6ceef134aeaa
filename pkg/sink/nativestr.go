package sink

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
	"unsafe"

	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/sink/native"
)

// nstr is the native writer's String and Nullable(String) buffer. It
// holds its values' bytes itself, in one byte slice, where buf[string]
// held strings that point into the Kafka records (the JSON decoder's
// strings are read in place) or into goavro's allocations:
//
//   - the collector has nothing to follow in it (no pointers), where a
//     batch's string columns were some 100,000 pointers to follow in
//     every cycle, and the records' fetch buffers and goavro's strings
//     are garbage once the batch's rows are put;
//   - a value is copied once, while it is hot from the decode, and kept
//     in its wire form (its length as a uvarint, then its bytes): while
//     every value was put in turn (ordered), a range of rows is one slice
//     of data that the INSERT hands to the socket as it is
//     (native.SpanStrings.Wire). The INSERT used to copy each string from
//     its record, by then out of the cache: putStrings was 8 % of make
//     bench case (a)'s loader CPU.
//
// Why not ch-go's proto.ColStr, which also keeps its values in one byte
// buffer: it keeps them without their lengths, so encoding it copies
// every value once more into the block (what putStrings did), and it has
// no overwrite of a row or null map, which the transforms need.
//
// An overwrite (set, setString: a transform's output, a source column)
// appends the new bytes and points the row at them, and the rows are
// encoded one by one from then on. A NULL row's value is the empty
// string, as the driver's buffers send it.
type nstr struct {
	nullable bool
	nulls    []uint8 // nullable only: 1 = NULL
	data     []byte
	spans    []native.Span // per row: its bytes in data
	// ordered: data is the rows' wire form, row after row, and nothing
	// else.
	ordered bool
	outN    []uint8 // gather's reused results
	outS    []native.Span
}

func newNstr(nullable bool) *nstr { return &nstr{nullable: nullable, ordered: true} }

// errStringData: a batch's String column holds its values' bytes in one
// buffer with 32-bit offsets (far above any batch's max_bytes).
var errStringData = errors.New("the batch's String column would pass 4 GiB")

// push appends a row.
func (b *nstr) push(s string, null bool) error {
	if uint64(len(b.data))+uint64(len(s))+binary.MaxVarintLen32 > math.MaxUint32 {
		return errStringData
	}
	b.data = binary.AppendUvarint(b.data, uint64(len(s)))
	b.spans = append(b.spans, native.Span{Start: uint32(len(b.data)), Len: uint32(len(s))})
	b.data = append(b.data, s...)
	if b.nullable {
		n := uint8(0)
		if null {
			n = 1
		}
		b.nulls = append(b.nulls, n)
	}
	return nil
}

// str is row i's value.
func (b *nstr) str(i int) string {
	sp := b.spans[i]
	if sp.Len == 0 {
		return ""
	}
	return unsafe.String(&b.data[sp.Start], int(sp.Len))
}

func (b *nstr) add(v any) error {
	if v == nil {
		return b.push("", true)
	}
	s, err := toString(v)
	if err != nil {
		return err
	}
	return b.push(s, false)
}

func (b *nstr) putString(s string) error { return b.push(s, false) }

// The other unboxed puts are not strings: toString's error, as
// buf[string] gives.
func (b *nstr) putInt(v int64) error                  { return b.add(v) }
func (b *nstr) putDecimal(u int64, scale int32) error { return b.add(decimal.New(u, -scale)) }
func (b *nstr) putTime(t time.Time) error             { return b.add(t) }

func (b *nstr) set(i int, v any) error {
	if v == nil {
		if b.nullable {
			b.nulls[i] = 1
		}
		b.overwrite(i, "")
		return nil
	}
	s, err := toString(v)
	if err != nil {
		return err
	}
	return b.setString(i, s)
}

func (b *nstr) setString(i int, s string) error {
	if uint64(len(b.data))+uint64(len(s)) > math.MaxUint32 {
		return errStringData
	}
	if b.nullable {
		b.nulls[i] = 0
	}
	b.overwrite(i, s)
	return nil
}

// overwrite makes s row i's value; the same value leaves data as it is.
func (b *nstr) overwrite(i int, s string) {
	if b.str(i) == s {
		return
	}
	b.ordered = false
	sp := native.Span{Start: uint32(len(b.data)), Len: uint32(len(s))}
	b.data = append(b.data, s...)
	b.spans[i] = sp
}

func (b *nstr) setInt(i int, v int64) error {
	_, err := toString(v)
	return err
}

func (b *nstr) setDecimal(i int, u int64, scale int32) error {
	_, err := toString(decimal.New(u, -scale))
	return err
}

func (b *nstr) truncate(n int) {
	if n >= len(b.spans) {
		return
	}
	if b.ordered {
		b.data = b.data[:b.wireStart(n)]
	}
	b.spans = b.spans[:n]
	if b.nullable {
		b.nulls = b.nulls[:n]
	}
}

// wireStart is where row i's wire form starts in data (ordered only).
func (b *nstr) wireStart(i int) int {
	sp := b.spans[i]
	return int(sp.Start) - uvarintLen(uint64(sp.Len))
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (b *nstr) padTo(n int) {
	for len(b.spans) < n {
		_ = b.push("", true) // an empty value fits
	}
}

func (b *nstr) reset() {
	b.data, b.spans, b.nulls, b.ordered = b.data[:0], b.spans[:0], b.nulls[:0], true
}

func (b *nstr) len() int { return len(b.spans) }

func (b *nstr) slice() any { return b.view(0, len(b.spans)) }

// view is rows lo..hi-1; their wire form too while data is ordered.
func (b *nstr) view(lo, hi int) any {
	c := native.SpanStrings{Data: b.data, Spans: b.spans[lo:hi:hi]}
	if b.ordered && hi > lo {
		last := b.spans[hi-1]
		c.Wire = b.data[b.wireStart(lo) : last.Start+last.Len : last.Start+last.Len]
	}
	if b.nullable {
		return nullSpans{b.nulls[lo:hi:hi], c}
	}
	return c
}

func (b *nstr) gather(rows []int) any {
	b.outS = b.outS[:0]
	for _, r := range rows {
		b.outS = append(b.outS, b.spans[r])
	}
	c := native.SpanStrings{Data: b.data, Spans: b.outS}
	if !b.nullable {
		return c
	}
	b.outN = b.outN[:0]
	for _, r := range rows {
		b.outN = append(b.outN, b.nulls[r])
	}
	return nullSpans{b.outN, c}
}

// nullSpans is what a Nullable nstr hands over: the null map and the
// values of every row.
type nullSpans struct {
	nulls []uint8
	vals  native.SpanStrings
}

func (c nullSpans) parts() ([]uint8, any) { return c.nulls, c.vals }

var _ cellbuf = (*nstr)(nil)
