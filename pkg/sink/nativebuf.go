package sink

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/sink/native"
)

// The native writer's column buffers (insert_protocol: native). They
// hold each column in its wire representation, so the INSERT hands the
// slices to ch-go's proto columns as they are: decimals as scaled
// integers (proto.Decimal64), DateTime as seconds (proto.DateTime), Date
// as days, enums as their numbers (proto.Enum8), a Nullable column as its
// null map plus the values. The conversions check exactly what the
// driver's buffers check, with the same messages (they start from the
// same converters), so both writers store the same data and fail the same
// rows for the same reasons.

// nullCols is what a native Nullable buffer hands over: the null map
// (1 = NULL) and the values of every row.
type nullCols[T any] struct {
	nulls []uint8
	vals  []T
}

func (c nullCols[T]) parts() ([]uint8, any) { return c.nulls, c.vals }

type nullParts interface{ parts() ([]uint8, any) }

// nnull is a native Nullable(T) buffer.
type nnull[T any] struct {
	nulls []uint8
	vals  []T
	conv  func(any) (T, error)
	tc    *typed[T]
	zero  T
	outN  []uint8
	outV  []T
}

func (b *nnull[T]) add(v any) error {
	if v == nil {
		b.nulls, b.vals = append(b.nulls, 1), append(b.vals, b.zero)
		return nil
	}
	x, err := b.conv(v)
	return b.put(x, err)
}
func (b *nnull[T]) put(x T, err error) error {
	if err != nil {
		return err
	}
	b.nulls, b.vals = append(b.nulls, 0), append(b.vals, x)
	return nil
}
func (b *nnull[T]) truncate(n int) {
	clear(b.vals[n:])
	b.nulls, b.vals = b.nulls[:n], b.vals[:n]
}
func (b *nnull[T]) padTo(n int) {
	for len(b.vals) < n {
		b.nulls, b.vals = append(b.nulls, 1), append(b.vals, b.zero)
	}
}
func (b *nnull[T]) slice() any { return nullCols[T]{b.nulls, b.vals} }
func (b *nnull[T]) reset() {
	clear(b.vals)
	b.nulls, b.vals = b.nulls[:0], b.vals[:0]
}
func (b *nnull[T]) putString(s string) error { return b.put(b.tc.fromString(s, b.conv)) }
func (b *nnull[T]) putInt(v int64) error     { return b.put(b.tc.fromInt(v, b.conv)) }
func (b *nnull[T]) putDecimal(u int64, scale int32) error {
	return b.put(b.tc.fromDecimal(u, scale, b.conv))
}
func (b *nnull[T]) putTime(t time.Time) error { return b.put(b.tc.fromTime(t, b.conv)) }
func (b *nnull[T]) set(i int, v any) error {
	if v == nil {
		b.nulls[i], b.vals[i] = 1, b.zero
		return nil
	}
	x, err := b.conv(v)
	if err == nil {
		b.nulls[i], b.vals[i] = 0, x
	}
	return err
}
func (b *nnull[T]) setInt(i int, v int64) error {
	x, err := b.tc.fromInt(v, b.conv)
	if err == nil {
		b.nulls[i], b.vals[i] = 0, x
	}
	return err
}
func (b *nnull[T]) view(lo, hi int) any {
	return nullCols[T]{b.nulls[lo:hi:hi], b.vals[lo:hi:hi]}
}
func (b *nnull[T]) gather(rows []int) any {
	clear(b.outV)
	b.outN, b.outV = b.outN[:0], b.outV[:0]
	for _, r := range rows {
		b.outN, b.outV = append(b.outN, b.nulls[r]), append(b.outV, b.vals[r])
	}
	return nullCols[T]{b.outN, b.outV}
}
func (b *nnull[T]) len() int { return len(b.vals) }

func nmk[T any](nullable bool, conv func(any) (T, error), zero T, tc *typed[T]) colbuf {
	if nullable {
		return &nnull[T]{conv: conv, zero: zero, tc: tc}
	}
	return &buf[T]{conv: conv, zero: zero, tc: tc}
}

