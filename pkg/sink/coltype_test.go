package sink

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestParseType(t *testing.T) {
	str := &colType{base: "String"}
	tests := []struct {
		in      string
		want    *colType
		wantErr string
	}{
		// Plain types, as both 18.16 and current releases print them.
		{in: "String", want: str},
		{in: "  String ", want: str},
		{in: "UInt8", want: &colType{base: "UInt8"}},
		{in: "UInt16", want: &colType{base: "UInt16"}},
		{in: "UInt32", want: &colType{base: "UInt32"}},
		{in: "UInt64", want: &colType{base: "UInt64"}},
		{in: "Int8", want: &colType{base: "Int8"}},
		{in: "Int64", want: &colType{base: "Int64"}},
		{in: "Float32", want: &colType{base: "Float32"}},
		{in: "Float64", want: &colType{base: "Float64"}},
		{in: "Date", want: &colType{base: "Date"}},
		{in: "DateTime", want: &colType{base: "DateTime"}},
		{in: "DateTime('UTC')", want: &colType{base: "DateTime"}},
		{in: "DateTime('Europe/Berlin')", want: &colType{base: "DateTime"}},
		{in: "FixedString(16)", want: &colType{base: "FixedString"}},

		// Decimals: 18.16 prints Decimal(P, S); Decimal32/64/128(S) are aliases.
		{in: "Decimal(18, 2)", want: &colType{base: "Decimal", precision: 18, scale: 2}},
		{in: "Decimal(18,2)", want: &colType{base: "Decimal", precision: 18, scale: 2}},
		{in: "Decimal(38, 10)", want: &colType{base: "Decimal", precision: 38, scale: 10}},
		{in: "Decimal32(4)", want: &colType{base: "Decimal", precision: 9, scale: 4}},
		{in: "Decimal64(2)", want: &colType{base: "Decimal", precision: 18, scale: 2}},
		{in: "Decimal128(10)", want: &colType{base: "Decimal", precision: 38, scale: 10}},
		{in: "Nullable(Decimal(18, 8))", want: &colType{base: "Decimal", nullable: true, precision: 18, scale: 8}},

		// Enums keep their symbols in order.
		{in: "Enum8('CREATED' = 1, 'CONFIRMED' = 2)", want: &colType{base: "Enum8", symbols: []string{"CREATED", "CONFIRMED"}, values: []int16{1, 2}}},
		{in: "Enum8('CREATED' = 1, 'CONFIRMED' = 2, 'CANCELLED' = 3)",
			want: &colType{base: "Enum8", symbols: []string{"CREATED", "CONFIRMED", "CANCELLED"}, values: []int16{1, 2, 3}}},
		{in: "Enum16('neg' = -1, 'it\\'s' = 1000)", want: &colType{base: "Enum16", symbols: []string{"neg", "it's"}, values: []int16{-1, 1000}}},
		{in: "Nullable(Enum8('A' = 1))", want: &colType{base: "Enum8", nullable: true, symbols: []string{"A"}, values: []int16{1}}},

		// Wrappers.
		{in: "Nullable(String)", want: &colType{base: "String", nullable: true}},
		{in: "LowCardinality(String)", want: str},
		{in: "LowCardinality(Nullable(String))", want: &colType{base: "String", nullable: true}},
		{in: "Array(String)", want: &colType{base: "Array", elem: str}},
		{in: "Array(Nullable(String))", want: &colType{base: "Array", elem: &colType{base: "String", nullable: true}}},
		{in: "Array(UInt8)", want: &colType{base: "Array", elem: &colType{base: "UInt8"}}},

		// What Sluice cannot write says so.
		{in: "Map(String, String)", wantErr: "Map(String, String) is not supported"},
		{in: "Nullable(Map(String, String))", wantErr: "not supported"},
		{in: "Array(Map(String, String))", wantErr: "not supported"},
		{in: "Tuple(String, UInt8)", wantErr: "not supported"},
		{in: "DateTime64(3, 'UTC')", wantErr: "not supported"},
		{in: "UUID", wantErr: "not supported"},
		{in: "Bool", wantErr: "not supported"},
		{in: "", wantErr: "not supported"},
		{in: "Decimal(18)", wantErr: `cannot read type "Decimal(18)"`},
		{in: "Decimal(p, s)", wantErr: "cannot read type"},
		{in: "Decimal64(x)", wantErr: "cannot read type"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseType(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("parseType(%q) = %+v, want an error", tt.in, got)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseType(%q) error %q does not contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseType(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseType(%q) = %s, want %s", tt.in, fmtType(got), fmtType(tt.want))
			}
		})
	}
}

