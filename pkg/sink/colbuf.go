package sink

import (
	"fmt"
	"math"
	"time"

	"github.com/shopspring/decimal"
)

// colbuf is one column of a batch being built: values are appended row by
// row (converted exactly to the column's Go type) and handed to
// clickhouse-go as one typed slice. Buffers are reused between batches.
type colbuf interface {
	add(v any) error
	// truncate drops values past n (a row that failed half-way).
	truncate(n int)
	// slice is what batch.Column(i).Append receives.
	slice() any
	reset()
}

type buf[T any] struct {
	vals []T
	conv func(any) (T, error)
	zero T // stands for an absent value in a NOT NULL column
}

func (b *buf[T]) add(v any) error {
	if v == nil {
		b.vals = append(b.vals, b.zero)
		return nil
	}
	x, err := b.conv(v)
	if err != nil {
		return err
	}
	b.vals = append(b.vals, x)
	return nil
}
func (b *buf[T]) truncate(n int) { clear(b.vals[n:]); b.vals = b.vals[:n] }
func (b *buf[T]) slice() any     { return b.vals }
func (b *buf[T]) reset()         { clear(b.vals); b.vals = b.vals[:0] }

// nullBuf hands clickhouse-go a []*T. The values pointed to live in
// chunks rather than in one heap object per value: a full chunk is never
// grown in place (that would move values that vals points to); a new,
// larger one is started instead. reset keeps only the last chunk, which
// then holds a whole batch, so a steady stream allocates nothing per row.
type nullBuf[T any] struct {
	vals  []*T
	chunk []T
	conv  func(any) (T, error)
}

func (b *nullBuf[T]) add(v any) error {
	if v == nil {
		b.vals = append(b.vals, nil)
		return nil
	}
	x, err := b.conv(v)
	if err != nil {
		return err
	}
	if len(b.chunk) == cap(b.chunk) {
		b.chunk = make([]T, 0, max(64, 2*cap(b.chunk)))
	}
	b.chunk = append(b.chunk, x)
	b.vals = append(b.vals, &b.chunk[len(b.chunk)-1])
	return nil
}
func (b *nullBuf[T]) truncate(n int) { clear(b.vals[n:]); b.vals = b.vals[:n] }
func (b *nullBuf[T]) slice() any     { return b.vals }

// reset may reuse the chunk: nothing points into it once vals is cleared
// (clickhouse-go copies the values when they are appended to a batch).
func (b *nullBuf[T]) reset() {
	clear(b.vals)
	b.vals = b.vals[:0]
	clear(b.chunk)
	b.chunk = b.chunk[:0]
}

func mk[T any](nullable bool, conv func(any) (T, error), zero T) colbuf {
	if nullable {
		return &nullBuf[T]{conv: conv}
	}
	return &buf[T]{conv: conv, zero: zero}
}

// newColbuf picks the buffer for a column type.
func newColbuf(t *colType) (colbuf, error) {
	n := t.nullable
	switch t.base {
	case "String", "FixedString":
		return mk(n, toString, ""), nil
	case "Enum8", "Enum16":
		if len(t.symbols) == 0 {
			break
		}
		return mk(n, enumIn(t.symbols), t.symbols[0]), nil
	case "UInt8":
		return mk(n, intIn[uint8](0, math.MaxUint8), 0), nil
	case "UInt16":
		return mk(n, intIn[uint16](0, math.MaxUint16), 0), nil
	case "UInt32":
		return mk(n, intIn[uint32](0, math.MaxUint32), 0), nil
	case "UInt64":
		return mk(n, intIn[uint64](0, -1), 0), nil
	case "Int8":
		return mk(n, intIn[int8](math.MinInt8, math.MaxInt8), 0), nil
	case "Int16":
		return mk(n, intIn[int16](math.MinInt16, math.MaxInt16), 0), nil
	case "Int32":
		return mk(n, intIn[int32](math.MinInt32, math.MaxInt32), 0), nil
	case "Int64":
		return mk(n, intIn[int64](math.MinInt64, math.MaxInt64), 0), nil
	case "Float32":
		return mk(n, func(v any) (float32, error) { f, err := toFloat64(v); return float32(f), err }, 0), nil
	case "Float64":
		return mk(n, toFloat64, 0), nil
	case "Decimal":
		return mk(n, decimalIn(t.precision, t.scale), decimal.Zero), nil
	case "DateTime":
		return mk(n, timeIn(dateTimeMin, dateTimeMax), dateTimeMin), nil
	case "Date":
		return mk(n, timeIn(dateTimeMin, dateMax), dateTimeMin), nil
	case "Array":
		switch t.elem.base {
		case "String", "FixedString":
			if t.elem.nullable {
				break
			}
			return &buf[[]string]{conv: stringsIn, zero: []string{}}, nil
		}
	}
	return nil, fmt.Errorf("column type %s is not supported by Sluice yet", t.base)
}

// Compile-time checks that the buffers serve the interface.
var (
	_ colbuf = (*buf[time.Time])(nil)
	_ colbuf = (*nullBuf[string])(nil)
)