// then converts what a driver converter accepted into the wire form.
func then[A, B any](conv func(any) (A, error), f func(A) B) func(any) (B, error) {
	return func(v any) (B, error) {
		a, err := conv(v)
		if err != nil {
			var zero B
			return zero, err
		}
		return f(a), nil
	}
}

// newNativeColbuf picks the native buffer for a column type; the types
// are newColbuf's but Decimal above precision 18.
func newNativeColbuf(t *colType) (colbuf, error) {
	n := t.nullable
	switch t.base {
	case "String":
		return newNstr(n), nil
	case "FixedString":
		return nmk(n, toString, "", stringAsIs), nil
	case "Enum8", "Enum16":
		if len(t.symbols) == 0 || len(t.values) != len(t.symbols) {
			break
		}
		num := make(map[string]int16, len(t.symbols))
		for i, s := range t.symbols {
			num[s] = t.values[i]
		}
		check := enumString(t.symbols)
		str := func(s string) (int16, error) {
			if _, err := check(s); err != nil {
				return 0, err
			}
			return num[s], nil
		}
		conv := then(enumIn(t.symbols), func(s string) int16 { return num[s] })
		if t.base == "Enum8" {
			return nmk(n, then(conv, func(v int16) proto.Enum8 { return proto.Enum8(v) }), proto.Enum8(t.values[0]),
				&typed[proto.Enum8]{str: func(s string) (proto.Enum8, error) { v, err := str(s); return proto.Enum8(v), err }}), nil
		}
		return nmk(n, then(conv, func(v int16) proto.Enum16 { return proto.Enum16(v) }), proto.Enum16(t.values[0]),
			&typed[proto.Enum16]{str: func(s string) (proto.Enum16, error) { v, err := str(s); return proto.Enum16(v), err }}), nil
	case "UInt8":
		return nmkInt[uint8](n, 0, math.MaxUint8), nil
	case "UInt16":
		return nmkInt[uint16](n, 0, math.MaxUint16), nil
	case "UInt32":
		return nmkInt[uint32](n, 0, math.MaxUint32), nil
	case "UInt64":
		return nmkInt[uint64](n, 0, -1), nil
	case "Int8":
		return nmkInt[int8](n, math.MinInt8, math.MaxInt8), nil
	case "Int16":
		return nmkInt[int16](n, math.MinInt16, math.MaxInt16), nil
	case "Int32":
		return nmkInt[int32](n, math.MinInt32, math.MaxInt32), nil
	case "Int64":
		return nmkInt[int64](n, math.MinInt64, math.MaxInt64), nil
	case "Float32":
		return nmk(n, func(v any) (float32, error) { f, err := toFloat64(v); return float32(f), err }, 0, nil), nil
	case "Float64":
		return nmk(n, toFloat64, 0, nil), nil
	case "Decimal":
		switch {
		case t.precision <= 9:
			return nmkDecimal[proto.Decimal32](n, t.precision, t.scale), nil
		case t.precision <= 18:
			return nmkDecimal[proto.Decimal64](n, t.precision, t.scale), nil
		}
		return nil, fmt.Errorf("column type Decimal(%d, %d) is not supported by the native writer (clickhouse.insert_protocol: driver)", t.precision, t.scale)
	case "DateTime":
		conv := timeIn(dateTimeMin, dateTimeMax)
		return ntimeOf(nmk(n, then(conv, proto.ToDateTime), 0, &typed[proto.DateTime]{tm: func(t time.Time) (proto.DateTime, error) {
			if t.Before(dateTimeMin) || !t.Before(dateTimeMax) {
				_, err := conv(t)
				return 0, err
			}
			return proto.ToDateTime(t), nil
		}}), conv, n), nil
	case "Date":
		conv := timeIn(dateTimeMin, dateMax)
		return ntimeOf(nmk(n, then(conv, proto.ToDate), 0, &typed[proto.Date]{tm: func(t time.Time) (proto.Date, error) {
			if t.Before(dateTimeMin) || !t.Before(dateMax) {
				_, err := conv(t)
				return 0, err
			}
			return proto.ToDate(t), nil
		}}), conv, n), nil
	case "Array":
		if (t.elem.base == "String" || t.elem.base == "FixedString") && !t.elem.nullable {
			return &buf[[]string]{conv: stringsIn, zero: []string{}}, nil
		}
	}
	return nil, fmt.Errorf("column type %s is not supported by Sluice yet", t.base)
}

