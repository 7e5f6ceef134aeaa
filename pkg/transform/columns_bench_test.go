package transform

import (
	"context"
	"io/fs"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/tablefake"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
	"github.com/sluice-etl/sluice/pkg/sink"
	"github.com/sluice-etl/sluice/pkg/stage"
	"github.com/sluice-etl/sluice/schemas"
)

// BenchmarkEnrichOrders measures currency, customer and fraud on a
// 20,000-order batch of sluice-gen's JSON orders (the default batch), on
// Rows (Apply) and on the batch's Block (ApplyBlock) with each kind of
// column buffers; decoding and order_items run outside the timer, and a
// collection after them, so ns/row and allocs/row are the three
// transforms' own (with the collections their own garbage causes).
func BenchmarkEnrichOrders(b *testing.B) {
	const n = 20_000
	_, file, _, _ := runtime.Caller(0)
	avsc := filepath.Join(filepath.Dir(file), "..", "..", "schemas", "avro")
	g, err := gen.New(gen.Options{Seed: 3, SchemaDir: avsc})
	if err != nil {
		b.Fatal(err)
	}
	schema := loadSchema(b, "order")
	store := refdata.NewStore(g.Options().BaseCurrency)
	for _, c := range g.Customers() {
		store.PutCustomer(c.CustomerID, refdata.Customer{Name: c.Name, Country: c.Country, Segment: string(c.Segment)})
	}
	for _, r := range g.FxRates() {
		store.PutRate(r.Currency, r.EffectiveFrom.UnixMilli(), r.Rate)
	}
	values := make([][]byte, n)
	for i := range values {
		if _, values[i], err = gen.EncodeOrderJSON(g.Order(i)); err != nil {
			b.Fatal(err)
		}
	}
	batch := func() *record.Batch {
		bt := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 3, First: 1000, Last: int64(1000 + n - 1)}
		bt.Items = make([]record.Item, n)
		for i, v := range values {
			bt.Items[i] = record.Item{Rec: &kgo.Record{Topic: "orders", Partition: 3, Offset: int64(1000 + i), Value: v}}
		}
		return bt
	}
	retry := func(_ string, fn func() error) bool { return fn() == nil }
	for _, path := range []string{"rows", "columns/driver", "columns/native"} {
		b.Run(path, func(b *testing.B) {
			ts := build(b, []string{"order_items", "currency", "customer", "fraud"},
				Env{Pipeline: "orders", Schema: schema, Store: store, Fraud: defaultFraud()})
			ts[3].(*fraud).vel.maxCustomers = 100_000
			pre, enrich := []stage.Transform{ts[0]}, ts[1:]
			var dec stage.Decoder
			var tab *sink.Table
			var bufs *sink.Buffers
			var needs []string
			if path == "rows" {
				if dec, err = decode.NewFromSchema(decode.FormatJSON, schema); err != nil {
					b.Fatal(err)
				}
			} else {
				tab = ordersTable(b, schema, ts, path == "columns/native")
				bufs = tab.NewBuffers()
				cd, ok := decode.NewColumnJSON(schema, tab.Column, []string{"items.quantity"})
				if !ok {
					b.Fatal("NewColumnJSON refused the orders schema")
				}
				all := append(append([]stage.Transform(nil), pre...), enrich[0], enrich[1], enrich[2])
				if needs, ok = stage.Columnar(cd, all); !ok {
					b.Fatal("the transforms are not columnar")
				}
				dec = cd
			}
			var allocs uint64
			var ms runtime.MemStats
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				bt := batch()
				if bufs != nil {
					bt.Block = tab.Block(bufs, needs)
				}
				if !stage.Run(context.Background(), bt, dec, pre, retry) {
					b.Fatal("decode gave up")
				}
				// The decoder's garbage is collected here, not charged to
				// the transforms.
				runtime.GC()
				runtime.ReadMemStats(&ms)
				before := ms.Mallocs
				b.StartTimer()
				for _, tr := range enrich {
					var err error
					if bt.Block != nil {
						err = tr.(stage.ColumnTransform).ApplyBlock(context.Background(), bt)
					} else {
						err = tr.Apply(context.Background(), bt)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				runtime.ReadMemStats(&ms)
				allocs += ms.Mallocs - before
				if bt.Good() < n*9/10 {
					b.Fatalf("only %d of %d orders transformed", bt.Good(), n)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
			b.ReportMetric(float64(allocs)/float64(b.N*n), "allocs/row")
		})
	}
}

// ordersTable is the orders table of 001_orders.sql, as sink.NewTable
// reads it from system.columns (tablefake answers the query), bound to the
// schema and transforms, with the native writer's buffers when native.
func ordersTable(b testing.TB, schema *decode.Schema, ts []Transform, native bool) *sink.Table {
	b.Helper()
	ddl, err := fs.ReadFile(schemas.ClickHouse, "clickhouse/001_orders.sql")
	if err != nil {
		b.Fatal(err)
	}
	col := regexp.MustCompile(`^\s+(\w+)\s+(.+?)(\s+DEFAULT\s+.*)?,?$`)
	conn := &tablefake.Conn{Engine: "MergeTree"}
	in := false
	for _, line := range strings.Split(string(ddl), "\n") {
		switch {
		case strings.HasPrefix(line, "CREATE TABLE"):
			in = true
			continue
		case strings.HasPrefix(line, ")"):
			in = false
		}
		if m := col.FindStringSubmatch(line); in && m != nil {
			kind := ""
			if m[3] != "" {
				kind = "DEFAULT"
			}
			conn.Cols = append(conn.Cols, [3]string{m[1], strings.TrimSuffix(strings.TrimSpace(m[2]), ","), kind})
		}
	}
	tab, err := sink.NewTable(context.Background(), conn, "bench", "orders", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	filled := map[string]bool{}
	for _, f := range schema.Fields {
		filled[f.Name] = true
	}
	for _, tr := range ts {
		for _, o := range tr.Outputs() {
			filled[o] = true
		}
	}
	if err := tab.Bind(func(c string) bool { return filled[c] }); err != nil {
		b.Fatal(err)
	}
	if native {
		if err := tab.UseNative(new(sink.NativeWriter)); err != nil { // never connects here
			b.Fatal(err)
		}
	}
	return tab
}
