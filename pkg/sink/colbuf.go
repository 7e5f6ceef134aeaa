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

	// The columnar path (block.go): typed puts that convert exactly as
	// add does, without boxing the value; set overwrites row i; view and
	// gather hand over a range or a selection of rows.
	putString(string) error
	putInt(int64) error
	putDecimal(unscaled int64, scale int32) error
	putTime(time.Time) error
	set(i int, v any) error
	setInt(i int, v int64) error
	view(lo, hi int) any
	gather(rows []int) any
	len() int
	// padTo appends what add(nil) appends until the buffer holds n
	// values (the columnar path pads a column nobody put in one go).
	padTo(n int)
}

// typed holds a column's converters from unboxed values; a nil one falls
// back to the boxed conversion.
type typed[T any] struct {
	str func(string) (T, error)
	i64 func(int64) (T, error)
	dec func(int64, int32) (T, error)
	tm  func(time.Time) (T, error)
}

func (tc *typed[T]) fromString(s string, conv func(any) (T, error)) (T, error) {
	if tc != nil && tc.str != nil {
		return tc.str(s)
	}
	return conv(s)
}

func (tc *typed[T]) fromInt(v int64, conv func(any) (T, error)) (T, error) {
	if tc != nil && tc.i64 != nil {
		return tc.i64(v)
	}
	return conv(v)
}

func (tc *typed[T]) fromDecimal(u int64, scale int32, conv func(any) (T, error)) (T, error) {
	if tc != nil && tc.dec != nil {
		return tc.dec(u, scale)
	}
	return conv(decimal.New(u, -scale))
}

func (tc *typed[T]) fromTime(t time.Time, conv func(any) (T, error)) (T, error) {
	if tc != nil && tc.tm != nil {
		return tc.tm(t)
	}
	return conv(t)
}

// stringAsIs is the typed converter of a column that holds a string as
// it is (String, FixedString); read-only, so buffers share it.
var stringAsIs = &typed[string]{str: func(s string) (string, error) { return s, nil }}