func fmtType(c *colType) string {
	if c == nil {
		return "<nil>"
	}
	s := c.base
	if c.elem != nil {
		s += "(" + fmtType(c.elem) + ")"
	}
	if c.nullable {
		s = "Nullable " + s
	}
	if c.base == "Decimal" {
		s += "(" + decimal.NewFromInt32(c.precision).String() + "," + decimal.NewFromInt32(c.scale).String() + ")"
	}
	if c.symbols != nil {
		s += "[" + strings.Join(c.symbols, "|") + "]"
	}
	return s
}

// TestNewColbufSupported: every type the demo DDL uses gets a buffer, and
// the ones Sluice cannot convert are refused when the table is opened.
func TestNewColbufSupported(t *testing.T) {
	ok := []string{
		"String", "FixedString(8)", "UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64",
		"Float32", "Float64", "Date", "DateTime('UTC')", "Decimal(18, 2)", "Nullable(Decimal(18, 8))",
		"Enum8('CREATED' = 1, 'CONFIRMED' = 2)", "Nullable(String)", "LowCardinality(String)", "Array(String)",
	}
	for _, s := range ok {
		if _, err := newColbuf(mustType(t, s)); err != nil {
			t.Errorf("newColbuf(%s): %v", s, err)
		}
	}
	refused := []string{"Array(Nullable(String))", "Array(UInt8)", "Enum8()"}
	for _, s := range refused {
		if _, err := newColbuf(mustType(t, s)); err == nil {
			t.Errorf("newColbuf(%s) succeeded, want not supported", s)
		}
	}
}

func mustType(t *testing.T, s string) *colType {
	t.Helper()
	ct, err := parseType(s)
	if err != nil {
		t.Fatalf("parseType(%q): %v", s, err)
	}
	return ct
}

