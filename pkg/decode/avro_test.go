package decode

import (
	"errors"
	"math"
	"math/rand"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/sluice-etl/sluice/pkg/record"
)

var cet = time.FixedZone("CET", 3600)

// Every schema in schemas/avro, written by goavro from native values and
// decoded back, must give exactly the hand-written Row.
func TestAvroRoundTrip(t *testing.T) {
	lineItem := func(sku string, qty int32, price string) map[string]any {
		return map[string]any{"sku": sku, "quantity": qty, "unit_price": rat(price)}
	}
	rowItem := func(sku string, qty int32, price string) map[string]any {
		return map[string]any{"sku": sku, "quantity": qty, "unit_price": dec(price)}
	}
	order := func(total string, coupon any, items []any) map[string]any {
		return map[string]any{
			"order_id": "o-42", "customer_id": "c-7",
			// A non-UTC zone on the way in: the Row must hold the same instant in UTC.
			"created_at": time.Date(2026, 11, 25, 14, 14, 15, 678_000_000, cet),
			"currency":   "EUR", "total": rat(total), "status": "CONFIRMED", "channel": "MOBILE",
			"shipping_country": "DE", "items": items, "coupon": coupon,
		}
	}
	orderRow := func(total string, coupon any, items []any) record.Row {
		return record.Row{
			"order_id": "o-42", "customer_id": "c-7",
			"created_at": time.Date(2026, 11, 25, 13, 14, 15, 678_000_000, time.UTC),
			"currency":   "EUR", "total": dec(total), "status": "CONFIRMED", "channel": "MOBILE",
			"shipping_country": "DE", "items": items, "coupon": coupon,
		}
	}

	tests := []struct {
		name   string
		schema string
		native map[string]any
		want   record.Row
	}{
		{
			name: "order with items and coupon", schema: "order",
			native: order("12345678.90", goavro.Union("string", "SAVE10"), []any{
				lineItem("sku-1", 2, "0.01"), lineItem("sku-2", math.MaxInt32, "-5.00"), lineItem("sku-3", -1, "9999999999999999.99"),
			}),
			want: orderRow("12345678.90", "SAVE10", []any{
				rowItem("sku-1", 2, "0.01"), rowItem("sku-2", math.MaxInt32, "-5.00"), rowItem("sku-3", -1, "9999999999999999.99"),
			}),
		},
		{
			name: "order max total, no coupon, no items", schema: "order",
			native: order("9999999999999999.99", nil, []any{}),
			want:   orderRow("9999999999999999.99", nil, []any{}),
		},
		{
			name: "order min total", schema: "order",
			native: order("-9999999999999999.99", nil, []any{lineItem("", 0, "0.00")}),
			want:   orderRow("-9999999999999999.99", nil, []any{rowItem("", 0, "0.00")}),
		},
		{
			name: "order one cent", schema: "order",
			native: order("0.01", goavro.Union("string", ""), []any{}),
			want:   orderRow("0.01", "", []any{}),
		},
		{
			name: "order minus five", schema: "order",
			native: order("-5.00", nil, []any{}),
			want:   orderRow("-5.00", nil, []any{}),
		},
		{
			name: "payment failed", schema: "payment",
			native: map[string]any{
				"payment_id": "p-1", "order_id": "o-42", "created_at": time.UnixMilli(-1), // 1969-12-31T23:59:59.999Z
				"method": "BANK_TRANSFER", "status": "FAILED", "amount": rat("-0.01"), "currency": "USD",
				"failure_reason": goavro.Union("string", "card declined: ünïcödé"),
			},
			want: record.Row{
				"payment_id": "p-1", "order_id": "o-42", "created_at": time.Date(1969, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
				"method": "BANK_TRANSFER", "status": "FAILED", "amount": dec("-0.01"), "currency": "USD",
				"failure_reason": "card declined: ünïcödé",
			},
		},
		{
			name: "payment captured", schema: "payment",
			native: map[string]any{
				"payment_id": "p-2", "order_id": "o-43", "created_at": time.UnixMilli(1_795_000_000_001),
				"method": "WALLET", "status": "CAPTURED", "amount": rat("100"), "currency": "JPY", "failure_reason": nil,
			},
			want: record.Row{
				"payment_id": "p-2", "order_id": "o-43", "created_at": ms(1_795_000_000_001),
				"method": "WALLET", "status": "CAPTURED", "amount": dec("100.00"), "currency": "JPY", "failure_reason": nil,
			},
		},
		{
			name: "shipment with tracking", schema: "shipment",
			native: map[string]any{
				"shipment_id": "s-1", "order_id": "o-42", "event_time": time.UnixMilli(0),
				"status": "OUT_FOR_DELIVERY", "carrier": "DHL", "country": "FR",
				"tracking_number": goavro.Union("string", "JD0123"),
			},
			want: record.Row{
				"shipment_id": "s-1", "order_id": "o-42", "event_time": time.Unix(0, 0).UTC(),
				"status": "OUT_FOR_DELIVERY", "carrier": "DHL", "country": "FR", "tracking_number": "JD0123",
			},
		},
		{
			name: "shipment without tracking", schema: "shipment",
			native: map[string]any{
				"shipment_id": "s-2", "order_id": "o-42", "event_time": time.UnixMilli(1_795_000_000_999),
				"status": "RETURNED", "carrier": "UPS", "country": "US", "tracking_number": nil,
			},
			want: record.Row{
				"shipment_id": "s-2", "order_id": "o-42", "event_time": ms(1_795_000_000_999),
				"status": "RETURNED", "carrier": "UPS", "country": "US", "tracking_number": nil,
			},
		},
		{
			name: "customer", schema: "customer",
			native: map[string]any{
				"customer_id": "c-7", "name": "Ada Lovelace", "email": "ada@example.com", "country": "GB",
				"segment": "VIP", "created_at": time.Date(2020, 2, 29, 23, 59, 59, 1_000_000, cet),
			},
			want: record.Row{
				"customer_id": "c-7", "name": "Ada Lovelace", "email": "ada@example.com", "country": "GB",
				"segment": "VIP", "created_at": time.Date(2020, 2, 29, 22, 59, 59, 1_000_000, time.UTC),
			},
		},
		{
			name: "fx rate with 8 decimals", schema: "fx_rate",
			native: map[string]any{"currency": "USD", "rate": rat("1.08345678"), "effective_from": time.UnixMilli(1_795_000_000_000)},
			want:   record.Row{"currency": "USD", "rate": dec("1.08345678"), "effective_from": ms(1_795_000_000_000)},
		},
		{
			name: "fx rate smallest", schema: "fx_rate",
			native: map[string]any{"currency": "IDR", "rate": rat("0.00000001"), "effective_from": time.UnixMilli(1)},
			want:   record.Row{"currency": "IDR", "rate": dec("0.00000001"), "effective_from": ms(1)},
		},
		{
			name: "fx rate largest", schema: "fx_rate",
			native: map[string]any{"currency": "XXX", "rate": rat("9999999999.99999999"), "effective_from": time.UnixMilli(2)},
			want:   record.Row{"currency": "XXX", "rate": dec("9999999999.99999999"), "effective_from": ms(2)},
		},
		{
			name: "fx base currency", schema: "fx_rate",
			native: map[string]any{"currency": "EUR", "rate": rat("1"), "effective_from": time.UnixMilli(3)},
			want:   record.Row{"currency": "EUR", "rate": dec("1.00000000"), "effective_from": ms(3)},
		},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen[tt.schema] = true
			value := encode(t, writerCodec(t, tt.schema), tt.native)
			row, err := mustDecoder(t, FormatAvro, tt.schema).Decode(value)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertRow(t, row, tt.want)
			if err := checkShape(mustSchema(t, tt.schema).root, row); err != nil {
				t.Fatalf("shape: %v", err)
			}
		})
	}
	// Every schema shipped must be covered.
	files, err := os.ReadDir(schemaFile("x")[:len(schemaFile("x"))-len("x.avsc")])
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name, ok := strings.CutSuffix(f.Name(), ".avsc"); ok && !seen[name] {
			t.Errorf("schema %s has no round-trip case", name)
		}
	}
}

