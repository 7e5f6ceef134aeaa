//go:build integration

package sink

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/record"
)

// BenchmarkSinkInsertNull loads 50,000-row batches of realistic orders (all
// four transforms applied, so every column of the orders table is filled)
// through Prepare and Send. The target is the orders table's columns with
// ENGINE = Null, so the figures are Sluice's and clickhouse-go's cost plus
// the server's parsing of the native block, without storage. The
// "send-mergetree" case sends into the real orders table (MergeTree) for
// comparison. The native-* cases send the same batch through Sluice's own
// native-protocol writer (clickhouse.insert_protocol: native) into the
// same Null table and into a MergeTree copy of orders; native-lz4-send
// compresses the block with LZ4.
//
// Metrics: ns/row and rows/s are wall time; µs-cpu/row is this process's
// user+sys CPU (getrusage), i.e. the client side only; allocs/row is
// this process's heap allocations per row (runtime.MemStats).
func BenchmarkSinkInsertNull(b *testing.B) {
	ctx := context.Background()
	conn, db := benchutil.ScratchDatabase(b, "bench_sink")
	if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE `%s`.orders_null AS `%s`.orders ENGINE = Null", db, db)); err != nil {
		b.Fatal(err)
	}
	batch := benchOrdersBatch(b, benchBatchRows, []string{"order_items", "currency", "customer", "fraud"})
	table := func(name string, nw ...*NativeWriter) (*Table, *Buffers) {
		t, err := NewTable(ctx, conn, db, name, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		filled := map[string]bool{}
		for k := range batch.Items[0].Row {
			filled[k] = true
		}
		for _, c := range []string{"total_base", "fx_rate", "customer_name", "customer_country", "customer_segment", "coupon"} {
			filled[c] = true
		}
		if err := t.Bind(func(c string) bool { return filled[c] }); err != nil {
			b.Fatal(err)
		}
		if len(t.Columns()) != 22 {
			b.Fatalf("%s: %d insertable columns, want 22", name, len(t.Columns()))
		}
		if len(nw) > 0 {
			if err := t.UseNative(nw[0]); err != nil {
				b.Fatal(err)
			}
		}
		bufs := t.NewBuffers()
		if n := t.Prepare(bufs, batch); n != len(batch.Items) {
			b.Fatalf("prepared %d of %d rows: %s", n, len(batch.Items), firstFailure(batch))
		}
		return t, bufs
	}
	rows := len(batch.Items)

	b.Run("prepare+send", func(b *testing.B) {
		t, bufs := table("orders_null")
		measure(b, rows, func() {
			t.Prepare(bufs, batch)
			if err := t.Send(ctx, bufs, batch); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("send", func(b *testing.B) {
		t, bufs := table("orders_null")
		measure(b, rows, func() {
			if err := t.Send(ctx, bufs, batch); err != nil {
				b.Fatal(err)
			}
		})
	})
	for _, tc := range []struct {
		name string
		nw   *NativeWriter
	}{{"send-mergetree", nil}, {"native-send-mergetree", nativeWriter(b)}} {
		b.Run(tc.name, func(b *testing.B) {
			var t *Table
			var bufs *Buffers
			if tc.nw != nil {
				if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE `%s`.orders_native AS `%s`.orders", db, db)); err != nil {
					b.Fatal(err)
				}
				t, bufs = table("orders_native", tc.nw)
			} else {
				t, bufs = table("orders")
			}
			measure(b, rows, func() {
				if err := t.Send(ctx, bufs, batch); err != nil {
					b.Fatal(err)
				}
			})
			checkStored(b, conn, db, t.Name(), batch)
			if tc.nw != nil {
				_ = conn.Exec(ctx, fmt.Sprintf("DROP TABLE `%s`.orders_native", db))
			}
		})
	}
	b.Run("native-prepare+send", func(b *testing.B) {
		t, bufs := table("orders_null", nativeWriter(b))
		measure(b, rows, func() {
			t.Prepare(bufs, batch)
			if err := t.Send(ctx, bufs, batch); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("native-send", func(b *testing.B) {
		t, bufs := table("orders_null", nativeWriter(b))
		measure(b, rows, func() {
			if err := t.Send(ctx, bufs, batch); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("native-lz4-send", func(b *testing.B) {
		nw := nativeWriter(b)
		nw.opt.Compress = true
		t, bufs := table("orders_null", nw)
		measure(b, rows, func() {
			if err := t.Send(ctx, bufs, batch); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// nativeWriter is the native writer for the benchmark's server.
func nativeWriter(b *testing.B) *NativeWriter {
	b.Helper()
	nw, err := NewNativeWriter(config.ClickHouse{Addr: []string{itest.ClickHouseAddr()}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nw.Close)
	return nw
}

// checkStored compares what a MergeTree table holds with the batch's rows
// (nullable columns included), after whole batches were sent to it.
func checkStored(b *testing.B, conn driver.Conn, db, table string, batch *record.Batch) {
	b.Helper()
	ctx := context.Background()
	rows := len(batch.Items)
	var n, names uint64
	var sum string
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(), count(customer_name), toString(sum(total_base)) FROM `%s`.`%s`", db, table)).Scan(&n, &names, &sum); err != nil {
		b.Fatal(err)
	}
	if n%uint64(rows) != 0 || n == 0 {
		b.Fatalf("%s holds %d rows, want a multiple of %d", table, n, rows)
	}
	k := n / uint64(rows)
	wantNames, wantSum := uint64(0), decimal.Zero
	for _, it := range batch.Items {
		if it.Row["customer_name"] != nil {
			wantNames++
		}
		if d, ok := it.Row["total_base"].(decimal.Decimal); ok {
			wantSum = wantSum.Add(d)
		}
	}
	wantSum = wantSum.Mul(decimal.NewFromInt(int64(k)))
	if got, err := decimal.NewFromString(sum); err != nil || !got.Equal(wantSum) || names != k*wantNames {
		b.Fatalf("stored sum(total_base) %s, count(customer_name) %d; want %s, %d", sum, names, wantSum, k*wantNames)
	}
}

// measure runs op b.N times (one batch of rows each) and reports wall and
// CPU cost per row.
func measure(b *testing.B, rows int, op func()) {
	b.Helper()
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0 := benchutil.SelfCPU()
	b.ResetTimer()
	for b.Loop() {
		op()
	}
	b.StopTimer()
	cpu := benchutil.SelfCPU() - cpu0
	runtime.ReadMemStats(&m1)
	total := float64(b.N) * float64(rows)
	perRow := float64(b.Elapsed().Nanoseconds()) / total
	b.ReportMetric(perRow, "ns/row")
	b.ReportMetric(1e9/perRow, "rows/s")
	b.ReportMetric(float64(cpu.Microseconds())/total, "µs-cpu/row")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/total, "allocs/row")
}