func dec(t *testing.T, s string) decimal.Decimal {
	t.Helper()
	d, err := decimal.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestColbufConvert adds one value to a fresh buffer of the column type and
// checks the stored value (want) or the rejection (wantErr).
func TestColbufConvert(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 30, 0, 0, time.UTC)
	maxDateTime := time.Unix(math.MaxUint32, 0).UTC() // 2106-02-07 06:28:15
	tests := []struct {
		name    string
		typ     string
		in      any
		want    any // the single element of slice() (dereferenced for Nullable)
		wantNil bool
		wantErr string
	}{
		// Decimals are exact: no rounding, no wrapping.
		{name: "decimal fits", typ: "Decimal(18, 2)", in: dec(t, "12.34"), want: dec(t, "12.34")},
		{name: "decimal fewer places", typ: "Decimal(18, 2)", in: dec(t, "12.3"), want: dec(t, "12.3")},
		{name: "decimal trailing zeros", typ: "Decimal(18, 2)", in: dec(t, "12.3400"), want: dec(t, "12.34")},
		{name: "decimal too many places", typ: "Decimal(18, 2)", in: dec(t, "12.345"), wantErr: "more than 2 decimal places"},
		{name: "decimal tiny fraction", typ: "Decimal(18, 2)", in: dec(t, "0.001"), wantErr: "more than 2 decimal places"},
		{name: "decimal largest", typ: "Decimal(18, 2)", in: dec(t, "9999999999999999.99"), want: dec(t, "9999999999999999.99")},
		{name: "decimal overflow", typ: "Decimal(18, 2)", in: dec(t, "10000000000000000"), wantErr: "overflows Decimal(18, 2)"},
		{name: "decimal overflow int64", typ: "Decimal(18, 2)", in: int64(1e16), wantErr: "overflows"},
		{name: "decimal negative", typ: "Decimal(18, 2)", in: dec(t, "-12.34"), want: dec(t, "-12.34")},
		{name: "decimal negative largest", typ: "Decimal(18, 2)", in: dec(t, "-9999999999999999.99"), want: dec(t, "-9999999999999999.99")},
		{name: "decimal negative overflow", typ: "Decimal(18, 2)", in: dec(t, "-10000000000000000"), wantErr: "overflows"},
		{name: "decimal negative too many places", typ: "Decimal(18, 2)", in: dec(t, "-12.345"), wantErr: "decimal places"},
		{name: "decimal from int32", typ: "Decimal(18, 2)", in: int32(42), want: dec(t, "42")},
		{name: "decimal positive exponent", typ: "Decimal(18, 2)", in: decimal.New(5, 3), want: dec(t, "5000")},
		{name: "decimal64 alias", typ: "Decimal64(2)", in: dec(t, "1.5"), want: dec(t, "1.5")},
		{name: "decimal 18,8 fits", typ: "Nullable(Decimal(18, 8))", in: dec(t, "1.08123456"), want: dec(t, "1.08123456")},
		{name: "decimal 18,8 overflow", typ: "Nullable(Decimal(18, 8))", in: dec(t, "10000000000"), wantErr: "overflows Decimal(18, 8)"},
		{name: "decimal 18,8 too many places", typ: "Nullable(Decimal(18, 8))", in: dec(t, "1.081234567"), wantErr: "more than 8"},
		{name: "decimal from float refused", typ: "Decimal(18, 2)", in: 12.34, wantErr: "want a decimal, got float64"},
		{name: "decimal from string refused", typ: "Decimal(18, 2)", in: "12.34", wantErr: "want a decimal"},

		// Integers are range-checked against the column, never wrapped.
		{name: "UInt8 max", typ: "UInt8", in: int32(255), want: uint8(255)},
		{name: "UInt8 256", typ: "UInt8", in: int32(256), wantErr: "256 is out of range 0..255"},
		{name: "UInt8 negative", typ: "UInt8", in: int64(-1), wantErr: "out of range"},
		{name: "UInt8 from bool", typ: "UInt8", in: true, want: uint8(1)},
		{name: "UInt16 from int64", typ: "UInt16", in: int64(65535), want: uint16(65535)},
		{name: "UInt16 overflow", typ: "UInt16", in: int64(65536), wantErr: "out of range"},
		{name: "UInt32 from int32", typ: "UInt32", in: int32(7), want: uint32(7)},
		{name: "UInt32 from int32 -1", typ: "UInt32", in: int32(-1), wantErr: "-1 is out of range 0..4294967295"},
		{name: "UInt32 max", typ: "UInt32", in: int64(math.MaxUint32), want: uint32(math.MaxUint32)},
		{name: "UInt32 overflow", typ: "UInt32", in: int64(math.MaxUint32 + 1), wantErr: "out of range"},
		{name: "UInt32 from string", typ: "UInt32", in: "7", wantErr: "want an integer, got string"},
		{name: "UInt32 from float", typ: "UInt32", in: 7.0, wantErr: "want an integer"},
		{name: "UInt64 from offset", typ: "UInt64", in: int64(123456789), want: uint64(123456789)},
		{name: "UInt64 from uint64 max", typ: "UInt64", in: uint64(math.MaxUint64), want: uint64(math.MaxUint64)},
		{name: "UInt64 negative", typ: "UInt64", in: int64(-1), wantErr: "out of range"},
		{name: "Int8 min", typ: "Int8", in: int32(-128), want: int8(-128)},
		{name: "Int8 128", typ: "Int8", in: int32(128), wantErr: "out of range"},
		{name: "Int8 from uint64", typ: "Int8", in: uint64(200), wantErr: "out of range"},
		{name: "Int32 min", typ: "Int32", in: int64(math.MinInt32), want: int32(math.MinInt32)},
		{name: "Int32 overflow", typ: "Int32", in: int64(math.MaxInt32 + 1), wantErr: "out of range"},
		{name: "Int64 from uint64 too big", typ: "Int64", in: uint64(1 << 63), wantErr: "out of range"},
		{name: "Int64 min", typ: "Int64", in: int64(math.MinInt64), want: int64(math.MinInt64)},

		// Floats.
		{name: "Float64 from float32", typ: "Float64", in: float32(1.5), want: 1.5},
		{name: "Float64 from int64", typ: "Float64", in: int64(3), want: 3.0},
		{name: "Float32 from float64", typ: "Float32", in: 2.25, want: float32(2.25)},
		{name: "Float64 from string", typ: "Float64", in: "1.5", wantErr: "want a number"},

		// DateTime holds UInt32 seconds since 1970.
		{name: "DateTime", typ: "DateTime('UTC')", in: ts, want: ts},
		{name: "DateTime epoch", typ: "DateTime('UTC')", in: time.Unix(0, 0).UTC(), want: time.Unix(0, 0).UTC()},
		{name: "DateTime before 1970", typ: "DateTime('UTC')", in: time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), wantErr: "outside the column's range"},
		{name: "DateTime largest", typ: "DateTime('UTC')", in: maxDateTime, want: maxDateTime},
		{name: "DateTime largest second, fraction", typ: "DateTime('UTC')", in: maxDateTime.Add(500 * time.Millisecond), want: maxDateTime.Add(500 * time.Millisecond)},
		{name: "DateTime past UInt32", typ: "DateTime('UTC')", in: maxDateTime.Add(time.Second), wantErr: "outside the column's range"},
		{name: "DateTime 2106", typ: "DateTime", in: time.Date(2106, 3, 1, 0, 0, 0, 0, time.UTC), wantErr: "outside"},
		{name: "DateTime 2200", typ: "DateTime", in: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), wantErr: "outside"},
		{name: "DateTime other zone", typ: "DateTime", in: ts.In(time.FixedZone("X", 3600)), want: ts.In(time.FixedZone("X", 3600))},
		{name: "DateTime from int64", typ: "DateTime", in: int64(1700000000), wantErr: "want a timestamp, got int64"},

		// Date holds UInt16 days since 1970: the last day is 2149-06-06.
		{name: "Date", typ: "Date", in: ts, want: ts},
		{name: "Date last day", typ: "Date", in: time.Date(2149, 6, 6, 12, 0, 0, 0, time.UTC), want: time.Date(2149, 6, 6, 12, 0, 0, 0, time.UTC)},
		{name: "Date past UInt16 days", typ: "Date", in: time.Date(2149, 6, 7, 0, 0, 0, 0, time.UTC), wantErr: "outside"},
		{name: "Date before 1970", typ: "Date", in: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), wantErr: "outside"},

		// Enums take only their own symbols.
		{name: "enum symbol", typ: "Enum8('CREATED' = 1, 'CONFIRMED' = 2)", in: "CONFIRMED", want: "CONFIRMED"},
		{name: "enum unknown symbol", typ: "Enum8('CREATED' = 1, 'CONFIRMED' = 2)", in: "SHIPPED", wantErr: `"SHIPPED" is not a symbol`},
		{name: "enum case matters", typ: "Enum8('CREATED' = 1, 'CONFIRMED' = 2)", in: "created", wantErr: "not a symbol"},
		{name: "enum from int", typ: "Enum8('CREATED' = 1, 'CONFIRMED' = 2)", in: int32(1), wantErr: "want a string"},

		// Strings.
		{name: "string", typ: "String", in: "héllo", want: "héllo"},
		{name: "string from int", typ: "String", in: int32(1), wantErr: "want a string, got int32"},
		{name: "low cardinality string", typ: "LowCardinality(String)", in: "DE", want: "DE"},

		// NULL: a Nullable column stores a nil pointer, a NOT NULL one the
		// type's zero value.
		{name: "nil into Nullable(String)", typ: "Nullable(String)", in: nil, wantNil: true},
		{name: "value into Nullable(String)", typ: "Nullable(String)", in: "x", want: "x"},
		{name: "nil into Nullable(Decimal)", typ: "Nullable(Decimal(18, 8))", in: nil, wantNil: true},
		{name: "nil into String", typ: "String", in: nil, want: ""},
		{name: "nil into UInt32", typ: "UInt32", in: nil, want: uint32(0)},
		{name: "nil into Decimal", typ: "Decimal(18, 2)", in: nil, want: decimal.Zero},
		{name: "nil into DateTime", typ: "DateTime('UTC')", in: nil, want: time.Unix(0, 0).UTC()},
		{name: "nil into Enum8", typ: "Enum8('CREATED' = 1, 'CONFIRMED' = 2)", in: nil, want: "CREATED"},
		{name: "nil into Array(String)", typ: "Array(String)", in: nil, want: []string{}},

		// Arrays of strings, as the decoders deliver them.
		{name: "array from []any", typ: "Array(String)", in: []any{"a", "b"}, want: []string{"a", "b"}},
		{name: "array from empty []any", typ: "Array(String)", in: []any{}, want: []string{}},
		{name: "array from []string", typ: "Array(String)", in: []string{"x"}, want: []string{"x"}},
		{name: "array with a non-string", typ: "Array(String)", in: []any{"a", int32(2)}, wantErr: "element 1: want a string, got int32"},
		{name: "array from a string", typ: "Array(String)", in: "a", wantErr: "want an array of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := newColbuf(mustType(t, tt.typ))
			if err != nil {
				t.Fatalf("newColbuf(%s): %v", tt.typ, err)
			}
			err = cb.add(tt.in)
			n := reflect.ValueOf(cb.slice()).Len()
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("add(%v) into %s succeeded, want an error", tt.in, tt.typ)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("add(%v) into %s: error %q does not contain %q", tt.in, tt.typ, err, tt.wantErr)
				}
				if n != 0 {
					t.Errorf("a rejected value was appended: %d values", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("add(%v) into %s: %v", tt.in, tt.typ, err)
			}
			if n != 1 {
				t.Fatalf("buffer holds %d values, want 1", n)
			}
			got := reflect.ValueOf(cb.slice()).Index(0)
			nullable := strings.HasPrefix(tt.typ, "Nullable(")
			if nullable != (got.Kind() == reflect.Pointer) {
				t.Fatalf("%s buffer element is %s", tt.typ, got.Type())
			}
			if nullable {
				if got.IsNil() != tt.wantNil {
					t.Fatalf("element nil = %v, want %v", got.IsNil(), tt.wantNil)
				}
				if tt.wantNil {
					return
				}
				got = got.Elem()
			}
			if !sameValue(got.Interface(), tt.want) {
				t.Errorf("stored %#v (%T), want %#v (%T)", got.Interface(), got.Interface(), tt.want, tt.want)
			}
		})
	}
}

