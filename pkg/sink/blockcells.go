package sink

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
)

// The cells of a Block's completed rows (record.Cells): what the columnar
// transforms read and overwrite. Reads switch on the buffer's concrete
// type, so a cell costs a type switch and an index, no boxing; writes go
// through the column's typed converters (the same checks and messages as
// Prepare's), falling back to its boxed conversion for a value of another
// kind (the error the row path would give).

// cellbuf is a column buffer that also takes unboxed overwrites.
type cellbuf interface {
	colbuf
	setString(i int, s string) error
	setDecimal(i int, unscaled int64, scale int32) error
}

func (b *buf[T]) setString(i int, s string) error {
	x, err := b.tc.fromString(s, b.conv)
	if err == nil {
		b.vals[i] = x
	}
	return err
}

func (b *buf[T]) setDecimal(i int, u int64, scale int32) error {
	x, err := b.tc.fromDecimal(u, scale, b.conv)
	if err == nil {
		b.vals[i] = x
	}
	return err
}

func (b *nullBuf[T]) setString(i int, s string) error {
	x, err := b.tc.fromString(s, b.conv)
	if err == nil {
		b.vals[i] = b.hold(x)
	}
	return err
}

func (b *nullBuf[T]) setDecimal(i int, u int64, scale int32) error {
	x, err := b.tc.fromDecimal(u, scale, b.conv)
	if err == nil {
		b.vals[i] = b.hold(x)
	}
	return err
}

func (b *nnull[T]) setString(i int, s string) error {
	x, err := b.tc.fromString(s, b.conv)
	if err == nil {
		b.nulls[i], b.vals[i] = 0, x
	}
	return err
}

func (b *nnull[T]) setDecimal(i int, u int64, scale int32) error {
	x, err := b.tc.fromDecimal(u, scale, b.conv)
	if err == nil {
		b.nulls[i], b.vals[i] = 0, x
	}
	return err
}

// ntime is a native DateTime or Date buffer: the wire's seconds or days
// (the embedded buffer, which the INSERT sends), plus each value's instant
// in nanoseconds, which the column's unit drops. Block.Time reads the
// instant, so that a transform on the columnar path sees the event time at
// the field's precision, as the row path's do (a rate in force from
// 10:00:00.500, a velocity window ending at a millisecond). The driver's
// time buffers hold time.Time as put and need no copy.
type ntime struct {
	cellbuf
	conv     func(any) (time.Time, error) // the column's timeIn, which the wire buffer's converter starts from
	nullable bool
	at       []int64 // unix nanoseconds (the columns' range fits); nullAt for NULL
}

const nullAt = math.MinInt64

func ntimeOf(wire colbuf, conv func(any) (time.Time, error), nullable bool) colbuf {
	return &ntime{cellbuf: wire.(cellbuf), conv: conv, nullable: nullable}
}

// absent is what at holds for a nil value: NULL, or the zero value (the
// epoch, as the wire's 0) of a NOT NULL column.
func (b *ntime) absent() int64 {
	if b.nullable {
		return nullAt
	}
	return 0
}

func (b *ntime) add(v any) error {
	if v == nil {
		b.at = append(b.at, b.absent())
		return b.cellbuf.add(nil)
	}
	t, err := b.conv(v) // the wire buffer's converter's error
	if err != nil {
		return err
	}
	return b.putTime(t)
}

func (b *ntime) putTime(t time.Time) error {
	if err := b.cellbuf.putTime(t); err != nil {
		return err
	}
	b.at = append(b.at, t.UnixNano())
	return nil
}

// The other unboxed puts are not times: the converter's error.
func (b *ntime) putString(s string) error                 { return b.add(s) }
func (b *ntime) putInt(v int64) error                     { return b.add(v) }
func (b *ntime) putDecimal(u int64, scale int32) error    { return b.add(decimal.New(u, -scale)) }
func (b *ntime) setInt(i int, v int64) error              { return b.set(i, v) }
func (b *ntime) setString(i int, s string) error          { return b.set(i, s) }
func (b *ntime) setDecimal(i int, u int64, s int32) error { return b.set(i, decimal.New(u, -s)) }

func (b *ntime) set(i int, v any) error {
	if v == nil {
		b.at[i] = b.absent()
		return b.cellbuf.set(i, nil)
	}
	t, err := b.conv(v)
	if err != nil {
		return err
	}
	if err := b.cellbuf.set(i, t); err != nil {
		return err
	}
	b.at[i] = t.UnixNano()
	return nil
}

// setTime is set for a time, unboxed: the wire buffer's typed converter
// checks the range as the column's converter does.
func (b *ntime) setTime(i int, t time.Time) error {
	ts, ok := b.cellbuf.(interface{ setTime(int, time.Time) error })
	if !ok {
		return b.set(i, t)
	}
	if err := ts.setTime(i, t); err != nil {
		return err
	}
	b.at[i] = t.UnixNano()
	return nil
}

func (b *buf[T]) setTime(i int, t time.Time) error {
	x, err := b.tc.fromTime(t, b.conv)
	if err == nil {
		b.vals[i] = x
	}
	return err
}

func (b *nnull[T]) setTime(i int, t time.Time) error {
	x, err := b.tc.fromTime(t, b.conv)
	if err == nil {
		b.nulls[i], b.vals[i] = 0, x
	}
	return err
}

func (b *ntime) truncate(n int) { b.cellbuf.truncate(n); b.at = b.at[:n] }
func (b *ntime) padTo(n int) {
	for len(b.at) < n {
		b.at = append(b.at, b.absent())
	}
	b.cellbuf.padTo(n)
}
func (b *ntime) reset() { b.cellbuf.reset(); b.at = b.at[:0] }