func validOrder(t testing.TB) []byte {
	return encode(t, writerCodec(t, "order"), map[string]any{
		"order_id": "o-42", "customer_id": "c-7", "created_at": time.UnixMilli(1_795_000_000_123),
		"currency": "EUR", "total": rat("12345678.90"), "status": "CREATED", "channel": "WEB",
		"shipping_country": "DE",
		"items": []any{
			map[string]any{"sku": "sku-1", "quantity": int32(2), "unit_price": rat("19.99")},
			map[string]any{"sku": "sku-2", "quantity": int32(1), "unit_price": rat("12345638.92")},
		},
		"coupon": goavro.Union("string", "SAVE10"),
	})
}

func TestAvroErrors(t *testing.T) {
	d := mustDecoder(t, FormatAvro, "order")
	valid := validOrder(t)
	if _, err := d.Decode(valid); err != nil {
		t.Fatalf("valid order: %v", err)
	}
	tooWide := encode(t, writerCodec(t, "order"), map[string]any{ // goavro does not check precision
		"order_id": "o", "customer_id": "c", "created_at": time.UnixMilli(0), "currency": "EUR",
		"total": rat("10000000000000000.00"), "status": "CREATED", "channel": "WEB",
		"shipping_country": "DE", "items": []any{}, "coupon": nil,
	})

	tests := []struct {
		name     string
		value    []byte
		field    string
		sentinel error
		text     string // the whole message
		contains string
	}{
		{name: "nil value", value: nil, sentinel: ErrTombstone, text: "decode: tombstone (null value) on an event topic"},
		{name: "empty value", value: []byte{}, sentinel: ErrEmptyValue, text: "decode: empty value"},
		{name: "trailing bytes", value: append(append([]byte(nil), valid...), 1, 2, 3), sentinel: ErrTrailingBytes, text: "decode: 3 trailing bytes"},
		{name: "truncated in total", value: avroWriter(nil).str("o-1").str("c-1").long(5).str("EUR").long(3).append(0x01),
			field: "total", sentinel: ErrTruncated, text: `decode: field "total": truncated record`},
		{name: "truncated in a line item", value: orderHead(0, 0).long(2).str("a").long(1).unscaled(5).str("b"),
			field: "items[1].quantity", sentinel: ErrTruncated, text: `decode: field "items[1].quantity": truncated record`},
		{name: "enum index beyond symbols", value: orderHead(3, 0).long(0).long(0), field: "status", contains: "enum index 3"},
		{name: "negative enum index", value: orderHead(0, -1).long(0).long(0), field: "channel", contains: "enum index -1"},
		{name: "union index out of range", value: orderHead(0, 0).long(0).long(2), field: "coupon", contains: "union branch index 2"},
		{name: "negative string length", value: avroWriter(nil).long(-4), field: "order_id", contains: "negative length -4"},
		{name: "invalid UTF-8", value: avroWriter(nil).str("o-\xff"), field: "order_id", contains: "UTF-8"},
		{name: "int overflow", value: orderHead(0, 0).long(1).str("a").long(math.MaxInt32 + 1), field: "items[0].quantity", contains: "out of range"},
		{name: "varint overflow", value: avroWriter(nil).str("o").str("c").append(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
			field: "created_at", contains: "varint overflows"},
		{name: "decimal beyond precision", value: tooWide, field: "total", contains: "has more than 18 digits"},
		{name: "array count the bytes cannot hold", value: orderHead(0, 0).long(1 << 28),
			field: "items", sentinel: ErrTruncated, contains: "268435456 items cannot fit"},
		{name: "negative block count without size", value: orderHead(0, 0).long(-1), field: "items", sentinel: ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := d.Decode(tt.value)
			if row != nil {
				t.Errorf("row %v returned with an error", row)
			}
			e := checkErr(t, err, tt.field, tt.contains)
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("error %q is not %v", err, tt.sentinel)
			}
			if tt.sentinel == nil && e.Err != nil {
				t.Errorf("error %q wraps unexpected %v", err, e.Err)
			}
			if tt.text != "" && err.Error() != tt.text {
				t.Errorf("error %q, want %q", err, tt.text)
			}
		})
	}
}

