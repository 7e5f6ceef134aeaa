package decode

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/sluice-etl/sluice/pkg/record"
)

const jsonOrder = `{
  "order_id": "o-42", "customer_id": "c-7", "created_at": 1795000000123,
  "currency": "EUR", "total": "12345678.90", "status": "CREATED", "channel": "WEB",
  "shipping_country": "DE",
  "items": [
    {"sku": "sku-1", "quantity": 2, "unit_price": "19.99"},
    {"sku": "sku-2", "quantity": 1, "unit_price": 12345638.92}
  ],
  "coupon": "SAVE10"
}`

var jsonOrderRow = record.Row{
	"order_id": "o-42", "customer_id": "c-7", "created_at": ms(1_795_000_000_123),
	"currency": "EUR", "total": dec("12345678.90"), "status": "CREATED", "channel": "WEB",
	"shipping_country": "DE",
	"items": []any{
		map[string]any{"sku": "sku-1", "quantity": int32(2), "unit_price": dec("19.99")},
		map[string]any{"sku": "sku-2", "quantity": int32(1), "unit_price": dec("12345638.92")},
	},
	"coupon": "SAVE10",
}

// The same order in JSON and in Avro gives the same Row, down to
// reflect.DeepEqual, which is what later stages may rely on.
func TestJSONOrderEqualsAvro(t *testing.T) {
	fromJSON, err := mustDecoder(t, FormatJSON, "order").Decode([]byte(jsonOrder))
	if err != nil {
		t.Fatal(err)
	}
	fromAvro, err := mustDecoder(t, FormatAvro, "order").Decode(validOrder(t))
	if err != nil {
		t.Fatal(err)
	}
	assertRow(t, fromJSON, jsonOrderRow)
	assertRow(t, fromAvro, jsonOrderRow)
	if !reflect.DeepEqual(fromJSON, fromAvro) {
		t.Fatalf("JSON and Avro rows differ:\n%#v\n%#v", fromJSON, fromAvro)
	}
}

// orderFields is a valid JSON order, field by field, as raw JSON values.
var orderFields = [][2]string{
	{"order_id", `"o-42"`}, {"customer_id", `"c-7"`}, {"created_at", `1795000000123`}, {"currency", `"EUR"`},
	{"total", `"12345678.90"`}, {"status", `"CREATED"`}, {"channel", `"WEB"`}, {"shipping_country", `"DE"`},
	{"items", `[{"sku": "sku-1", "quantity": 2, "unit_price": "19.99"}]`}, {"coupon", `"SAVE10"`},
}

// jsonWith returns the valid order with key set to the raw JSON value, or
// without key when raw is empty.
func jsonWith(key, raw string) []byte {
	var parts []string
	found := false
	for _, kv := range orderFields {
		if kv[0] == key {
			found = true
			if raw == "" {
				continue
			}
			kv[1] = raw
		}
		parts = append(parts, `"`+kv[0]+`": `+kv[1])
	}
	if !found && raw != "" {
		parts = append(parts, `"`+key+`": `+raw)
	}
	return []byte("{" + strings.Join(parts, ", ") + "}")
}

