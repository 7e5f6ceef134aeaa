package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/stage"
	"github.com/sluice-etl/sluice/pkg/transform"
)

// TestBlockPathMatchesRowPath runs the same JSON orders through the row
// path (Row per record, order_items on rows, Prepare converting the rows)
// and the columnar path (decode.ColumnJSON into a Block, order_items on
// columns, Prepare picking rows) and wants the same columns sent and the
// same items failed, at the same stage and for the same reason. The
// inputs are generated orders and a catalogue of records the fast parser
// must hand to the row decoder or reject as it does.
func TestBlockPathMatchesRowPath(t *testing.T) {
	f := newJSONOrders(t, 500)
	o := f.gen.Order(900)
	edits := []func(m map[string]any){
		func(m map[string]any) { delete(m, "coupon") },
		func(m map[string]any) { m["coupon"] = nil },
		func(m map[string]any) { m["coupon"] = "caf\u00e9 \"10\"" },
		func(m map[string]any) { m["order_id"] = "tab\there" },
		func(m map[string]any) { m["created_at"] = "2026-03-01T10:00:00Z" },
		func(m map[string]any) { m["created_at"] = "2026-03-01T10:00:00.0001Z" },
		func(m map[string]any) { m["created_at"] = -1000 },
		func(m map[string]any) { m["created_at"] = 1e12 },
		func(m map[string]any) { m["total"] = 12.5 },
		func(m map[string]any) { m["total"] = "12.345" },
		func(m map[string]any) { m["total"] = "12.340" },
		func(m map[string]any) { m["total"] = "1.5e2" },
		func(m map[string]any) { m["total"] = "99999999999999999.99" },
		func(m map[string]any) { m["total"] = "-0.01" },
		func(m map[string]any) { m["status"] = "SHIPPED" },
		func(m map[string]any) { m["status"] = 1 },
		func(m map[string]any) { delete(m, "currency") },
		func(m map[string]any) { m["extra"] = map[string]any{"a": []any{1, "x", nil}} },
		func(m map[string]any) { m["items"] = []any{} },
		func(m map[string]any) { m["items"] = "none" },
		func(m map[string]any) {
			m["items"] = []any{map[string]any{"sku": "A", "quantity": 0, "unit_price": "1.00"}}
		},
		func(m map[string]any) {
			m["items"] = []any{map[string]any{"sku": "A", "quantity": 2, "unit_price": "1.00"}, map[string]any{"sku": "B", "quantity": -3, "unit_price": "1.00"}}
		},
		func(m map[string]any) {
			m["items"] = []any{map[string]any{"sku": "A", "quantity": 2.0, "unit_price": "1.00"}}
		},
		func(m map[string]any) {
			m["items"] = []any{map[string]any{"sku": "A", "quantity": 3000000000, "unit_price": "1.00"}}
		},
		func(m map[string]any) { m["items"] = []any{map[string]any{"sku": "A", "unit_price": "1.00"}} },
		func(m map[string]any) {
			big := map[string]any{"sku": "A", "quantity": 2147483647, "unit_price": "1.00"}
			m["items"] = []any{big, big, big}
		},
	}
	for _, e := range edits {
		f.values = append(f.values, orderJSON(t, o, e))
	}
	good := string(orderJSON(t, o, nil))
	f.values = append(f.values,
		[]byte(`{"order_id":"a","order_id":"b"`+good[1:]), // a repeated key
		[]byte(good+" x"),
		[]byte(" \n"+good+"\t"),
		[]byte(`[]`),
		[]byte(``),
		[]byte(good[:len(good)-1]),
	)

	rowB, colB := f.batch(), f.batch()
	rowBufs, colBufs := f.tab.NewBuffers(), f.tab.NewBuffers()
	if !stage.Run(context.Background(), rowB, f.rowDec, f.stages, f.retry) {
		t.Fatal("row path gave up")
	}
	colB.Block = f.tab.Block(colBufs, f.needs)
	if !stage.Run(context.Background(), colB, f.colDec, f.stages, f.retry) {
		t.Fatal("columnar path gave up")
	}
	nRow, nCol := f.tab.Prepare(rowBufs, rowB), f.tab.Prepare(colBufs, colB)
	if nRow != nCol {
		t.Errorf("prepared %d rows on the row path, %d on the columnar path", nRow, nCol)
	}
	// The generated JSON orders read as their Avro encodings do.
	avro, err := decode.NewFromSchema(decode.FormatAvro, f.schema)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		_, v, err := f.gen.Codecs().EncodeOrder(f.gen.Order(i))
		if err != nil {
			t.Fatal(err)
		}
		want, err := avro.Decode(v)
		if err != nil {
			t.Fatal(err)
		}
		want["item_count"] = rowB.Items[i].Row["item_count"] // order_items' output
		if !reflect.DeepEqual(rowB.Items[i].Row, want) {
			t.Fatalf("order %d: JSON reads %v, Avro %v", i, rowB.Items[i].Row, want)
		}
	}
	for i := range f.values {
		rf, cf := rowB.Items[i].Failed, colB.Items[i].Failed
		if fmt.Sprint(rf) != fmt.Sprint(cf) {
			t.Errorf("value %d %q: row path failed %v, columnar %v", i, f.values[i], rf, cf)
		}
	}
	if nRow < 500 {
		t.Fatalf("only %d rows prepared: the generated orders must all load", nRow)
	}
	for j, c := range f.tab.cols {
		if want, got := rowBufs.cols[j].slice(), colBufs.send[j]; !reflect.DeepEqual(want, got) {
			t.Errorf("column %s differs:\nrow path %v\ncolumnar %v", c.Name, want, got)
		}
	}

	// A slice of the batch (as bisect makes) sends its own rows.
	sub := colB.Slice(10, 20)
	if n := f.tab.Prepare(colBufs, sub); n != 10 {
		t.Fatalf("prepared %d rows of a 10-row slice", n)
	}
	offs := colBufs.send[f.tab.Column(ColOffset)].([]uint64)
	if offs[0] != 110 || offs[9] != 119 {
		t.Errorf("slice 10..20 sent offsets %v", offs)
	}
}

