package decode

import (
	"encoding/json"
	"testing"

	"github.com/linkedin/goavro/v2"
)

// benchOrder is a typical order: 3 line items, a coupon; ~150 bytes.
func benchOrder(b *testing.B) []byte {
	value := encode(b, writerCodec(b, "order"), map[string]any{
		"order_id": "ord-000000123456", "customer_id": "cus-000042", "created_at": ms(1_795_000_000_123),
		"currency": "EUR", "total": rat("259.47"), "status": "CONFIRMED", "channel": "WEB",
		"shipping_country": "DE",
		"items": []any{
			map[string]any{"sku": "SKU-RED-SHOE-42", "quantity": int32(1), "unit_price": rat("89.99")},
			map[string]any{"sku": "SKU-BLUE-SOCK-M", "quantity": int32(3), "unit_price": rat("4.50")},
			map[string]any{"sku": "SKU-HAT-WOOL-L", "quantity": int32(1), "unit_price": rat("155.98")},
		},
		"coupon": goavro.Union("string", "WINTER10"),
	})
	return value
}

func BenchmarkDecodeOrderAvro(b *testing.B) {
	value := benchOrder(b)
	d := mustDecoder(b, FormatAvro, "order")
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeOrderAvroParallel(b *testing.B) {
	value := benchOrder(b)
	d := mustDecoder(b, FormatAvro, "order")
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := d.Decode(value); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The parts of the Avro path, for comparison: goavro alone on the schema as
// written (decimals as *big.Rat) and on the schema without logical types
// (what the decoder uses), and the pre-decode scan alone.
func BenchmarkOrderAvroParts(b *testing.B) {
	value := benchOrder(b)
	s := mustSchema(b, "order")
	stripped, err := json.Marshal(stripLogical(s.tree))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		codec *goavro.Codec
	}{{"goavro-logical", writerCodec(b, "order")}, {"goavro-stripped", mustCodec(b, string(stripped))}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.codec.NativeFromBinary(value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("scan", func(b *testing.B) {
		p := newPlan(s.root)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.scan(value, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecodeOrderJSON(b *testing.B) {
	value := []byte(jsonOrder)
	d := mustDecoder(b, FormatJSON, "order")
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(value); err != nil {
			b.Fatal(err)
		}
	}
}

func mustCodec(b *testing.B, schema string) *goavro.Codec {
	c, err := goavro.NewCodec(schema)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// The encoding/json decoder that Decode replaced, for comparison.
func BenchmarkDecodeOrderJSONStd(b *testing.B) {
	value := []byte(jsonOrder)
	d := mustDecoder(b, FormatJSON, "order").(*jsonDecoder)
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.decodeJSONStd(value); err != nil {
			b.Fatal(err)
		}
	}
}