func (w avroWriter) append(b ...byte) avroWriter { return append(w, b...) }

// Every strict prefix of a valid record is a truncated record.
func TestAvroEveryPrefixTruncated(t *testing.T) {
	d := mustDecoder(t, FormatAvro, "order")
	valid := validOrder(t)
	for n := 1; n < len(valid); n++ {
		_, err := d.Decode(valid[:n])
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix of %d/%d bytes: %v, want truncated", n, len(valid), err)
		}
	}
}

// An enum symbol added by a newer writer is not a symbol of our schema.
func TestAvroUnknownEnumSymbol(t *testing.T) {
	text, err := os.ReadFile(schemaFile("order"))
	if err != nil {
		t.Fatal(err)
	}
	newer := strings.Replace(string(text), `"CANCELLED"]`, `"CANCELLED", "REFUNDED"]`, 1)
	if newer == string(text) {
		t.Fatal("could not extend the OrderStatus enum")
	}
	w, err := goavro.NewCodec(newer)
	if err != nil {
		t.Fatal(err)
	}
	value := encode(t, w, map[string]any{
		"order_id": "o", "customer_id": "c", "created_at": time.UnixMilli(0), "currency": "EUR",
		"total": rat("1"), "status": "REFUNDED", "channel": "WEB",
		"shipping_country": "DE", "items": []any{}, "coupon": nil,
	})
	_, err = mustDecoder(t, FormatAvro, "order").Decode(value)
	checkErr(t, err, "status", "enum index 3 is not a symbol of OrderStatus")
}