func TestJSONFieldValues(t *testing.T) {
	d := mustDecoder(t, FormatJSON, "order")
	tests := []struct {
		name string
		key  string
		raw  string
		want any
	}{
		{name: "decimal as string", key: "total", raw: `"12.34"`, want: dec("12.34")},
		{name: "decimal as number", key: "total", raw: `12.34`, want: dec("12.34")},
		{name: "decimal with fewer digits", key: "total", raw: `12.3`, want: dec("12.30")},
		{name: "decimal integer", key: "total", raw: `"5"`, want: dec("5.00")},
		{name: "decimal negative", key: "total", raw: `"-5.00"`, want: dec("-5.00")},
		{name: "decimal exponent", key: "total", raw: `1.5e2`, want: dec("150.00")},
		{name: "decimal trailing zeros beyond scale", key: "total", raw: `"12.3400"`, want: dec("12.34")},
		{name: "decimal max", key: "total", raw: `"9999999999999999.99"`, want: dec("9999999999999999.99")},
		{name: "decimal min", key: "total", raw: `-9999999999999999.99`, want: dec("-9999999999999999.99")},
		{name: "decimal zero", key: "total", raw: `0`, want: dec("0.00")},
		{name: "timestamp as millis", key: "created_at", raw: `1795000000123`, want: ms(1_795_000_000_123)},
		{name: "timestamp as negative millis", key: "created_at", raw: `-1`, want: ms(-1)},
		{name: "timestamp RFC 3339 UTC", key: "created_at", raw: `"2026-11-18T11:06:40.123Z"`, want: ms(1_795_000_000_123)},
		{name: "timestamp RFC 3339 offset", key: "created_at", raw: `"2026-11-18T12:06:40.123+01:00"`, want: ms(1_795_000_000_123)},
		{name: "timestamp RFC 3339 whole seconds", key: "created_at", raw: `"2026-11-18T11:06:40Z"`, want: ms(1_795_000_000_000)},
		{name: "timestamp RFC 3339 zeros beyond millis", key: "created_at", raw: `"2026-11-18T11:06:40.123000Z"`, want: ms(1_795_000_000_123)},
		{name: "nullable null", key: "coupon", raw: `null`, want: nil},
		{name: "nullable absent", key: "coupon", raw: ``, want: nil},
		{name: "nullable set", key: "coupon", raw: `"X"`, want: "X"},
		{name: "enum", key: "status", raw: `"CANCELLED"`, want: "CANCELLED"},
		{name: "int written as 3.0", key: "items", raw: `[{"sku": "a", "quantity": 3.0, "unit_price": "1"}]`,
			want: []any{map[string]any{"sku": "a", "quantity": int32(3), "unit_price": dec("1.00")}}},
		{name: "unknown nested field ignored", key: "items", raw: `[{"sku": "a", "quantity": -2147483648, "unit_price": "1", "color": "red"}]`,
			want: []any{map[string]any{"sku": "a", "quantity": int32(-2147483648), "unit_price": dec("1.00")}}},
		{name: "empty array", key: "items", raw: `[]`, want: []any{}},
		{name: "unknown top-level field ignored", key: "gift_wrap", raw: `{"paper": "red"}`, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := d.Decode(jsonWith(tt.key, tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if tt.key == "gift_wrap" {
				if _, ok := row["gift_wrap"]; ok {
					t.Fatalf("unknown field kept: %v", row)
				}
				if err := checkShape(mustSchema(t, "order").root, row); err != nil {
					t.Fatal(err)
				}
				return
			}
			v, ok := row[tt.key]
			if !ok {
				t.Fatalf("field %q missing from %v", tt.key, row)
			}
			if err := sameValue(v, tt.want); err != nil {
				t.Fatalf("%s: %v", tt.key, err)
			}
		})
	}
}

func TestJSONErrors(t *testing.T) {
	d := mustDecoder(t, FormatJSON, "order")
	tests := []struct {
		name     string
		value    []byte
		field    string
		contains []string
	}{
		{name: "missing required field", value: jsonWith("order_id", ""), field: "order_id", contains: []string{`decode: field "order_id": missing required field`}},
		{name: "missing nested required field", value: jsonWith("items", `[{"sku": "a", "quantity": 1, "unit_price": "1"}, {"quantity": 1, "unit_price": "1"}]`),
			field: "items[1].sku", contains: []string{"missing required field"}},
		{name: "null for required field", value: jsonWith("currency", `null`), field: "currency", contains: []string{"null is not allowed, want string"}},
		{name: "number for string", value: jsonWith("order_id", `42`), field: "order_id", contains: []string{"want string, got JSON number"}},
		{name: "boolean for decimal", value: jsonWith("total", `true`), field: "total", contains: []string{"want decimal(18,2) as a string or number, got JSON boolean"}},
		{name: "string for int", value: jsonWith("items", `[{"sku": "a", "quantity": "2", "unit_price": "1"}]`),
			field: "items[0].quantity", contains: []string{"want int as a number, got JSON string"}},
		{name: "fraction for int", value: jsonWith("items", `[{"sku": "a", "quantity": 1.5, "unit_price": "1"}]`),
			field: "items[0].quantity", contains: []string{"number 1.5 is not an integer"}},
		{name: "int out of range", value: jsonWith("items", `[{"sku": "a", "quantity": 2147483648, "unit_price": "1"}]`),
			field: "items[0].quantity", contains: []string{"out of range for a 32-bit integer"}},
		{name: "int out of range via exponent", value: jsonWith("items", `[{"sku": "a", "quantity": 3e9, "unit_price": "1"}]`),
			field: "items[0].quantity", contains: []string{"out of range for a 32-bit integer"}},
		{name: "object for array", value: jsonWith("items", `{}`), field: "items", contains: []string{"want array<record LineItem>, got JSON object"}},
		{name: "string for record", value: jsonWith("items", `["x"]`), field: "items[0]", contains: []string{"want record LineItem as an object, got JSON string"}},
		{name: "number for enum", value: jsonWith("status", `1`), field: "status", contains: []string{"want enum OrderStatus as a string, got JSON number"}},
		{name: "enum not in symbols", value: jsonWith("status", `"SHIPPED"`), field: "status",
			contains: []string{`"SHIPPED" is not a symbol of OrderStatus {CREATED, CONFIRMED, CANCELLED}`}},
		{name: "enum wrong case", value: jsonWith("channel", `"web"`), field: "channel", contains: []string{"is not a symbol of Channel"}},
		{name: "decimal too many fractional digits (string)", value: jsonWith("total", `"12.345"`), field: "total",
			contains: []string{`"12.345" has more than 2 fractional digits, does not fit decimal(18,2)`}},
		{name: "decimal too many fractional digits (number)", value: jsonWith("total", `12.345`), field: "total", contains: []string{"more than 2 fractional digits"}},
		{name: "decimal tiny exponent", value: jsonWith("total", `1e-3`), field: "total", contains: []string{"more than 2 fractional digits"}},
		{name: "decimal huge exponent", value: jsonWith("total", `1e999`), field: "total", contains: []string{"more than 18 digits"}},
		{name: "decimal beyond precision", value: jsonWith("total", `"10000000000000000.00"`), field: "total", contains: []string{"more than 18 digits"}},
		{name: "decimal beyond precision negative", value: jsonWith("total", `-10000000000000000`), field: "total", contains: []string{"more than 18 digits"}},
		{name: "decimal not a number", value: jsonWith("total", `"12,34"`), field: "total", contains: []string{`"12,34" is not a decimal number`}},
		{name: "decimal with plus sign", value: jsonWith("total", `"+1"`), field: "total", contains: []string{"is not a decimal number"}},
		{name: "decimal empty string", value: jsonWith("total", `""`), field: "total", contains: []string{"is not a decimal number"}},
		{name: "decimal in nested item", value: jsonWith("items", `[{"sku": "a", "quantity": 1, "unit_price": "0.001"}]`),
			field: "items[0].unit_price", contains: []string{"more than 2 fractional digits"}},
		{name: "timestamp finer than millis", value: jsonWith("created_at", `"2026-11-18T11:06:40.1234Z"`), field: "created_at", contains: []string{"finer than milliseconds"}},
		{name: "timestamp not RFC 3339", value: jsonWith("created_at", `"18/11/2026"`), field: "created_at", contains: []string{"is not an RFC 3339 timestamp"}},
		{name: "timestamp fractional millis", value: jsonWith("created_at", `1.5`), field: "created_at", contains: []string{"is not an integer"}},
		{name: "timestamp boolean", value: jsonWith("created_at", `false`), field: "created_at",
			contains: []string{"want timestamp-millis as integer milliseconds or an RFC 3339 string, got JSON boolean"}},
		{name: "nullable wrong type", value: jsonWith("coupon", `7`), field: "coupon", contains: []string{"want string, got JSON number"}},
		{name: "not an object", value: []byte(`[1, 2]`), contains: []string{"decode: JSON value is not an object"}},
		{name: "JSON null", value: []byte(` null`), contains: []string{"decode: JSON value is not an object"}},
		{name: "invalid JSON", value: []byte(`{"order_id": `), contains: []string{"decode: invalid JSON"}},
		{name: "two objects", value: append(jsonWith("coupon", ""), "{}"...), contains: []string{"decode: trailing data after the JSON object"}},
		{name: "garbage after object", value: append(jsonWith("coupon", ""), " x"...), contains: []string{"trailing data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := d.Decode(tt.value)
			if row != nil {
				t.Errorf("row %v returned with an error", row)
			}
			checkErr(t, err, tt.field, tt.contains...)
		})
	}
}

func TestJSONEmptyAndNil(t *testing.T) {
	d := mustDecoder(t, FormatJSON, "order")
	if _, err := d.Decode(nil); !errors.Is(err, ErrTombstone) || err.Error() != "decode: tombstone (null value) on an event topic" {
		t.Errorf("nil value: %v", err)
	}
	if _, err := d.Decode([]byte{}); !errors.Is(err, ErrEmptyValue) || err.Error() != "decode: empty value" {
		t.Errorf("empty value: %v", err)
	}
}

// Every JSON form of every kind in the kitchen-sink schema, compared with
// goavro writing the same content.
func TestJSONKitchenSinkEqualsAvro(t *testing.T) {
	s, err := ParseSchema([]byte(kitchenSink))
	if err != nil {
		t.Fatal(err)
	}
	jd, err := NewFromSchema(FormatJSON, s)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := NewFromSchema(FormatAvro, s)
	if err != nil {
		t.Fatal(err)
	}
	w, err := goavro.NewCodec(kitchenSink)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := jd.Decode([]byte(`{
		"b": true, "f": 1.5, "d": -2.25, "raw": "\u0000\u0001\u00ff", "fx": "abcd",
		"money": "-123456789012345678901234.5678", "big": -99999999999999999999999999999999999999,
		"day": "1969-12-30", "us": "2026-11-18T11:06:40.123456Z",
		"id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "tod": 3723004,
		"attrs": {"x": "-1234.5", "y": null}, "tags": ["a", "b"],
		"sub": {"n": -7, "when": 5}, "again": "wxyz", "subs": [{"n": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	fromAvro, err := ad.Decode(encode(t, w, map[string]any{
		"b": true, "f": float32(1.5), "d": -2.25, "raw": []byte{0, 1, 0xff}, "fx": []byte("abcd"),
		"money": rat("-123456789012345678901234.5678"), "big": rat("-99999999999999999999999999999999999999"),
		"day": time.Date(1969, 12, 30, 0, 0, 0, 0, time.UTC), "us": time.UnixMicro(1_795_000_000_123_456),
		"id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "tod": time.Duration(3723004) * time.Millisecond,
		"attrs": map[string]any{"x": goavro.Union("bytes.decimal", rat("-1234.5")), "y": nil},
		"tags":  []any{"a", "b"},
		"sub":   goavro.Union("t.Sub", map[string]any{"n": int64(-7), "when": goavro.Union("long.timestamp-millis", time.UnixMilli(5))}),
		"again": goavro.Union("t.Four", []byte("wxyz")),
		"subs":  []any{map[string]any{"n": int64(1), "when": nil}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := sameMap(fromJSON, fromAvro); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromAvro) {
		t.Fatalf("not DeepEqual:\n%#v\n%#v", fromJSON, fromAvro)
	}

	for _, bad := range []struct{ doc, field, contains string }{
		{`"fx": "abc"`, "fx", "needs 4 bytes, got 3"},
		{`"raw": "\u0100"`, "raw", "U+0000..U+00FF"},
		{`"day": "1969-13-30"`, "day", "is not a date"},
		{`"us": "2026-11-18T11:06:40.1234567Z"`, "us", "finer than microseconds"},
		{`"attrs": {"x": "10000.0"}`, "attrs[x]", "more than 5 digits"},
		{`"attrs": []`, "attrs", "want map<nullable decimal(5,1)> as an object, got JSON array"},
		{`"f": 1e39`, "f", "out of range for float"},
		{`"b": 1`, "b", "want boolean, got JSON number"},
		{`"sub": {"n": 1, "when": "x"}`, "sub.when", "is not an RFC 3339 timestamp"},
	} {
		doc := `{"b": true, "f": 1, "d": 1, "raw": "", "fx": "abcd", "money": 0, "big": 0, "day": 0, "us": 0,
			"id": "", "tod": 0, "attrs": {}, "tags": [], "sub": null, "again": null, "subs": [], ` + bad.doc + `}`
		_, err := jd.Decode([]byte(doc))
		checkErr(t, err, bad.field, bad.contains)
	}
}
