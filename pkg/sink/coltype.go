package sink

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// colType is a parsed ClickHouse column type, as system.columns spells it.
type colType struct {
	base      string // String, UInt32, Decimal, DateTime, Enum8, Array, ...
	nullable  bool
	elem      *colType // Array element
	precision int32    // Decimal
	scale     int32    // Decimal
	symbols   []string // Enum8/16
	values    []int16  // Enum8/16: each symbol's number (the native writer sends these)
}

// parseType reads the type names ClickHouse 18.16 and current releases
// report: Nullable(T), LowCardinality(T), Array(T), Decimal(P, S),
// Decimal32/64/128(S), DateTime('tz'), Enum8('a' = 1, ...), FixedString(N).
func parseType(s string) (*colType, error) {
	s = strings.TrimSpace(s)
	inner := func(prefix string) (string, bool) {
		if strings.HasPrefix(s, prefix+"(") && strings.HasSuffix(s, ")") {
			return s[len(prefix)+1 : len(s)-1], true
		}
		return "", false
	}
	if in, ok := inner("LowCardinality"); ok {
		return parseType(in)
	}
	if in, ok := inner("Nullable"); ok {
		t, err := parseType(in)
		if err != nil {
			return nil, err
		}
		t.nullable = true
		return t, nil
	}
	if in, ok := inner("Array"); ok {
		e, err := parseType(in)
		if err != nil {
			return nil, err
		}
		return &colType{base: "Array", elem: e}, nil
	}
	if in, ok := inner("Decimal"); ok {
		parts := strings.Split(in, ",")
		if len(parts) != 2 {
			return nil, fmt.Errorf("cannot read type %q", s)
		}
		p, err1 := strconv.Atoi(strings.TrimSpace(parts[0]))
		sc, err2 := strconv.Atoi(strings.TrimSpace(parts[1]))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("cannot read type %q", s)
		}
		return &colType{base: "Decimal", precision: int32(p), scale: int32(sc)}, nil
	}
	for prefix, prec := range map[string]int32{"Decimal32": 9, "Decimal64": 18, "Decimal128": 38} {
		if in, ok := inner(prefix); ok {
			sc, err := strconv.Atoi(strings.TrimSpace(in))
			if err != nil {
				return nil, fmt.Errorf("cannot read type %q", s)
			}
			return &colType{base: "Decimal", precision: prec, scale: int32(sc)}, nil
		}
	}
	for _, prefix := range []string{"Enum8", "Enum16"} {
		if in, ok := inner(prefix); ok {
			syms, vals := enumSymbols(in), enumValues(in)
			if len(vals) != len(syms) {
				vals = nil // not the writer's to refuse here; newNativeColbuf does
			}
			return &colType{base: prefix, symbols: syms, values: vals}, nil
		}
	}
	for _, prefix := range []string{"DateTime", "FixedString"} {
		if strings.HasPrefix(s, prefix+"(") {
			return &colType{base: prefix}, nil
		}
	}
	switch s {
	case "String", "UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64",
		"Float32", "Float64", "Date", "DateTime":
		return &colType{base: s}, nil
	}
	return nil, fmt.Errorf("column type %s is not supported by Sluice yet", s)
}

// dateTimeMin/Max bound what a DateTime column stores (UInt32 seconds).
// The upper bounds are exclusive (timeIn rejects t >= hi): the first instant
// after the last storable second, 2106-02-07 06:28:15 (math.MaxUint32), and
// after the last storable day, 2149-06-06 (UInt16 days).
var (
	dateTimeMin = time.Unix(0, 0).UTC()
	dateTimeMax = time.Unix(math.MaxUint32+1, 0).UTC()
	dateMax     = time.Date(2149, 6, 7, 0, 0, 0, 0, time.UTC)
)

func toString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	}
	return "", fmt.Errorf("want a string, got %T", v)
}

func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("want an integer, got %T", v)
}

