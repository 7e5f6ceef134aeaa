package native

import (
	"encoding/binary"

	"github.com/ClickHouse/ch-go/proto"
)

// The columns an INSERT needs that ch-go's proto has no zero-copy form
// for. proto's fixed-size columns are plain slices (ColUInt32 is
// []uint32, ColDecimal64 []Decimal64, ColEnum8 []Enum8, ColDateTime's
// Data []DateTime), so a caller's typed slice becomes one by a
// conversion, without a copy; WriteColumn hands their memory to the
// socket (vector I/O). proto.ColStr holds its strings in one byte buffer:
// appending Sluice's strings (which point into the Kafka records) would
// copy each once more before encoding, so Strings and StringArrays encode
// straight from the Go strings, and SpanStrings, the form pkg/sink's own
// String buffers keep, hands its bytes to the socket as they are.

// typed gives a column the server's type name: proto's Type() says
// "Enum8" or "Decimal64" where a block needs "Enum8('A' = 1)" or
// "Decimal(18, 2)".
type typed struct {
	proto.ColInput
	t proto.ColumnType
}

func (c typed) Type() proto.ColumnType { return c.t }

// Strings is a String column.
type Strings []string

func (c Strings) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c Strings) Rows() int              { return len(c) }
func (c Strings) EncodeColumn(b *proto.Buffer) {
	putStrings(b, c)
}
func (c Strings) WriteColumn(w *proto.Writer) {
	w.ChainBuffer(func(b *proto.Buffer) { putStrings(b, c) })
}

func putStrings(b *proto.Buffer, ss []string) {
	n := 0
	for _, s := range ss {
		n += len(s) + binary.MaxVarintLen32
	}
	b.Buf = grow(b.Buf, n)
	for _, s := range ss {
		b.Buf = binary.AppendUvarint(b.Buf, uint64(len(s)))
		b.Buf = append(b.Buf, s...)
	}
}

func grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf
	}
	out := make([]byte, len(buf), len(buf)+n+len(buf)/4)
	copy(out, buf)
	return out
}

// FixedStrings is a FixedString(N) column: each value padded with zero
// bytes to N. A longer value is the caller's to refuse (Check).
type FixedStrings struct {
	Vals []string
	N    int
}

func (c FixedStrings) Type() proto.ColumnType { return proto.ColumnTypeFixedString.With("") }
func (c FixedStrings) Rows() int              { return len(c.Vals) }
func (c FixedStrings) EncodeColumn(b *proto.Buffer) {
	b.Buf = grow(b.Buf, len(c.Vals)*c.N)
	for _, s := range c.Vals {
		start := len(b.Buf)
		b.Buf = append(b.Buf, s...)
		for len(b.Buf)-start < c.N {
			b.Buf = append(b.Buf, 0)
		}
		b.Buf = b.Buf[:start+c.N]
	}
}
func (c FixedStrings) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// StringArrays is an Array(String) column: the offsets (the running
// total of elements, UInt64), then every element.
type StringArrays [][]string

func (c StringArrays) Type() proto.ColumnType { return proto.ColumnTypeString.Array() }
func (c StringArrays) Rows() int              { return len(c) }
func (c StringArrays) EncodeColumn(b *proto.Buffer) {
	var total uint64
	for _, a := range c {
		total += uint64(len(a))
		b.PutUInt64(total)
	}
	for _, a := range c {
		putStrings(b, a)
	}
}
func (c StringArrays) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// Nullable is a Nullable(T) column: the null map (1 = NULL), then the
// values of every row (anything where the map says NULL).
type Nullable struct {
	Nulls  []uint8
	Values proto.ColInput
}

func (c Nullable) Type() proto.ColumnType { return proto.ColumnTypeNullable.Sub(c.Values.Type()) }
func (c Nullable) Rows() int              { return len(c.Nulls) }
func (c Nullable) EncodeColumn(b *proto.Buffer) {
	proto.ColUInt8(c.Nulls).EncodeColumn(b)
	c.Values.EncodeColumn(b)
}
func (c Nullable) WriteColumn(w *proto.Writer) {
	proto.ColUInt8(c.Nulls).WriteColumn(w)
	c.Values.WriteColumn(w)
}

var (
	_ proto.ColInput = Strings(nil)
	_ proto.ColInput = FixedStrings{}
	_ proto.ColInput = StringArrays(nil)
	_ proto.ColInput = Nullable{}
)

// Concat is one column made of several (the batches of several
// partitions in one INSERT), without copying them: a column's encoding is
// its rows' encodings one after the other, but for Nullable (every null
// map first, then every value) and StringArrays (offsets run on across
// the parts). All parts must be of one kind.
type Concat []proto.ColInput

func (c Concat) Type() proto.ColumnType { return c[0].Type() }
func (c Concat) Rows() int {
	n := 0
	for _, p := range c {
		n += p.Rows()
	}
	return n
}
func (c Concat) EncodeColumn(b *proto.Buffer) {
	switch c[0].(type) {
	case Nullable:
		vals := make(Concat, len(c))
		for i, p := range c {
			n := p.(Nullable)
			proto.ColUInt8(n.Nulls).EncodeColumn(b)
			vals[i] = n.Values
		}
		vals.EncodeColumn(b)
	case StringArrays:
		var total uint64
		for _, p := range c {
			for _, a := range p.(StringArrays) {
				total += uint64(len(a))
				b.PutUInt64(total)
			}
		}
		for _, p := range c {
			for _, a := range p.(StringArrays) {
				putStrings(b, a)
			}
		}
	default:
		for _, p := range c {
			p.EncodeColumn(b)
		}
	}
}
func (c Concat) WriteColumn(w *proto.Writer) {
	switch c[0].(type) {
	case Nullable:
		vals := make(Concat, len(c))
		for i, p := range c {
			n := p.(Nullable)
			proto.ColUInt8(n.Nulls).WriteColumn(w)
			vals[i] = n.Values
		}
		vals.WriteColumn(w)
	case StringArrays:
		w.ChainBuffer(c.EncodeColumn)
	default:
		for _, p := range c {
			p.WriteColumn(w)
		}
	}
}

// Span is where one String value lies in its column's Data: Len bytes
// from Start.
type Span struct{ Start, Len uint32 }

// SpanStrings is a String column whose values are Spans of one byte
// buffer (pkg/sink's own String buffers, which hold their values' bytes
// instead of pointing into the Kafka records). Wire, when not nil, is the
// rows' encoding already, each value's length (uvarint) then its bytes,
// row after row, as the buffer keeps them when every value was put in
// turn: it goes to the socket as it is, without a copy.
type SpanStrings struct {
	Data  []byte
	Spans []Span
	Wire  []byte
}

func (c SpanStrings) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c SpanStrings) Rows() int              { return len(c.Spans) }
func (c SpanStrings) EncodeColumn(b *proto.Buffer) {
	if c.Wire != nil {
		b.Buf = append(b.Buf, c.Wire...)
		return
	}
	n := 0
	for _, s := range c.Spans {
		n += int(s.Len) + binary.MaxVarintLen32
	}
	b.Buf = grow(b.Buf, n)
	for _, s := range c.Spans {
		b.Buf = binary.AppendUvarint(b.Buf, uint64(s.Len))
		b.Buf = append(b.Buf, c.Data[s.Start:s.Start+s.Len]...)
	}
}
func (c SpanStrings) WriteColumn(w *proto.Writer) {
	if c.Wire != nil {
		w.ChainWrite(c.Wire)
		return
	}
	w.ChainBuffer(c.EncodeColumn)
}

var _ proto.ColInput = SpanStrings{}
