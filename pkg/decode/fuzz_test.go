package decode

import (
	"math/big"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/pkg/record"
)

// Both fuzzers check the same properties on whatever decodes: no panic,
// every field present with its Row type (checkShape), and the Row survives
// a trip through goavro's writer and our Avro decoder unchanged, i.e. the
// decoders accept only what can be represented faithfully.

func FuzzAvroOrder(f *testing.F) {
	w := writerCodec(f, "order")
	f.Add(validOrder(f))
	f.Add(encode(f, w, map[string]any{
		"order_id": "", "customer_id": "", "created_at": time.UnixMilli(-62135596800000), "currency": "",
		"total": rat("-9999999999999999.99"), "status": "CANCELLED", "channel": "STORE",
		"shipping_country": "", "items": []any{}, "coupon": nil,
	}))
	f.Add(encode(f, w, map[string]any{
		"order_id": "ö", "customer_id": "c", "created_at": time.UnixMilli(1), "currency": "JPY",
		"total": rat("0"), "status": "CONFIRMED", "channel": "MOBILE", "shipping_country": "JP",
		"items": []any{
			map[string]any{"sku": "a", "quantity": int32(-1), "unit_price": rat("9999999999999999.99")},
			map[string]any{"sku": "b", "quantity": int32(7), "unit_price": rat("-0.01")},
		},
		"coupon": goavro.Union("string", "X"),
	}))
	f.Add([]byte(orderHead(0, 0).long(-2).long(8).str("a").long(1).unscaled(1).str("b").long(2).unscaled(-1).long(0).long(0)))
	s := mustSchema(f, "order")
	d := mustDecoder(f, FormatAvro, "order")
	f.Fuzz(func(t *testing.T, value []byte) {
		row, err := d.Decode(value)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			return
		}
		fresh, err := d.Decode(value)
		if err != nil {
			t.Fatalf("second decode failed: %v", err)
		}
		checkDecoded(t, s, w, d, row, fresh)
	})
}

func FuzzJSONOrder(f *testing.F) {
	f.Add([]byte(jsonOrder))
	f.Add(jsonWith("coupon", ""))
	f.Add(jsonWith("created_at", `"2026-11-18T12:06:40.123+01:00"`))
	f.Add(jsonWith("total", `-1e2`))
	f.Add(jsonWith("items", `[{"sku": "a", "quantity": 3.0e0, "unit_price": 0.10, "x": [1]}]`))
	s := mustSchema(f, "order")
	w := writerCodec(f, "order")
	jd := mustDecoder(f, FormatJSON, "order")
	ad := mustDecoder(f, FormatAvro, "order")
	f.Fuzz(func(t *testing.T, value []byte) {
		row, err := jd.Decode(value)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			return
		}
		fresh, err := jd.Decode(value)
		if err != nil {
			t.Fatalf("second decode failed: %v", err)
		}
		checkDecoded(t, s, w, ad, row, fresh)
	})
}

// fresh is a second decode of the same input, to prove that re-encoding
// leaves row alone and that decoding is deterministic.
func checkDecoded(t *testing.T, s *Schema, w *goavro.Codec, avro Decoder, row, fresh record.Row) {
	t.Helper()
	if err := checkShape(s.root, row); err != nil {
		t.Fatalf("decoded row has wrong shape: %v\n%v", err, row)
	}
	for _, f := range s.Fields {
		if row[f.Name] == nil && !f.Type.Nullable {
			t.Fatalf("required field %q is nil", f.Name)
		}
	}
	value, err := w.BinaryFromNative(nil, toNative(s.root, map[string]any(row)))
	if err != nil {
		t.Fatalf("re-encoding %v: %v", row, err)
	}
	again, err := avro.Decode(value)
	if err != nil {
		t.Fatalf("re-decoding %v: %v", row, err)
	}
	if err := sameMap(again, fresh); err != nil {
		t.Fatalf("row changed through Avro: %v", err)
	}
	if err := sameMap(row, fresh); err != nil {
		t.Fatalf("row mutated by re-encoding: %v", err)
	}
}

// toNative turns a Row value back into what goavro's writer takes for the
// unmodified schema.
func toNative(t *Type, v any) any {
	if v == nil {
		return nil
	}
	var out any
	switch {
	case t.Logical == LogicalDecimal:
		d := v.(decimal.Decimal)
		out = new(big.Rat).Set(d.Rat())
	case t.Kind == KindArray:
		s := v.([]any)
		n := make([]any, len(s))
		for i, x := range s {
			n[i] = toNative(t.Items, x)
		}
		out = n
	case t.Kind == KindRecord:
		m := v.(map[string]any)
		n := make(map[string]any, len(m))
		for _, f := range t.Fields {
			n[f.Name] = toNative(f.Type, m[f.Name])
		}
		out = n
	default:
		out = v
	}
	if t.Nullable {
		name := t.Kind.String()
		if t.Name != "" {
			name = t.Name
		}
		return goavro.Union(name, out)
	}
	return out
}
