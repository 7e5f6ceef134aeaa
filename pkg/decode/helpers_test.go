package decode

import (
	"bytes"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
)

// The tests use goavro with the schemas as written (logical types and all)
// as the reference writer, and compare decoded Rows with hand-written
// expectations in the normalised types.

func schemaFile(name string) string {
	return filepath.Join("..", "..", "schemas", "avro", name+".avsc")
}

func mustSchema(t testing.TB, name string) *Schema {
	t.Helper()
	s, err := LoadSchema(schemaFile(name))
	if err != nil {
		t.Fatalf("LoadSchema(%s): %v", name, err)
	}
	return s
}

func mustDecoder(t testing.TB, format, name string) Decoder {
	t.Helper()
	d, err := New(format, schemaFile(name))
	if err != nil {
		t.Fatalf("New(%s, %s): %v", format, name, err)
	}
	return d
}

// writerCodec is goavro on the unmodified .avsc: what a producer uses.
func writerCodec(t testing.TB, name string) *goavro.Codec {
	t.Helper()
	text, err := os.ReadFile(schemaFile(name))
	if err != nil {
		t.Fatal(err)
	}
	c, err := goavro.NewCodec(string(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func encode(t testing.TB, c *goavro.Codec, native map[string]any) []byte {
	t.Helper()
	b, err := c.BinaryFromNative(nil, native)
	if err != nil {
		t.Fatalf("BinaryFromNative: %v", err)
	}
	return b
}

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("bad rat " + s)
	}
	return r
}

// dec builds the expected decimal: s must be written with exactly the
// field's scale of fractional digits, since Rows carry exponent -scale.
func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

// sameValue compares two Row values strictly: identical Go types, decimals
// with equal coefficient and exponent, times at the same instant and both in
// UTC, containers element by element.
func sameValue(got, want any) error {
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		return fmt.Errorf("type %T (%v), want %T (%v)", got, got, want, want)
	}
	switch w := want.(type) {
	case decimal.Decimal:
		g := got.(decimal.Decimal)
		if g.Exponent() != w.Exponent() || g.Coefficient().Cmp(w.Coefficient()) != 0 {
			return fmt.Errorf("decimal %s (exp %d), want %s (exp %d)", g, g.Exponent(), w, w.Exponent())
		}
	case time.Time:
		g := got.(time.Time)
		if !g.Equal(w) || g.Location() != time.UTC {
			return fmt.Errorf("time %s (%v), want %s UTC", g.Format(time.RFC3339Nano), g.Location(), w.Format(time.RFC3339Nano))
		}
	case []byte:
		if !bytes.Equal(got.([]byte), w) {
			return fmt.Errorf("bytes %x, want %x", got, w)
		}
	case []any:
		g := got.([]any)
		if len(g) != len(w) {
			return fmt.Errorf("%d elements, want %d", len(g), len(w))
		}
		for i := range w {
			if err := sameValue(g[i], w[i]); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	case map[string]any:
		return sameMap(got.(map[string]any), w)
	default:
		if got != want {
			return fmt.Errorf("%#v, want %#v", got, want)
		}
	}
	return nil
}

func sameMap(got, want map[string]any) error {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("unexpected key %q", k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, ok := got[k]
		if !ok {
			return fmt.Errorf("missing key %q", k)
		}
		if err := sameValue(g, want[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

func assertRow(t testing.TB, got, want record.Row) {
	t.Helper()
	if err := sameMap(got, want); err != nil {
		t.Fatalf("row mismatch: %v\ngot:  %v\nwant: %v", err, got, want)
	}
}

// checkShape asserts what any successful decode must give: every field of
// the type present, nothing else, and each value of its Row type.
func checkShape(t *Type, v any) error {
	if v == nil {
		if t.Nullable || t.Kind == KindNull {
			return nil
		}
		return fmt.Errorf("nil for non-nullable %s", t)
	}
	ok := true
	switch {
	case t.Logical == LogicalDecimal:
		d, isDec := v.(decimal.Decimal)
		ok = isDec && d.Exponent() == int32(-t.Scale) &&
			len(new(big.Int).Abs(d.Coefficient()).String()) <= t.Precision
	case t.Logical == LogicalTimestampMillis || t.Logical == LogicalTimestampMicros || t.Logical == LogicalDate:
		tm, isTime := v.(time.Time)
		ok = isTime && tm.Location() == time.UTC
	default:
		switch t.Kind {
		case KindString:
			_, ok = v.(string)
		case KindEnum:
			s, isStr := v.(string)
			ok = isStr && contains(t.Symbols, s)
		case KindInt:
			_, ok = v.(int32)
		case KindLong:
			_, ok = v.(int64)
		case KindFloat:
			_, ok = v.(float32)
		case KindDouble:
			_, ok = v.(float64)
		case KindBoolean:
			_, ok = v.(bool)
		case KindBytes, KindFixed:
			_, ok = v.([]byte)
		case KindArray:
			s, isSlice := v.([]any)
			if !isSlice {
				return fmt.Errorf("%T for %s", v, t)
			}
			for i, x := range s {
				if err := checkShape(t.Items, x); err != nil {
					return fmt.Errorf("[%d]: %w", i, err)
				}
			}
		case KindMap:
			m, isMap := v.(map[string]any)
			if !isMap {
				return fmt.Errorf("%T for %s", v, t)
			}
			for k, x := range m {
				if err := checkShape(t.Values, x); err != nil {
					return fmt.Errorf("[%s]: %w", k, err)
				}
			}
		case KindRecord:
			m, isMap := v.(map[string]any)
			if !isMap {
				m, isMap = v.(record.Row)
			}
			if !isMap {
				return fmt.Errorf("%T for %s", v, t)
			}
			if len(m) != len(t.Fields) {
				return fmt.Errorf("%d keys for %d fields", len(m), len(t.Fields))
			}
			for _, f := range t.Fields {
				x, present := m[f.Name]
				if !present {
					return fmt.Errorf("field %q missing", f.Name)
				}
				if err := checkShape(f.Type, x); err != nil {
					return fmt.Errorf("%s: %w", f.Name, err)
				}
			}
		}
	}
	if !ok {
		return fmt.Errorf("%T (%v) for %s", v, v, t)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkErr asserts err is an *Error with the given field path whose text
// contains every fragment.
func checkErr(t testing.TB, err error, field string, fragments ...string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one on field %q containing %q", field, fragments)
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %T %q is not *Error", err, err)
	}
	if e.Field != field {
		t.Fatalf("error %q: field %q, want %q", err, e.Field, field)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not contain %q", err, f)
		}
	}
	return e
}

// avroWriter hand-crafts Avro binary, for inputs goavro refuses to write.
type avroWriter []byte

func (w avroWriter) long(v int64) avroWriter {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		w = append(w, byte(u)|0x80)
		u >>= 7
	}
	return append(w, byte(u))
}

func (w avroWriter) str(s string) avroWriter { return append(w.long(int64(len(s))), s...) }

func (w avroWriter) bytes(b []byte) avroWriter { return append(w.long(int64(len(b))), b...) }

// unscaled writes a decimal's unscaled value as minimal two's complement.
func (w avroWriter) unscaled(v int64) avroWriter {
	var b [8]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(v >> (8 * i))
	}
	s := b[:]
	for len(s) > 1 && (s[0] == 0 && s[1]&0x80 == 0 || s[0] == 0xff && s[1]&0x80 != 0) {
		s = s[1:]
	}
	return w.bytes(s)
}

// orderHead writes an order's fields up to and including shipping_country.
func orderHead(status, channel int64) avroWriter {
	return avroWriter(nil).str("o-1").str("c-1").long(1_795_000_000_000).str("EUR").
		unscaled(1234).long(status).long(channel).str("DE")
}