// goavro sizes its array from the block count before reading any item: 13
// bytes claiming 2^28 items would cost it 4 GiB. The scan must refuse first.
func TestAvroHugeBlockCountAllocatesLittle(t *testing.T) {
	d := mustDecoder(t, FormatAvro, "order")
	for _, count := range []int64{1 << 28, math.MaxInt32, -(1 << 30)} {
		value := orderHead(0, 0).long(count).long(1)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := d.Decode(value)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("count %d: %v, want truncated", count, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("count %d: decoding allocated %d bytes", count, n)
		}
	}
}

// Random bytes never panic; with this seed none is a valid order.
func TestAvroRandomBytes(t *testing.T) {
	d := mustDecoder(t, FormatAvro, "order")
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		b := make([]byte, 1+rng.Intn(300))
		rng.Read(b)
		row, err := d.Decode(b)
		if err == nil {
			t.Fatalf("random %x decoded to %v", b, row)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("random %x: error %T is not *Error", b, err)
		}
	}
}

// A schema using every kind and logical type the decoder knows.
const kitchenSink = `{
  "type": "record", "name": "Sink", "namespace": "t",
  "fields": [
    {"name": "b", "type": "boolean"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "raw", "type": "bytes"},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "money", "type": {"type": "fixed", "name": "Money", "size": 12, "logicalType": "decimal", "precision": 28, "scale": 4}},
    {"name": "big", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 0}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "tod", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "attrs", "type": {"type": "map", "values": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 1}]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "sub", "type": ["null", {"type": "record", "name": "Sub", "fields": [
      {"name": "n", "type": "long"},
      {"name": "when", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]}
    ]}]},
    {"name": "again", "type": ["Four", "null"]},
    {"name": "subs", "type": {"type": "array", "items": "Sub"}}
  ]
}`