// sameValue compares decimals and times by value and everything else,
// including the Go type, exactly.
func sameValue(got, want any) bool {
	switch w := want.(type) {
	case decimal.Decimal:
		g, ok := got.(decimal.Decimal)
		return ok && g.Equal(w)
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w)
	}
	return reflect.DeepEqual(got, want)
}

// TestColbufSliceTypes: clickhouse-go's typed appends need exactly these
// slice types.
func TestColbufSliceTypes(t *testing.T) {
	tests := map[string]any{
		"String":                   []string(nil),
		"Nullable(String)":         []*string(nil),
		"UInt8":                    []uint8(nil),
		"UInt32":                   []uint32(nil),
		"UInt64":                   []uint64(nil),
		"Int64":                    []int64(nil),
		"Float64":                  []float64(nil),
		"Decimal(18, 2)":           []decimal.Decimal(nil),
		"Nullable(Decimal(18, 8))": []*decimal.Decimal(nil),
		"DateTime('UTC')":          []time.Time(nil),
		"Enum8('A' = 1)":           []string(nil),
		"Array(String)":            [][]string(nil),
	}
	for typ, want := range tests {
		cb, err := newColbuf(mustType(t, typ))
		if err != nil {
			t.Fatalf("newColbuf(%s): %v", typ, err)
		}
		if got := reflect.TypeOf(cb.slice()); got != reflect.TypeOf(want) {
			t.Errorf("%s: slice() is %s, want %T", typ, got, want)
		}
	}
}