// BenchmarkJSONOrders measures decode, order_items and Prepare of a
// 50,000-row batch of JSON orders, per row, on both paths.
func BenchmarkJSONOrders(b *testing.B) {
	f := newJSONOrders(b, benchBatchRows)
	for _, columnar := range []bool{false, true} {
		name := "rows"
		if columnar {
			name = "columns"
		}
		b.Run(name, func(b *testing.B) {
			bufs := f.tab.NewBuffers()
			b.ReportAllocs()
			for b.Loop() {
				batch := f.batch()
				dec := f.rowDec
				if columnar {
					batch.Block, dec = f.tab.Block(bufs, f.needs), f.colDec
				}
				if !stage.Run(context.Background(), batch, dec, f.stages, f.retry) {
					b.Fatal("gave up")
				}
				if n := f.tab.Prepare(bufs, batch); n != len(batch.Items) {
					b.Fatalf("prepared %d of %d: %s", n, len(batch.Items), firstFailure(batch))
				}
			}
			perRow := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(f.values))
			b.ReportMetric(perRow, "ns/row")
		})
	}
}

// jsonOrders is a fixture: generated JSON orders, the orders table (from
// its DDL, bound as the json pipeline binds it) and both paths' decoders.
type jsonOrders struct {
	gen    *gen.Generator
	schema *decode.Schema
	values [][]byte
	tab    *Table
	rowDec stage.Decoder
	colDec *decode.ColumnJSON
	stages []stage.Transform
	needs  []string
}

func newJSONOrders(tb testing.TB, n int) *jsonOrders {
	_, file, _, _ := runtime.Caller(0)
	avsc := filepath.Join(filepath.Dir(file), "..", "..", "schemas", "avro")
	schema, err := decode.LoadSchema(filepath.Join(avsc, "order.avsc"))
	if err != nil {
		tb.Fatal(err)
	}
	f := &jsonOrders{schema: schema}
	if f.gen, err = gen.New(gen.Options{Seed: 5, SchemaDir: avsc}); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		_, v, err := gen.EncodeOrderJSON(f.gen.Order(i))
		if err != nil {
			tb.Fatal(err)
		}
		f.values = append(f.values, v)
	}
	f.tab = ordersTableFromDDL(tb)
	f.tab.now = func() time.Time { return time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC) }
	filled := map[string]bool{"item_count": true}
	for _, fl := range schema.Fields {
		filled[fl.Name] = true
	}
	if err := f.tab.Bind(func(c string) bool { return filled[c] }); err != nil {
		tb.Fatal(err)
	}
	ts, err := transform.Build([]string{"order_items"}, transform.Env{Pipeline: "orders", Schema: schema})
	if err != nil {
		tb.Fatal(err)
	}
	f.stages = []stage.Transform{ts[0]}
	if f.rowDec, err = decode.NewFromSchema(decode.FormatJSON, schema); err != nil {
		tb.Fatal(err)
	}
	var ok bool
	if f.colDec, ok = decode.NewColumnJSON(schema, f.tab.Column, []string{"items.quantity"}); !ok {
		tb.Fatal("NewColumnJSON refused the orders schema")
	}
	if f.needs, ok = stage.Columnar(f.colDec, f.stages); !ok {
		tb.Fatal("order_items is not columnar")
	}
	return f
}

func (f *jsonOrders) retry(_ string, fn func() error) bool { return fn() == nil }

func (f *jsonOrders) batch() *record.Batch {
	b := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 1, TopicID: "tid", First: 100, Last: int64(100 + len(f.values) - 1)}
	b.Items = make([]record.Item, len(f.values))
	for i, v := range f.values {
		b.Items[i] = record.Item{Rec: &kgo.Record{Topic: "orders", Partition: 1, Offset: int64(100 + i), Value: v}}
	}
	return b
}

// orderJSON encodes o as the json format reads it, after edit.
func orderJSON(t testing.TB, o gen.Order, edit func(map[string]any)) []byte {
	items := []any{}
	for _, it := range o.Items {
		items = append(items, map[string]any{"sku": it.SKU, "quantity": it.Quantity, "unit_price": it.UnitPrice.StringFixed(gen.MoneyScale)})
	}
	m := map[string]any{
		"order_id": o.OrderID, "customer_id": o.CustomerID, "created_at": o.CreatedAt.UnixMilli(),
		"currency": o.Currency, "total": o.Total.StringFixed(gen.MoneyScale), "status": string(o.Status),
		"channel": string(o.Channel), "shipping_country": o.ShippingCountry, "items": items, "coupon": o.Coupon,
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