func nmkInt[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64](nullable bool, lo, hi int64) colbuf {
	return nmk(nullable, intIn[T](lo, hi), 0, &typed[T]{i64: func(v int64) (T, error) {
		if v < lo || (hi >= 0 && v > hi) {
			return 0, fmt.Errorf("%d is out of range %d..%d", v, lo, hi)
		}
		return T(v), nil
	}})
}

// nmkDecimal holds a Decimal(P, S) as its value × 10^S. An unscaled value
// of another scale is rescaled with integer arithmetic when that is exact
// and fits; anything else goes through the driver's exact converter (its
// error, or the rare value the fast path cannot hold).
func nmkDecimal[T ~int32 | ~int64](nullable bool, precision, colScale int32) colbuf {
	exact := decimalIn(precision, colScale)
	conv := then(exact, func(d decimal.Decimal) T { return T(d.Shift(colScale).IntPart()) })
	limit := pow10[precision]
	fast := func(u int64, scale int32) (T, error) {
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
		if !ok || v == math.MinInt64 || v >= limit || -v >= limit {
			return conv(decimal.New(u, -scale))
		}
		return T(v), nil
	}
	return nmk(nullable, conv, 0, &typed[T]{dec: fast})
}

// nativeColumn makes the proto column of what a native buffer handed
// over (slice, view or gather) for a column of type ct, spelled typ.
func nativeColumn(v any, ct *colType, typ string) (proto.ColInput, error) {
	switch x := v.(type) {
	case []string:
		if ct.base == "FixedString" {
			size, err := fixedSize(typ)
			if err != nil {
				return nil, err
			}
			for _, s := range x {
				if len(s) > size {
					return nil, fmt.Errorf("input value with length %d exceeds FixedString(%d) capacity", len(s), size)
				}
			}
			return native.FixedStrings{Vals: x, N: size}, nil
		}
		return native.Strings(x), nil
	case native.SpanStrings:
		return x, nil
	case [][]string:
		return native.StringArrays(x), nil
	case []proto.Enum8:
		return proto.ColEnum8(x), nil
	case []proto.Enum16:
		return proto.ColEnum16(x), nil
	case []proto.Decimal32:
		return proto.ColDecimal32(x), nil
	case []proto.Decimal64:
		return proto.ColDecimal64(x), nil
	case []proto.DateTime:
		return &proto.ColDateTime{Data: x}, nil
	case []proto.Date:
		return proto.ColDate(x), nil
	case []uint8:
		return proto.ColUInt8(x), nil
	case []uint16:
		return proto.ColUInt16(x), nil
	case []uint32:
		return proto.ColUInt32(x), nil
	case []uint64:
		return proto.ColUInt64(x), nil
	case []int8:
		return proto.ColInt8(x), nil
	case []int16:
		return proto.ColInt16(x), nil
	case []int32:
		return proto.ColInt32(x), nil
	case []int64:
		return proto.ColInt64(x), nil
	case []float32:
		return proto.ColFloat32(x), nil
	case []float64:
		return proto.ColFloat64(x), nil
	case nullParts:
		nulls, vals := x.parts()
		inner := *ct
		inner.nullable = false
		in, err := nativeColumn(vals, &inner, strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")"))
		if err != nil {
			return nil, err
		}
		return native.Nullable{Nulls: nulls, Values: in}, nil
	}
	return nil, fmt.Errorf("no native column for %T", v)
}

func fixedSize(typ string) (int, error) {
	in, ok := strings.CutPrefix(strings.TrimSpace(typ), "FixedString(")
	if ok {
		if n, err := strconv.Atoi(strings.TrimSuffix(in, ")")); err == nil && n > 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("cannot read the size of %s", typ)
}