// cell returns column col's buffer for a write.
func (b *Block) cell(col int) cellbuf {
	if len(b.cells) != len(b.bufs.cols) {
		b.cells = b.cells[:0]
		for _, c := range b.bufs.cols {
			b.cells = append(b.cells, c.(cellbuf))
		}
	}
	return b.cells[col]
}

func (b *Block) ColumnKind(col int) (record.CellKind, bool) {
	if col < 0 {
		return record.CellOther, false
	}
	ct := b.t.types[col]
	switch ct.base {
	case "String", "FixedString", "Enum8", "Enum16":
		return record.CellString, ct.nullable
	case "Decimal":
		if ct.precision <= 18 {
			return record.CellDecimal, ct.nullable
		}
	case "DateTime", "Date":
		return record.CellTime, ct.nullable
	}
	return record.CellOther, ct.nullable
}

func (b *Block) String(col, row int) (string, bool) {
	if col < 0 {
		return "", false
	}
	b.sync()
	switch c := b.bufs.cols[col].(type) {
	case *buf[string]:
		return c.vals[row], true
	case *nullBuf[string]:
		if p := c.vals[row]; p != nil {
			return *p, true
		}
	case *nnull[string]:
		if c.nulls[row] == 0 {
			return c.vals[row], true
		}
	case *nstr:
		if !c.nullable || c.nulls[row] == 0 {
			return c.str(row), true
		}
	case *buf[proto.Enum8]:
		return b.symbol(col, int16(c.vals[row]))
	case *nnull[proto.Enum8]:
		if c.nulls[row] == 0 {
			return b.symbol(col, int16(c.vals[row]))
		}
	case *buf[proto.Enum16]:
		return b.symbol(col, int16(c.vals[row]))
	case *nnull[proto.Enum16]:
		if c.nulls[row] == 0 {
			return b.symbol(col, int16(c.vals[row]))
		}
	}
	return "", false
}

// symbol is the name of a native enum column's number.
func (b *Block) symbol(col int, v int16) (string, bool) {
	ct := b.t.types[col]
	for i, n := range ct.values {
		if n == v {
			return ct.symbols[i], true
		}
	}
	return "", false
}

func (b *Block) Decimal(col, row int) (int64, int32, bool) {
	if col < 0 {
		return 0, 0, false
	}
	b.sync()
	scale := b.t.types[col].scale
	switch c := b.bufs.cols[col].(type) {
	case *buf[decimal.Decimal]:
		return unscaled(c.vals[row], scale)
	case *nullBuf[decimal.Decimal]:
		if p := c.vals[row]; p != nil {
			return unscaled(*p, scale)
		}
	case *buf[proto.Decimal64]:
		return int64(c.vals[row]), scale, true
	case *nnull[proto.Decimal64]:
		if c.nulls[row] == 0 {
			return int64(c.vals[row]), scale, true
		}
	case *buf[proto.Decimal32]:
		return int64(c.vals[row]), scale, true
	case *nnull[proto.Decimal32]:
		if c.nulls[row] == 0 {
			return int64(c.vals[row]), scale, true
		}
	}
	return 0, 0, false
}

// unscaled returns a driver Decimal cell (a value the column accepted) as
// an int64 and its scale: as it is when its coefficient fits 18 digits,
// else at the column's scale, where a Decimal(P<=18) value fits.
func unscaled(d decimal.Decimal, colScale int32) (int64, int32, bool) {
	if e := d.Exponent(); e <= 0 && d.NumDigits() <= 18 {
		return d.CoefficientInt64(), -e, true
	}
	if d.Sign() == 0 {
		return 0, colScale, true
	}
	return d.Shift(colScale).IntPart(), colScale, true
}

func (b *Block) Time(col, row int) (time.Time, bool) {
	if col < 0 {
		return time.Time{}, false
	}
	b.sync()
	switch c := b.bufs.cols[col].(type) {
	case *buf[time.Time]:
		return c.vals[row], true
	case *nullBuf[time.Time]:
		if p := c.vals[row]; p != nil {
			return *p, true
		}
	case *ntime:
		if at := c.at[row]; at != nullAt {
			return time.Unix(0, at).UTC(), true
		}
	}
	return time.Time{}, false
}

func (b *Block) SetString(col, row int, s string) error {
	if col < 0 {
		return nil
	}
	b.sync()
	return b.named(col, b.cell(col).setString(row, s))
}

func (b *Block) SetDecimal(col, row int, unscaled int64, scale int32) error {
	if col < 0 {
		return nil
	}
	b.sync()
	return b.named(col, b.cell(col).setDecimal(row, unscaled, scale))
}

func (b *Block) SetStrings(col, row int, ss []string) error {
	if col < 0 {
		return nil
	}
	b.sync()
	if c, ok := b.bufs.cols[col].(*buf[[]string]); ok {
		c.vals[row] = ss // what stringsIn makes of a []string
		return nil
	}
	return b.named(col, b.bufs.cols[col].set(row, ss))
}

func (b *Block) SetNull(col, row int) error {
	if col < 0 {
		return nil
	}
	b.sync()
	return b.named(col, b.bufs.cols[col].set(row, nil))
}

// Marks returns the named per-row bytes (record.Cells), zero at the start
// of each batch (Table.Block empties them).
func (b *Block) Marks(name string) []uint8 {
	if b.marks == nil {
		b.marks = map[string][]uint8{}
	}
	m := b.marks[name]
	if n := len(m); n != b.rows {
		if n > b.rows {
			n = 0
		}
		m = slices.Grow(m[:n], b.rows-n)[:b.rows]
		clear(m[n:])
		b.marks[name] = m
	}
	return m
}

// named says which column an overwrite failed in, as Prepare does.
func (b *Block) named(col int, err error) error {
	if err == nil {
		return nil
	}
	c := b.t.cols[col]
	return fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
}