// TestColbufTruncateReset follows a batch: rows are appended, a row that
// fails half-way is cut off with truncate(n), and reset empties the buffer
// for the next batch, keeping its array but no references into it.
func TestColbufTruncateReset(t *testing.T) {
	t.Run("NOT NULL", func(t *testing.T) {
		cb, err := newColbuf(mustType(t, "Array(String)"))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []any{[]any{"a"}, []any{"b"}, []any{"c"}} {
			if err := cb.add(v); err != nil {
				t.Fatal(err)
			}
		}
		cb.truncate(2)
		if got, want := cb.slice().([][]string), [][]string{{"a"}, {"b"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("after truncate(2): %v, want %v", got, want)
		}
		if err := cb.add([]any{"d"}); err != nil {
			t.Fatal(err)
		}
		if got, want := cb.slice().([][]string), [][]string{{"a"}, {"b"}, {"d"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("append after truncate: %v, want %v", got, want)
		}
		cb.truncate(3) // no-op at the current length
		if got := len(cb.slice().([][]string)); got != 3 {
			t.Fatalf("truncate(len) changed the length to %d", got)
		}
		cb.truncate(0)
		if got := len(cb.slice().([][]string)); got != 0 {
			t.Fatalf("truncate(0) left %d values", got)
		}

		for _, v := range []any{[]any{"x"}, []any{"y"}} {
			if err := cb.add(v); err != nil {
				t.Fatal(err)
			}
		}
		before := cb.slice().([][]string)
		cb.reset()
		after := cb.slice().([][]string)
		if len(after) != 0 {
			t.Fatalf("after reset: %d values", len(after))
		}
		if cap(after) < 2 || &after[:1][0] != &before[0] {
			t.Errorf("reset dropped the array (cap %d)", cap(after))
		}
		for i, v := range after[:cap(after)] {
			if v != nil {
				t.Errorf("slot %d still references %v after reset", i, v)
			}
		}
		if err := cb.add(nil); err != nil {
			t.Fatal(err)
		}
		if got := cb.slice().([][]string); len(got) != 1 || got[0] == nil || len(got[0]) != 0 {
			t.Errorf("nil after reset stored %#v, want one empty array", got)
		}
	})

	t.Run("Nullable", func(t *testing.T) {
		cb, err := newColbuf(mustType(t, "Nullable(String)"))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []any{"a", nil, "c"} {
			if err := cb.add(v); err != nil {
				t.Fatal(err)
			}
		}
		cb.truncate(2)
		got := cb.slice().([]*string)
		if len(got) != 2 || got[0] == nil || *got[0] != "a" || got[1] != nil {
			t.Fatalf("after truncate(2): %v", got)
		}
		// Each non-nil value is its own pointer, not a shared variable.
		if err := cb.add("d"); err != nil {
			t.Fatal(err)
		}
		got = cb.slice().([]*string)
		if *got[0] != "a" || *got[2] != "d" || got[0] == got[2] {
			t.Fatalf("values share storage: %q %q", *got[0], *got[2])
		}
		cb.reset()
		after := cb.slice().([]*string)
		if len(after) != 0 {
			t.Fatalf("after reset: %d values", len(after))
		}
		for i, p := range after[:cap(after)] {
			if p != nil {
				t.Errorf("slot %d still points at %q after reset", i, *p)
			}
		}
	})

	// A rejected value leaves the buffer as it was, so the row's earlier
	// columns are the only ones to truncate.
	t.Run("rejected value", func(t *testing.T) {
		cb, err := newColbuf(mustType(t, "UInt8"))
		if err != nil {
			t.Fatal(err)
		}
		if err := cb.add(int32(1)); err != nil {
			t.Fatal(err)
		}
		if err := cb.add(int32(300)); err == nil {
			t.Fatal("300 into UInt8 accepted")
		}
		if got := cb.slice().([]uint8); !reflect.DeepEqual(got, []uint8{1}) {
			t.Errorf("after a rejected add: %v, want [1]", got)
		}
	})
}