func intIn[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64](lo, hi int64) func(any) (T, error) {
	return func(v any) (T, error) {
		if u, ok := v.(uint64); ok {
			if hi >= 0 && u <= uint64(hi) || hi < 0 {
				return T(u), nil
			}
			return 0, fmt.Errorf("%d is out of range", u)
		}
		n, err := toInt64(v)
		if err != nil {
			return 0, err
		}
		if n < lo || (hi >= 0 && n > hi) {
			return 0, fmt.Errorf("%d is out of range %d..%d", n, lo, hi)
		}
		return T(n), nil
	}
}

func toFloat64(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case int64:
		return float64(x), nil
	}
	return 0, fmt.Errorf("want a number, got %T", v)
}

// decimalIn converts exactly: a value with more fractional digits than the
// column's scale, or more integer digits than precision-scale, is an error,
// never a rounded or wrapped number.
func decimalIn(precision, scale int32) func(any) (decimal.Decimal, error) {
	// limit is 10^(precision-scale), held at exponent -scale: decoders and
	// transforms give values at exactly the column's scale, and a
	// comparison of decimals with equal exponents needs no rescaling (which
	// allocates a big.Int per value).
	limit := decimal.NewFromBigInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(precision)), nil), -scale)
	return func(v any) (decimal.Decimal, error) {
		var d decimal.Decimal
		switch x := v.(type) {
		case decimal.Decimal:
			d = x
		case int32:
			d = decimal.NewFromInt(int64(x))
		case int64:
			d = decimal.NewFromInt(x)
		default:
			return d, fmt.Errorf("want a decimal, got %T", v)
		}
		if !d.Equal(d.Truncate(scale)) {
			return d, fmt.Errorf("%s has more than %d decimal places", d, scale)
		}
		if d.Abs().GreaterThanOrEqual(limit) {
			return d, fmt.Errorf("%s overflows Decimal(%d, %d)", d, precision, scale)
		}
		return d, nil
	}
}

func timeIn(lo, hi time.Time) func(any) (time.Time, error) {
	return func(v any) (time.Time, error) {
		t, ok := v.(time.Time)
		if !ok {
			return t, fmt.Errorf("want a timestamp, got %T", v)
		}
		if t.Before(lo) || !t.Before(hi) {
			return t, fmt.Errorf("%s is outside the column's range %s..%s", t.Format(time.RFC3339Nano), lo.Format(time.RFC3339), hi.Format(time.RFC3339))
		}
		return t, nil
	}
}

func stringsIn(v any) ([]string, error) {
	switch x := v.(type) {
	case []string:
		return x, nil
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d: want a string, got %T", i, e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("want an array of strings, got %T", v)
}

// enumSymbols reads the names of "'A' = 1, 'B' = 2".
func enumSymbols(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.TrimSpace(name)
		if len(name) >= 2 && name[0] == '\'' && name[len(name)-1] == '\'' {
			out = append(out, strings.ReplaceAll(name[1:len(name)-1], "\\'", "'"))
		}
	}
	return out
}

// enumValues reads the numbers of "'A' = 1, 'B' = -2".
func enumValues(s string) []int16 {
	var out []int16
	for _, part := range strings.Split(s, ",") {
		_, num, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil
		}
		v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 16)
		if err != nil {
			return nil
		}
		out = append(out, int16(v))
	}
	return out
}

// enumIn accepts only the enum's own symbols: clickhouse-go would fail the
// whole batch on an unknown one.
func enumIn(symbols []string) func(any) (string, error) {
	in := enumString(symbols)
	return func(v any) (string, error) {
		s, err := toString(v)
		if err != nil {
			return "", err
		}
		return in(s)
	}
}

// enumString is enumIn for a string, unboxed.
func enumString(symbols []string) func(string) (string, error) {
	set := make(map[string]struct{}, len(symbols))
	for _, s := range symbols {
		set[s] = struct{}{}
	}
	return func(s string) (string, error) {
		if _, ok := set[s]; !ok {
			return "", fmt.Errorf("%q is not a symbol of the column's enum", s)
		}
		return s, nil
	}
}
