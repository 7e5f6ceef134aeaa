package sink

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/registry"
	"github.com/sluice-etl/sluice/pkg/stage"
)

// TestAvroBlockPathMatchesRowPath is TestBlockPathMatchesRowPath for Avro:
// the same records through the row path (the Avro row decoder, order_items
// on rows, Prepare converting the rows) and the columnar path
// (decode.ColumnAvro into a Block, order_items on the side list, Prepare
// picking rows) must send the same columns, cell by cell, and fail the
// same items at the same stage with the same reason and class. Plain Avro
// and avro-confluent, whose records come in the reader's schema, in
// writer schemas that resolve field by field (dropped, defaulted, promoted
// and enum fields) and in one that resolves inside the line items; bad
// records of every kind the decoder reports.
func TestAvroBlockPathMatchesRowPath(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 500
	}
	for _, format := range []string{decode.FormatAvro, decode.FormatAvroConfluent} {
		t.Run(format, func(t *testing.T) {
			f := newAvroOrders(t, format, n)
			f.values = append(f.values, f.badValues(t)...)
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
			if nRow < n {
				t.Fatalf("only %d rows prepared of %d good orders: %s", nRow, n, firstFailure(rowB))
			}
			failed := 0
			for i := range f.values {
				rf, cf := rowB.Items[i].Failed, colB.Items[i].Failed
				if rf != nil {
					failed++
				}
				if fmt.Sprint(rf) != fmt.Sprint(cf) {
					t.Errorf("value %d (%s): row path failed %v, columnar %v", i, f.what(i), rf, cf)
				}
			}
			if want := len(f.values) - n - f.goodBad; failed != want {
				t.Errorf("%d records failed, want the %d bad ones", failed, want)
			}
			for j, c := range f.tab.cols {
				want, got := rowBufs.cols[j].slice(), colBufs.send[j]
				if !reflect.DeepEqual(want, got) {
					t.Errorf("column %s differs:\nrow path %.300v\ncolumnar %.300v", c.Name, want, got)
				}
			}
		})
	}
}

// BenchmarkAvroOrders is BenchmarkJSONOrders for Avro: decode,
// order_items and Prepare of a 50,000-row batch of generated orders, per
// row, on both paths; goavro measures goavro's NativeFromBinary alone on
// the same records (what either path cannot avoid).
func BenchmarkAvroOrders(b *testing.B) {
	for _, format := range []string{decode.FormatAvro, decode.FormatAvroConfluent} {
		f := newAvroOrders(b, format, benchBatchRows)
		// columns/native is the columnar path into the native writer's
		// buffers, as `sluice run` loads the orders table (the same DDL, so
		// the decoder's column numbers hold).
		native, _ := ordersWithItems(b, f.schema)
		if err := native.UseNative(new(NativeWriter)); err != nil { // never connects here
			b.Fatal(err)
		}
		for _, name := range []string{"goavro", "rows", "columns", "columns/native"} {
			b.Run(format+"/"+name, func(b *testing.B) {
				tab := f.tab
				if name == "columns/native" {
					tab = native
				}
				bufs := tab.NewBuffers()
				var allocs uint64
				b.ReportAllocs()
				for b.Loop() {
					if name == "goavro" {
						var before, after runtime.MemStats
						runtime.ReadMemStats(&before)
						for _, v := range f.values {
							if format == decode.FormatAvroConfluent {
								v = v[5:]
							}
							if _, _, err := f.codec.NativeFromBinary(v); err != nil {
								b.Fatal(err)
							}
						}
						runtime.ReadMemStats(&after)
						allocs += after.Mallocs - before.Mallocs
						continue
					}
					batch := f.batch()
					dec := f.rowDec
					if name != "rows" {
						batch.Block, dec = tab.Block(bufs, f.needs), f.colDec
					}
					if !stage.Run(context.Background(), batch, dec, f.stages, f.retry) {
						b.Fatal("gave up")
					}
					if n := tab.Prepare(bufs, batch); n != len(batch.Items) {
						b.Fatalf("prepared %d of %d: %s", n, len(batch.Items), firstFailure(batch))
					}
				}
				rows := float64(b.N) * float64(len(f.values))
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
				if name == "goavro" {
					b.ReportMetric(float64(allocs)/rows, "allocs/row")
				}
			})
		}
	}
}

