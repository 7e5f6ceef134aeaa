package service

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/stage"
	"github.com/sluice-etl/sluice/pkg/transform"
)

type noRegistry struct{}

func (noRegistry) SchemaByID(context.Context, int32) (string, error) {
	panic("the registry is not asked at start-up")
}

// TestEveryFormatHasAColumnarDecoder: buildPipeline's decoder for json,
// avro and avro-confluent takes the columnar path with order_items (or no
// transform) and the row path with a transform that has none.
func TestEveryFormatHasAColumnarDecoder(t *testing.T) {
	schema, err := decode.LoadSchema(filepath.Join("..", "..", "schemas", "avro", "order.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	column := func(name string) int {
		for i, c := range []string{"order_id", "total", "item_count"} {
			if c == name {
				return i
			}
		}
		return -1
	}
	for _, format := range []string{decode.FormatJSON, decode.FormatAvro, decode.FormatAvroConfluent} {
		for _, tc := range []struct {
			transforms []string
			columnar   bool
		}{
			{nil, true},
			{[]string{"order_items"}, true},
			{[]string{"order_items", "payment_status"}, false},
		} {
			ts, err := transform.Build(tc.transforms, transform.Env{Pipeline: "orders", Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			row, err := decode.NewFromSchemaWith(format, schema, noRegistry{})
			if err != nil {
				t.Fatal(err)
			}
			dec, err := columnDecoder(format, schema, noRegistry{}, row, column, ts)
			if err != nil {
				t.Fatal(err)
			}
			st := make([]stage.Transform, len(ts))
			for i, tr := range ts {
				st[i] = tr
			}
			needs, ok := stage.Columnar(dec, st)
			if ok != tc.columnar {
				t.Errorf("%s with %v: columnar %v (decoder %T), want %v", format, tc.transforms, ok, dec, tc.columnar)
			}
			if ok && len(tc.transforms) > 0 && (len(needs) != 1 || needs[0] != "items.quantity") {
				t.Errorf("%s with %v: side lists %v, want items.quantity", format, tc.transforms, needs)
			}
			if _, isCD := dec.(decode.ContextDecoder); format == decode.FormatAvroConfluent && !isCD {
				t.Errorf("%s: decoder %T has no DecodeContext for the row path", format, dec)
			}
		}
	}
}
