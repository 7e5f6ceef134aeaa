package sink

import (
	"io/fs"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
	"github.com/sluice-etl/sluice/pkg/transform"
	"github.com/sluice-etl/sluice/schemas"
)

// benchBatchRows is the default max_rows: one batch of the benchmarks.
const benchBatchRows = 50_000

// BenchmarkPrepareOrders measures Prepare alone (decoded and transformed
// rows -> column buffers) for a 50,000-row batch of realistic orders with
// every transform of the reference pipeline. No ClickHouse needed: the
// table's columns come from the embedded DDL, as system.columns lists them.
func BenchmarkPrepareOrders(b *testing.B) {
	t := ordersTableFromDDL(b)
	batch := benchOrdersBatch(b, benchBatchRows, []string{"order_items", "currency", "customer", "fraud"})
	filled := map[string]bool{}
	for _, it := range batch.Items[:100] {
		for k := range it.Row {
			filled[k] = true
		}
	}
	if err := t.Bind(func(c string) bool { return filled[c] }); err != nil {
		b.Fatal(err)
	}
	bufs := t.NewBuffers()
	if n := t.Prepare(bufs, batch); n != len(batch.Items) {
		b.Fatalf("prepared %d of %d rows: %v", n, len(batch.Items), firstFailure(batch))
	}
	checkNullable(b, t, bufs, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t.Prepare(bufs, batch)
	}
	checkNullable(b, t, bufs, batch) // and after the buffers were reused
	perRow := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(batch.Items))
	b.ReportMetric(perRow, "ns/row")
	b.ReportMetric(1e9/perRow, "rows/s")
}

// checkNullable compares the nullable columns' buffers with the rows, so a
// buffer that reuses its memory cannot go unnoticed.
func checkNullable(b *testing.B, t *Table, bufs *Buffers, batch *record.Batch) {
	b.Helper()
	for j, c := range t.cols {
		if !c.Nullable {
			continue
		}
		var got []any
		switch vals := bufs.cols[j].slice().(type) {
		case []*string:
			for _, v := range vals {
				if v == nil {
					got = append(got, nil)
				} else {
					got = append(got, *v)
				}
			}
		case []*decimal.Decimal:
			for _, v := range vals {
				if v == nil {
					got = append(got, nil)
				} else {
					got = append(got, v.String())
				}
			}
		default:
			b.Fatalf("column %s: unexpected buffer %T", c.Name, vals)
		}
		for i, it := range batch.Items {
			want := it.Row[c.Name]
			if d, ok := want.(decimal.Decimal); ok {
				want = d.String()
			}
			if got[i] != want {
				b.Fatalf("column %s row %d: buffer holds %v, row has %v", c.Name, i, got[i], want)
			}
		}
	}
}

func firstFailure(b *record.Batch) string {
	for _, it := range b.Items {
		if it.Failed != nil {
			return string(it.Failed.Stage) + ": " + it.Failed.Reason
		}
	}
	return "none failed"
}

// ordersTableFromDDL builds the orders Table from schemas/clickhouse's
// CREATE TABLE, one column per line, without a server.
func ordersTableFromDDL(b testing.TB) *Table {
	b.Helper()
	ddl, err := fs.ReadFile(schemas.ClickHouse, "clickhouse/001_orders.sql")
	if err != nil {
		b.Fatal(err)
	}
	col := regexp.MustCompile(`^\s+(\w+)\s+(.+?)(\s+DEFAULT\s+.*)?,?$`)
	t := &Table{db: "bench", name: "orders", timeout: time.Minute, now: time.Now}
	in := false
	for _, line := range strings.Split(string(ddl), "\n") {
		switch {
		case strings.HasPrefix(line, "CREATE TABLE"):
			in = true
			continue
		case strings.HasPrefix(line, ")"):
			in = false
		}
		m := col.FindStringSubmatch(line)
		if !in || m == nil {
			continue
		}
		typ := strings.TrimSuffix(strings.TrimSpace(m[2]), ",")
		ct, err := parseType(typ)
		if err != nil {
			b.Fatalf("column %s: %v", m[1], err)
		}
		t.cols = append(t.cols, Column{Name: m[1], Type: typ, Nullable: ct.nullable, Default: m[3] != ""})
		t.types = append(t.types, ct)
	}
	if len(t.cols) != 22 {
		b.Fatalf("read %d columns from 001_orders.sql, want 22", len(t.cols))
	}
	t.setInsert()
	return t
}

// benchOrdersBatch makes a batch of n realistic orders: sluice-gen's data
// set, Avro-encoded, decoded by the pipeline's decoder and run through the
// named transforms (customers and FX rates from the same generator).
func benchOrdersBatch(b *testing.B, n int, transforms []string) *record.Batch {
	b.Helper()
	_, file, _, _ := runtime.Caller(0)
	avsc := filepath.Join(filepath.Dir(file), "..", "..", "schemas", "avro")
	g, err := gen.New(gen.Options{Seed: 1, SchemaDir: avsc})
	if err != nil {
		b.Fatal(err)
	}
	schema, err := decode.LoadSchema(filepath.Join(avsc, "order.avsc"))
	if err != nil {
		b.Fatal(err)
	}
	dec, err := decode.NewFromSchema(decode.FormatAvro, schema)
	if err != nil {
		b.Fatal(err)
	}
	store := refdata.NewStore(g.Options().BaseCurrency)
	for _, c := range g.Customers() {
		store.PutCustomer(c.CustomerID, refdata.Customer{Name: c.Name, Country: c.Country, Segment: string(c.Segment)})
	}
	for _, r := range g.FxRates() {
		store.PutRate(r.Currency, r.EffectiveFrom.UnixMilli(), r.Rate)
	}
	ts, err := transform.Build(transforms, transform.Env{
		Pipeline: "orders", Schema: schema, Store: store,
		Fraud: config.Fraud{
			HighAmount: "5000.00", HighAmountWeight: 40, CountryMismatchWeight: 20, UnknownCustomerWeight: 15,
			VelocityMaxOrders: 5, VelocityWindow: 10 * time.Minute, VelocityWeight: 25, VelocityMaxCustomers: 100_000,
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	batch := &record.Batch{Pipeline: "orders", Topic: "orders", Partition: 3, First: 1_000_000, Last: int64(1_000_000 + n - 1)}
	batch.Items = make([]record.Item, n)
	for i := range n {
		key, value, err := g.Codecs().EncodeOrder(g.Order(i))
		if err != nil {
			b.Fatal(err)
		}
		row, err := dec.Decode(value)
		if err != nil {
			b.Fatal(err)
		}
		batch.Items[i] = record.Item{
			Rec: &kgo.Record{Topic: "orders", Partition: 3, Offset: int64(1_000_000 + i), Key: key, Value: value},
			Row: row,
		}
		batch.Bytes += len(key) + len(value)
	}
	for _, tr := range ts {
		if err := tr.Apply(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if bad := firstFailure(batch); bad != "none failed" {
		b.Fatalf("transforms failed a row: %s", bad)
	}
	return batch
}