// TestAvroColumnsAllocateWhatGoavroDoes is issue 8's target for Avro: per
// record, the columnar path allocates what goavro itself does plus at most
// one, the batch's own overheads (the benchmark's record, the Decimal
// column's big.Int) apart.
func TestAvroColumnsAllocateWhatGoavroDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations over 2,000 records")
	}
	for _, format := range []string{decode.FormatAvro, decode.FormatAvroConfluent} {
		f := newAvroOrders(t, format, 2000)
		bufs := f.tab.NewBuffers()
		goavroAllocs := testing.AllocsPerRun(5, func() {
			for _, v := range f.values {
				if format == decode.FormatAvroConfluent {
					v = v[5:]
				}
				_, _, _ = f.codec.NativeFromBinary(v)
			}
		})
		batch := f.batch()
		colAllocs := testing.AllocsPerRun(5, func() {
			batch.Block = f.tab.Block(bufs, f.needs)
			for i := range batch.Items {
				if derr, lerr := f.colDec.DecodeInto(batch.Items[i].Rec.Value, batch.Block); derr != nil || lerr != nil {
					t.Fatal(derr, lerr)
				}
			}
		})
		perRow := (colAllocs - goavroAllocs) / float64(len(f.values))
		t.Logf("%s: goavro %.2f allocs/record, DecodeInto %.2f", format, goavroAllocs/float64(len(f.values)), colAllocs/float64(len(f.values)))
		if perRow > 1+decimalColumnAllocs {
			t.Errorf("%s: DecodeInto allocates %.2f per record beyond goavro's, want at most 1 (and the Decimal column's %d)", format, perRow, decimalColumnAllocs)
		}
	}
}

// decimalColumnAllocs is what the orders table's Decimal column allocates
// per row put, on either path: decimal.New's big.Int and its words
// (clickhouse-go's buffers; the native ones hold a scaled int64).
const decimalColumnAllocs = 2

// avroOrders is the fixture of the Avro tests: generated orders in one
// format, the orders table bound as the pipeline binds it, both paths'
// decoders and order_items.
type avroOrders struct {
	format string
	values [][]byte
	labels map[int]string // what the bad values are, by index
	// goodBad counts the values past the generated orders that must load.
	goodBad int
	tab     *Table
	schema  *decode.Schema
	rowDec  stage.Decoder
	colDec  *decode.ColumnAvro
	stages  []stage.Transform
	needs   []string
	codec   *goavro.Codec // goavro on the stripped schema, for the benchmark
	gen     *gen.Generator
	// writers are the raw (logical types stripped) codecs of the writer
	// schemas, by schema id; raw is the reader's.
	writers map[int32]*goavro.Codec
	raw     *goavro.Codec
}

// Schema ids of the avro-confluent fixture's registry.
const (
	idReader   = 1  // order.avsc itself
	idResolved = 2  // fields dropped, defaulted, promoted; an enum symbol the reader lacks
	idNested   = 3  // line items with a field the reader lacks: resolved inside the array
	idBroken   = 4  // cannot be read as the reader
	idUnknown  = 99 // not in the registry
)

func newAvroOrders(tb testing.TB, format string, n int) *avroOrders {
	_, file, _, _ := runtime.Caller(0)
	avsc := filepath.Join(filepath.Dir(file), "..", "..", "schemas", "avro")
	schema, err := decode.LoadSchema(filepath.Join(avsc, "order.avsc"))
	if err != nil {
		tb.Fatal(err)
	}
	f := &avroOrders{format: format, schema: schema, labels: map[int]string{}, writers: map[int32]*goavro.Codec{}}
	if f.gen, err = gen.New(gen.Options{Seed: 5, SchemaDir: avsc}); err != nil {
		tb.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(avsc, "order.avsc"))
	if err != nil {
		tb.Fatal(err)
	}
	reg := fetcher{
		idReader:   string(text),
		idResolved: orderWriter(tb, string(text), resolvedEdit),
		idNested:   orderWriter(tb, string(text), nestedEdit),
		idBroken:   orderWriter(tb, string(text), func(m map[string]any) { field(m, "total")["type"] = "string" }),
	}
	f.raw = rawCodec(tb, string(text))
	for id, s := range reg {
		f.writers[id] = rawCodec(tb, s)
	}
	f.codec = f.raw
	for i := range n {
		o := f.gen.Order(i)
		_, v, err := f.gen.Codecs().EncodeOrder(o)
		if err != nil {
			tb.Fatal(err)
		}
		if format == decode.FormatAvroConfluent {
			v = append(frame(idReader), v...)
		}
		f.values = append(f.values, v)
	}
	f.tab, f.stages = ordersWithItems(tb, schema)
	if f.rowDec, err = decode.NewFromSchemaWith(format, schema, reg); err != nil {
		tb.Fatal(err)
	}
	var ok bool
	if f.colDec, ok, err = decode.NewColumnAvro(format, schema, reg, f.tab.Column, []string{"items.quantity"}); err != nil || !ok {
		tb.Fatalf("NewColumnAvro refused the orders schema: %v", err)
	}
	if f.needs, ok = stage.Columnar(f.colDec, f.stages); !ok {
		tb.Fatal("a ColumnAvro with order_items is not columnar")
	}
	return f
}

