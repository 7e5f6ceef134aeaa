package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
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
// 50,000-row batch of JSON orders, per row, on both paths; columns/native
// is the columnar path into the native writer's buffers, as `sluice run`
// loads the orders table. allocs/row counts what decode, the transform
// and Prepare allocate (runtime.MemStats around them), not the fixture's
// batch of records, which Kafka's client would have made.
func BenchmarkJSONOrders(b *testing.B) {
	f := newJSONOrders(b, benchBatchRows)
	native, _ := ordersWithItems(b, f.schema)
	if err := native.UseNative(new(NativeWriter)); err != nil { // never connects here
		b.Fatal(err)
	}
	for _, name := range []string{"rows", "columns", "columns/native"} {
		b.Run(name, func(b *testing.B) {
			tab := f.tab
			if name == "columns/native" {
				tab = native
			}
			bufs := tab.NewBuffers()
			var allocs uint64
			var before, after runtime.MemStats
			b.ReportAllocs()
			for b.Loop() {
				batch := f.batch()
				dec := f.rowDec
				runtime.ReadMemStats(&before)
				if name != "rows" {
					batch.Block, dec = tab.Block(bufs, f.needs), f.colDec
				}
				if !stage.Run(context.Background(), batch, dec, f.stages, f.retry) {
					b.Fatal("gave up")
				}
				if n := tab.Prepare(bufs, batch); n != len(batch.Items) {
					b.Fatalf("prepared %d of %d: %s", n, len(batch.Items), firstFailure(batch))
				}
				runtime.ReadMemStats(&after)
				allocs += after.Mallocs - before.Mallocs
			}
			rows := float64(b.N) * float64(len(f.values))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
			b.ReportMetric(float64(allocs)/rows, "allocs/row")
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
	f.tab, f.stages = ordersWithItems(tb, schema)
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

// TestBlockPathMatchesRowPathMixedTypes is TestBlockPathMatchesRowPath for
// every kind of field the fast parser handles, each into a column of its
// own type and into one that converts or refuses it.
func TestBlockPathMatchesRowPathMixedTypes(t *testing.T) {
	schema, err := decode.ParseSchema([]byte(`{"type": "record", "name": "Mixed", "fields": [
		{"name": "id", "type": "string"},
		{"name": "n", "type": "int"},
		{"name": "n_text", "type": ["null", "int"], "default": null},
		{"name": "l", "type": "long"},
		{"name": "small", "type": "long"},
		{"name": "b", "type": "boolean"},
		{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
		{"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
		{"name": "day", "type": {"type": "int", "logicalType": "date"}},
		{"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
		{"name": "d_wide", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
		{"name": "d_narrow", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 4}},
		{"name": "d_small", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
		{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
		{"name": "e_text", "type": {"type": "enum", "name": "E2", "symbols": ["A", "B", "C"]}},
		{"name": "opt", "type": ["null", "string"], "default": null},
		{"name": "opt_n", "type": ["null", "long"], "default": null},
		{"name": "skipped", "type": "string"}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	tab := tableOf(t, "mixed", [][2]string{
		{"id", "String"}, {"n", "Int32"}, {"n_text", "String"}, {"l", "Int64"}, {"small", "UInt8"},
		{"b", "UInt8"}, {"ts", "DateTime('UTC')"}, {"us", "DateTime('UTC')"}, {"day", "Date"},
		{"d", "Decimal(9, 2)"}, {"d_wide", "Decimal(18, 4)"}, {"d_narrow", "Decimal(9, 2)"}, {"d_small", "Decimal(4, 2)"},
		{"e", "Enum8('A' = 1, 'B' = 2)"}, {"e_text", "String"}, {"opt", "Nullable(String)"}, {"opt_n", "Nullable(Int64)"},
		{ColTopic, "String"}, {ColPartition, "UInt32"}, {ColOffset, "UInt64"}, {ColTopicID, "String"}, {ColIngestedAt, "DateTime('UTC')"},
	})
	tab.now = func() time.Time { return time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC) }
	row := func(over string) []byte {
		base := map[string]string{
			"id": `"x1"`, "n": `-7`, "n_text": `null`, "l": `9007199254740993`, "small": `200`, "b": `true`,
			"ts": `1767225600123`, "us": `1767225600123456`, "day": `20454`, "d": `"12.34"`, "d_wide": `"-0.50"`,
			"d_narrow": `"1.2300"`, "d_small": `"99.99"`, "e": `"B"`, "e_text": `"C"`, "opt": `"o"`, "opt_n": `5`, "skipped": `"s"`,
		}
		k, v, _ := strings.Cut(over, "=")
		if over != "" {
			if v == "<absent>" {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		var parts []string
		for _, name := range []string{"id", "n", "n_text", "l", "small", "b", "ts", "us", "day", "d", "d_wide", "d_narrow", "d_small", "e", "e_text", "opt", "opt_n", "skipped"} {
			if x, ok := base[name]; ok {
				parts = append(parts, fmt.Sprintf("%q:%s", name, x))
			}
		}
		return []byte("{" + strings.Join(parts, ",") + "}")
	}
	var values [][]byte
	for _, over := range []string{"", "small=255", "small=256", "small=-1", "b=false", "n=2147483648", "l=-9223372036854775808",
		"ts=-1", "ts=4294967296000", "us=0", "day=-1", "day=65535", "d=\"9999999.99\"", "d=\"10000000.00\"", "d=12.3",
		"d_narrow=\"1.2345\"", "d_small=\"100.00\"", "d_small=\"-99.99\"", "d_small=\"-100\"", "d_narrow=\"-0.0001\"", "d_wide=\"99999999999999.9999\"", "e=\"C\"", "e=\"D\"", "e_text=\"A\"",
		"opt=null", "opt=<absent>", "opt_n=null", "opt_n=-1", "skipped=1", "id=\"\"", "id=\"é\"", "b=1", "n_text=8", "n_text=300"} {
		values = append(values, row(over))
	}
	rowDec, err := decode.NewFromSchema(decode.FormatJSON, schema)
	if err != nil {
		t.Fatal(err)
	}
	colDec, ok := decode.NewColumnJSON(schema, tab.Column, nil)
	if !ok {
		t.Fatal("NewColumnJSON refused the schema")
	}
	mk := func() *record.Batch {
		b := &record.Batch{Pipeline: "mixed", Topic: "mixed", Partition: 0, First: 0, Last: int64(len(values) - 1)}
		for i, v := range values {
			b.Items = append(b.Items, record.Item{Rec: &kgo.Record{Topic: "mixed", Offset: int64(i), Value: v}})
		}
		return b
	}
	retry := func(_ string, fn func() error) bool { return fn() == nil }
	rowB, colB := mk(), mk()
	rowBufs, colBufs := tab.NewBuffers(), tab.NewBuffers()
	stage.Run(context.Background(), rowB, rowDec, nil, retry)
	colB.Block = tab.Block(colBufs, nil)
	stage.Run(context.Background(), colB, colDec, nil, retry)
	nRow, nCol := tab.Prepare(rowBufs, rowB), tab.Prepare(colBufs, colB)
	if nRow != nCol || nRow < 10 {
		t.Fatalf("prepared %d rows on the row path, %d on the columnar path; first failure %s", nRow, nCol, firstFailure(rowB))
	}
	for i := range values {
		if rf, cf := fmt.Sprint(rowB.Items[i].Failed), fmt.Sprint(colB.Items[i].Failed); rf != cf {
			t.Errorf("value %d %s: row path failed %v, columnar %v", i, values[i], rf, cf)
		}
	}
	for j, c := range tab.cols {
		if want, got := rowBufs.cols[j].slice(), colBufs.send[j]; !reflect.DeepEqual(want, got) {
			t.Errorf("column %s differs:\nrow path %v\ncolumnar %v", c.Name, want, got)
		}
	}
}

// tableOf is a table of the given columns (name, ClickHouse type), as
// NewTable would read them from system.columns.
func tableOf(tb testing.TB, name string, cols [][2]string) *Table {
	tb.Helper()
	tab := &Table{name: name}
	for _, c := range cols {
		ct, err := parseType(c[1])
		if err != nil {
			tb.Fatal(err)
		}
		tab.cols = append(tab.cols, Column{Name: c[0], Type: c[1], Nullable: ct.nullable})
		tab.types = append(tab.types, ct)
	}
	tab.setInsert()
	return tab
}

// ordersWithItems is the orders table (from its DDL, its clock fixed) bound
// as a pipeline of schema with order_items binds it, and that transform.
func ordersWithItems(tb testing.TB, schema *decode.Schema) (*Table, []stage.Transform) {
	tab := ordersTableFromDDL(tb)
	tab.now = func() time.Time { return time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC) }
	filled := map[string]bool{"item_count": true}
	for _, fl := range schema.Fields {
		filled[fl.Name] = true
	}
	if err := tab.Bind(func(c string) bool { return filled[c] }); err != nil {
		tb.Fatal(err)
	}
	ts, err := transform.Build([]string{"order_items"}, transform.Env{Pipeline: "orders", Schema: schema})
	if err != nil {
		tb.Fatal(err)
	}
	return tab, []stage.Transform{ts[0]}
}