func TestAvroKitchenSink(t *testing.T) {
	s, err := ParseSchema([]byte(kitchenSink))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewFromSchema(FormatAvro, s)
	if err != nil {
		t.Fatal(err)
	}
	w, err := goavro.NewCodec(kitchenSink)
	if err != nil {
		t.Fatal(err)
	}
	value := encode(t, w, map[string]any{
		"b": true, "f": float32(1.5), "d": -2.25, "raw": []byte{0, 1, 0xff}, "fx": []byte("abcd"),
		"money": rat("-123456789012345678901234.5678"), "big": rat("-99999999999999999999999999999999999999"),
		"day": time.Date(1969, 12, 30, 0, 0, 0, 0, time.UTC), "us": time.UnixMicro(1_795_000_000_123_456),
		"id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "tod": time.Duration(3723004) * time.Millisecond,
		"attrs": map[string]any{"x": goavro.Union("bytes.decimal", rat("-1234.5")), "y": nil},
		"tags":  []any{"a", "b"},
		"sub":   goavro.Union("t.Sub", map[string]any{"n": int64(-7), "when": goavro.Union("long.timestamp-millis", time.UnixMilli(5))}),
		"again": goavro.Union("t.Four", []byte("wxyz")),
		"subs":  []any{map[string]any{"n": int64(1), "when": nil}},
	})
	row, err := d.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	want := record.Row{
		"b": true, "f": float32(1.5), "d": -2.25, "raw": []byte{0, 1, 0xff}, "fx": []byte("abcd"),
		"money": dec("-123456789012345678901234.5678"), "big": dec("-99999999999999999999999999999999999999"),
		"day": time.Date(1969, 12, 30, 0, 0, 0, 0, time.UTC), "us": time.UnixMicro(1_795_000_000_123_456).UTC(),
		"id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "tod": int32(3723004),
		"attrs": map[string]any{"x": dec("-1234.5"), "y": nil},
		"tags":  []any{"a", "b"},
		"sub":   map[string]any{"n": int64(-7), "when": ms(5)},
		"again": []byte("wxyz"),
		"subs":  []any{map[string]any{"n": int64(1), "when": nil}},
	}
	assertRow(t, row, want)

	// Nothing in the Row aliases the record value.
	for i := range value {
		value[i] = 0xee
	}
	assertRow(t, row, want)
}

func TestAvroDecimalWidths(t *testing.T) {
	s, err := ParseSchema([]byte(`{"type":"record","name":"R","fields":[
		{"name":"a","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}},
		{"name":"w","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewFromSchema(FormatAvro, s)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		a, w  []byte
		wantA string
		wantW string
		field string
	}{
		{name: "empty bytes are zero", a: nil, w: []byte{0}, wantA: "0.00", wantW: "0.00"},
		{name: "non-minimal encoding", a: []byte{0xff, 0xff, 0xff, 0xfe}, w: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, wantA: "-0.02", wantW: "0.01"},
		{name: "nine-byte negative", a: []byte{1}, w: []byte{0xff, 0x75, 0x38, 0xdc, 0xfb, 0x76, 0x17, 0xff, 0xff}, wantA: "0.01", wantW: "-100000000000000000.01"},
		{name: "largest of precision 20", a: []byte{1}, w: []byte{0x05, 0x6b, 0xc7, 0x5e, 0x2d, 0x63, 0x0f, 0xff, 0xff}, wantA: "0.01", wantW: "999999999999999999.99"},
		{name: "one past precision 20", a: []byte{1}, w: []byte{0x05, 0x6b, 0xc7, 0x5e, 0x2d, 0x63, 0x10, 0x00, 0x00}, field: "w"},
		{name: "int64 beyond precision 18", a: []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, w: []byte{0}, field: "a"},
		{name: "int64 min", a: []byte{0x80, 0, 0, 0, 0, 0, 0, 0}, w: []byte{0}, field: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := d.Decode(avroWriter(nil).bytes(tt.a).bytes(tt.w))
			if tt.field != "" {
				checkErr(t, err, tt.field, "digits, does not fit decimal(")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertRow(t, row, record.Row{"a": dec(tt.wantA), "w": dec(tt.wantW)})
		})
	}
}

func TestAvroConcurrent(t *testing.T) {
	d := mustDecoder(t, FormatAvro, "order")
	valid := validOrder(t)
	want, err := d.Decode(valid)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				row, err := d.Decode(valid)
				if err == nil {
					err = sameMap(row, want)
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