// resolvedEdit makes a writer schema whose records resolve field by field:
// note is dropped, coupon takes its default (null), status has a symbol
// the reader lacks (no default: it fails the records that use it),
// channel's symbols come in another order, shipping_country is nullable
// (a null fails the record: the reader's is not).
func resolvedEdit(m map[string]any) {
	var fs []any
	for _, x := range m["fields"].([]any) {
		fm := x.(map[string]any)
		switch fm["name"] {
		case "coupon":
			continue
		case "status":
			fm["type"] = map[string]any{"type": "enum", "name": "OrderStatus", "symbols": []any{"CREATED", "CONFIRMED", "CANCELLED", "RETURNED"}}
		case "channel":
			fm["type"] = map[string]any{"type": "enum", "name": "Channel", "symbols": []any{"STORE", "WEB", "MOBILE"}}
		case "shipping_country":
			fm["type"] = []any{"null", "string"}
		}
		fs = append(fs, fm)
	}
	fs = append(fs, map[string]any{"name": "note", "type": "string"})
	m["fields"] = fs
}

// nestedEdit gives the line items a field the reader lacks.
func nestedEdit(m map[string]any) {
	items := field(m, "items")["type"].(map[string]any)["items"].(map[string]any)
	items["fields"] = append(items["fields"].([]any), map[string]any{"name": "gift", "type": "boolean"})
}

func field(m map[string]any, name string) map[string]any {
	for _, x := range m["fields"].([]any) {
		if fm := x.(map[string]any); fm["name"] == name {
			return fm
		}
	}
	panic("no field " + name)
}