type buf[T any] struct {
	vals []T
	conv func(any) (T, error)
	zero T // stands for an absent value in a NOT NULL column
	tc   *typed[T]
	out  []T // gather's reused result
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
func (b *buf[T]) padTo(n int) {
	for len(b.vals) < n {
		b.vals = append(b.vals, b.zero)
	}
}
func (b *buf[T]) slice() any { return b.vals }
func (b *buf[T]) reset()     { clear(b.vals); b.vals = b.vals[:0] }

// nullBuf hands clickhouse-go a []*T. The values pointed to live in
// chunks rather than in one heap object per value: a full chunk is never
// grown in place (that would move values that vals points to); a new,
// larger one is started instead. reset keeps only the last chunk, which
// then holds a whole batch, so a steady stream allocates nothing per row.
type nullBuf[T any] struct {
	vals  []*T
	chunk []T
	conv  func(any) (T, error)
	tc    *typed[T]
	out   []*T
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
	b.vals = append(b.vals, b.hold(x))
	return nil
}
func (b *nullBuf[T]) truncate(n int) { clear(b.vals[n:]); b.vals = b.vals[:n] }
func (b *nullBuf[T]) padTo(n int) {
	for len(b.vals) < n {
		b.vals = append(b.vals, nil)
	}
}
func (b *nullBuf[T]) slice() any { return b.vals }

// reset may reuse the chunk: nothing points into it once vals is cleared
// (clickhouse-go copies the values when they are appended to a batch).
func (b *nullBuf[T]) reset() {
	clear(b.vals)
	b.vals = b.vals[:0]
	clear(b.chunk)
	b.chunk = b.chunk[:0]
}

func mk[T any](nullable bool, conv func(any) (T, error), zero T) colbuf {
	return mkTyped(nullable, conv, zero, nil)
}

func mkTyped[T any](nullable bool, conv func(any) (T, error), zero T, tc *typed[T]) colbuf {
	if nullable {
		return &nullBuf[T]{conv: conv, tc: tc}
	}
	return &buf[T]{conv: conv, zero: zero, tc: tc}
}

func (b *buf[T]) put(x T, err error) error {
	if err != nil {
		return err
	}
	b.vals = append(b.vals, x)
	return nil
}
func (b *buf[T]) putString(s string) error { return b.put(b.tc.fromString(s, b.conv)) }
func (b *buf[T]) putInt(v int64) error     { return b.put(b.tc.fromInt(v, b.conv)) }
func (b *buf[T]) putDecimal(u int64, scale int32) error {
	return b.put(b.tc.fromDecimal(u, scale, b.conv))
}
func (b *buf[T]) putTime(t time.Time) error { return b.put(b.tc.fromTime(t, b.conv)) }
func (b *buf[T]) set(i int, v any) error {
	if v == nil {
		b.vals[i] = b.zero
		return nil
	}
	x, err := b.conv(v)
	if err == nil {
		b.vals[i] = x
	}
	return err
}
func (b *buf[T]) setInt(i int, v int64) error {
	x, err := b.tc.fromInt(v, b.conv)
	if err == nil {
		b.vals[i] = x
	}
	return err
}
func (b *buf[T]) view(lo, hi int) any { return b.vals[lo:hi:hi] }
func (b *buf[T]) gather(rows []int) any {
	clear(b.out)
	b.out = b.out[:0]
	for _, r := range rows {
		b.out = append(b.out, b.vals[r])
	}
	return b.out
}
func (b *buf[T]) len() int { return len(b.vals) }

func (b *nullBuf[T]) put(x T, err error) error {
	if err != nil {
		return err
	}
	b.vals = append(b.vals, b.hold(x))
	return nil
}

// hold stores x in the chunk and returns where.
func (b *nullBuf[T]) hold(x T) *T {
	if len(b.chunk) == cap(b.chunk) {
		b.chunk = make([]T, 0, max(64, 2*cap(b.chunk)))
	}
	b.chunk = append(b.chunk, x)
	return &b.chunk[len(b.chunk)-1]
}
func (b *nullBuf[T]) putString(s string) error { return b.put(b.tc.fromString(s, b.conv)) }
func (b *nullBuf[T]) putInt(v int64) error     { return b.put(b.tc.fromInt(v, b.conv)) }
func (b *nullBuf[T]) putDecimal(u int64, scale int32) error {
	return b.put(b.tc.fromDecimal(u, scale, b.conv))
}
func (b *nullBuf[T]) putTime(t time.Time) error { return b.put(b.tc.fromTime(t, b.conv)) }
func (b *nullBuf[T]) set(i int, v any) error {
	if v == nil {
		b.vals[i] = nil
		return nil
	}
	x, err := b.conv(v)
	if err == nil {
		b.vals[i] = b.hold(x)
	}
	return err
}
func (b *nullBuf[T]) setInt(i int, v int64) error {
	x, err := b.tc.fromInt(v, b.conv)
	if err == nil {
		b.vals[i] = b.hold(x)
	}
	return err
}
func (b *nullBuf[T]) view(lo, hi int) any { return b.vals[lo:hi:hi] }
func (b *nullBuf[T]) gather(rows []int) any {
	clear(b.out)
	b.out = b.out[:0]
	for _, r := range rows {
		b.out = append(b.out, b.vals[r])
	}
	return b.out
}
func (b *nullBuf[T]) len() int { return len(b.vals) }

// newColbuf picks the buffer for a column type.
func newColbuf(t *colType) (colbuf, error) {
	n := t.nullable
	switch t.base {
	case "String", "FixedString":
		return mkTyped(n, toString, "", stringAsIs), nil
	case "Enum8", "Enum16":
		if len(t.symbols) == 0 {
			break
		}
		return mkTyped(n, enumIn(t.symbols), t.symbols[0], &typed[string]{str: enumString(t.symbols)}), nil
	case "UInt8":
		return mkInt[uint8](n, 0, math.MaxUint8), nil
	case "UInt16":
		return mkInt[uint16](n, 0, math.MaxUint16), nil
	case "UInt32":
		return mkInt[uint32](n, 0, math.MaxUint32), nil
	case "UInt64":
		return mkInt[uint64](n, 0, -1), nil
	case "Int8":
		return mkInt[int8](n, math.MinInt8, math.MaxInt8), nil
	case "Int16":
		return mkInt[int16](n, math.MinInt16, math.MaxInt16), nil
	case "Int32":
		return mkInt[int32](n, math.MinInt32, math.MaxInt32), nil
	case "Int64":
		return mkInt[int64](n, math.MinInt64, math.MaxInt64), nil
	case "Float32":
		return mk(n, func(v any) (float32, error) { f, err := toFloat64(v); return float32(f), err }, 0), nil
	case "Float64":
		return mk(n, toFloat64, 0), nil
	case "Decimal":
		conv := decimalIn(t.precision, t.scale)
		return mkTyped(n, conv, decimal.Zero, &typed[decimal.Decimal]{dec: decimalFrom(t.precision, t.scale, conv)}), nil
	case "DateTime":
		return mkTime(n, dateTimeMin, dateTimeMax), nil
	case "Date":
		return mkTime(n, dateTimeMin, dateMax), nil
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

// mkInt makes an integer column; an int64 is range-checked as intIn does.
func mkInt[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64](nullable bool, lo, hi int64) colbuf {
	return mkTyped(nullable, intIn[T](lo, hi), 0, &typed[T]{i64: func(v int64) (T, error) {
		if v < lo || (hi >= 0 && v > hi) {
			return 0, fmt.Errorf("%d is out of range %d..%d", v, lo, hi)
		}
		return T(v), nil
	}})
}

func mkTime(nullable bool, lo, hi time.Time) colbuf {
	conv := timeIn(lo, hi)
	return mkTyped(nullable, conv, dateTimeMin, &typed[time.Time]{tm: func(t time.Time) (time.Time, error) {
		if t.Before(lo) || !t.Before(hi) {
			return conv(t) // the error
		}
		return t, nil
	}})
}

// decimalFrom converts unscaled × 10^-scale to the column's scale with
// integer arithmetic; what does not fit, and the rare value whose
// rescaling would overflow an int64, goes through conv (the error, or the
// exact big-number path).
func decimalFrom(precision, colScale int32, conv func(any) (decimal.Decimal, error)) func(int64, int32) (decimal.Decimal, error) {
	var limit int64 // 10^precision, 0 when it exceeds an int64
	if precision <= 18 {
		limit = pow10[precision]
	}
	return func(u int64, scale int32) (decimal.Decimal, error) {
		v, ok := u, true
		switch {
		case scale > colScale:
			if d := scale - colScale; d > 18 || v%pow10[d] != 0 {
				ok = false
			} else {
				v /= pow10[d]
			}
		case scale < colScale:
			if d := colScale - scale; d > 18 || v > math.MaxInt64/pow10[d] || v < math.MinInt64/pow10[d] {
				ok = false
			} else {
				v *= pow10[d]
			}
		}
		if !ok || v == math.MinInt64 || (limit != 0 && (v >= limit || -v >= limit)) {
			return conv(decimal.New(u, -scale))
		}
		// Fits: the value as the row path holds it (the driver rescales).
		return decimal.New(u, -scale), nil
	}
}

var pow10 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return
}()

// Compile-time checks that the buffers serve the interface.
var (
	_ colbuf = (*buf[time.Time])(nil)
	_ colbuf = (*nullBuf[string])(nil)
)