func orderWriter(tb testing.TB, reader string, edit func(map[string]any)) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(reader), &m); err != nil {
		tb.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// rawCodec is goavro on the schema with its logical types removed, to
// write decimals as any bytes and timestamps as any long.
func rawCodec(tb testing.TB, schema string) *goavro.Codec {
	c, err := goavro.NewCodec(strings.ReplaceAll(schema, `"logicalType"`, `"noLogicalType"`))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// rawOrder is an order as rawCodec writes it, after edit.
func (f *avroOrders) rawOrder(i int, edit func(m map[string]any)) map[string]any {
	o := f.gen.Order(i)
	var items []any
	for _, it := range o.Items {
		items = append(items, map[string]any{"sku": it.SKU, "quantity": it.Quantity, "unit_price": unscaledBytes(it.UnitPrice.Shift(2).IntPart())})
	}
	m := map[string]any{
		"order_id": o.OrderID, "customer_id": o.CustomerID, "created_at": o.CreatedAt.UnixMilli(),
		"currency": o.Currency, "total": unscaledBytes(o.Total.Shift(2).IntPart()), "status": string(o.Status),
		"channel": string(o.Channel), "shipping_country": o.ShippingCountry, "items": items, "coupon": nil,
	}
	if o.Coupon != nil {
		m["coupon"] = goavro.Union("string", *o.Coupon)
	}
	if edit != nil {
		edit(m)
	}
	return m
}

// unscaledBytes is v as big-endian two's complement in the fewest bytes.
func unscaledBytes(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	i := 0
	for i < 7 && (b[i] == 0 && b[i+1]&0x80 == 0 || b[i] == 0xff && b[i+1]&0x80 != 0) {
		i++
	}
	return b[i:]
}

// badValues are the records past the generated orders: bad ones of every
// kind, and unusual ones that must load (counted in goodBad).
func (f *avroOrders) badValues(tb testing.TB) [][]byte {
	var out [][]byte
	add := func(what string, good bool, v []byte) {
		f.labels[len(f.values)+len(out)] = what
		if good {
			f.goodBad++
		}
		out = append(out, v)
	}
	body := func(id int32, edit func(m map[string]any)) []byte {
		c := f.raw
		if f.format == decode.FormatAvroConfluent {
			c = f.writers[id]
		}
		b, err := c.BinaryFromNative(nil, f.rawOrder(7, edit))
		if err != nil {
			tb.Fatal(err)
		}
		if f.format == decode.FormatAvroConfluent {
			b = append(frame(id), b...)
		}
		return b
	}
	good := body(idReader, nil)
	hdr := 0
	if f.format == decode.FormatAvroConfluent {
		hdr = 5
	}
	add("empty", false, []byte{})
	add("tombstone", false, nil)
	add("truncated", false, good[:len(good)-3])
	add("one byte of body", false, good[:hdr+1])
	add("trailing bytes", false, append(append([]byte(nil), good...), 0))
	add("string not UTF-8", false, body(idReader, func(m map[string]any) { m["currency"] = "\xff\xfe" }))
	add("total beyond its precision", false, body(idReader, func(m map[string]any) { m["total"] = unscaledBytes(1e18) }))
	add("total in 9 bytes", true, body(idReader, func(m map[string]any) { m["total"] = append([]byte{0}, unscaledBytes(12345)...) }))
	add("total negative", true, body(idReader, func(m map[string]any) { m["total"] = unscaledBytes(-1) }))
	add("total wide, beyond", false, body(idReader, func(m map[string]any) { m["total"] = []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0} }))
	add("unit_price beyond its precision", false, body(idReader, func(m map[string]any) {
		m["items"].([]any)[0].(map[string]any)["unit_price"] = unscaledBytes(-1e18)
	}))
	add("quantity not positive", false, body(idReader, func(m map[string]any) { m["items"].([]any)[0].(map[string]any)["quantity"] = int32(0) }))
	add("no items", true, body(idReader, func(m map[string]any) { m["items"] = []any{} }))
	add("created_at before DateTime", false, body(idReader, func(m map[string]any) { m["created_at"] = int64(-1000) }))
	add("created_at past DateTime", false, body(idReader, func(m map[string]any) { m["created_at"] = int64(1 << 42) }))
	add("no coupon", true, body(idReader, func(m map[string]any) { m["coupon"] = nil }))
	if f.format == decode.FormatAvro {
		return out
	}
	add("wrong magic byte", false, append([]byte{1}, good[1:]...))
	add("shorter than the header", false, good[:3])
	add("unknown schema id", false, append(frame(idUnknown), good[5:]...))
	add("incompatible writer schema", false, body(idBroken, func(m map[string]any) { m["total"] = "12.34" }))
	resolved := func(edit func(m map[string]any)) func(m map[string]any) {
		return func(m map[string]any) {
			delete(m, "coupon")
			m["note"] = "n"
			m["shipping_country"] = goavro.Union("string", m["shipping_country"])
			if edit != nil {
				edit(m)
			}
		}
	}
	for i := range 200 { // resolved field by field, every kind of order
		b, err := f.writers[idResolved].BinaryFromNative(nil, f.rawOrder(i, resolved(nil)))
		if err != nil {
			tb.Fatal(err)
		}
		add(fmt.Sprintf("resolved order %d", i), true, append(frame(idResolved), b...))
	}
	add("resolved, a symbol the reader lacks", false, body(idResolved, resolved(func(m map[string]any) { m["status"] = "RETURNED" })))
	add("resolved, a null the reader refuses", false, body(idResolved, resolved(func(m map[string]any) { m["shipping_country"] = nil })))
	add("resolved, total beyond its precision", false, body(idResolved, resolved(func(m map[string]any) { m["total"] = unscaledBytes(-1e18) })))
	gift := func(ok bool, edit func(m map[string]any)) func(m map[string]any) {
		return func(m map[string]any) {
			for _, it := range m["items"].([]any) {
				it.(map[string]any)["gift"] = ok
			}
			if edit != nil {
				edit(m)
			}
		}
	}
	for i := range 50 {
		b, err := f.writers[idNested].BinaryFromNative(nil, f.rawOrder(i, gift(i%2 == 0, nil)))
		if err != nil {
			tb.Fatal(err)
		}
		add(fmt.Sprintf("nested resolution, order %d", i), true, append(frame(idNested), b...))
	}
	add("nested resolution, quantity not positive", false, body(idNested, gift(true, func(m map[string]any) {
		m["items"].([]any)[0].(map[string]any)["quantity"] = int32(-2)
	})))
	return out
}

func (f *avroOrders) what(i int) string {
	if l, ok := f.labels[i]; ok {
		return l
	}
	return fmt.Sprintf("generated order %d", i)
}

func (f *avroOrders) retry(_ string, fn func() error) bool { return fn() == nil }

func (f *avroOrders) batch() *record.Batch {
	b := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 1, TopicID: "tid", First: 100, Last: int64(100 + len(f.values) - 1)}
	b.Items = make([]record.Item, len(f.values))
	for i, v := range f.values {
		b.Items[i] = record.Item{Rec: &kgo.Record{Topic: "orders", Partition: 1, Offset: int64(100 + i), Value: v}}
	}
	return b
}

func frame(id int32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
}

// fetcher is a schema registry in memory.
type fetcher map[int32]string

func (r fetcher) SchemaByID(_ context.Context, id int32) (string, error) {
	if s, ok := r[id]; ok {
		return s, nil
	}
	return "", fmt.Errorf("schema %d: %w", id, registry.ErrUnknownSchema)
}
