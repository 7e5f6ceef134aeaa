//go:build integration

package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// The 50M-row table: the orders table's key and source columns plus a few
// payload columns, 12 Kafka partitions, one order per second of event time
// (about 19 monthly ClickHouse partitions, like PARTITION BY
// toYYYYMM(created_at) in 001_orders.sql). It is kept between runs in
// database sluice_bench and rebuilt only when it is missing or incomplete.
const (
	bigDB     = "sluice_bench"
	bigTable  = "orders_50m"
	bigLedger = "orders_50m_offsets"
	bigMV     = "orders_50m_offsets_mv"
	bigRows   = 50_000_000
	bigParts  = 12
)

// BenchmarkStoredRead50M measures the read a worker makes before every
// INSERT since the load protocol resumes from what is stored, not from its
// maximum (pkg/sink Table.Stored): the offsets of one batch's range, here
// 20,000 offsets, on the 50M-row table. "new" is the usual case, a batch
// past everything stored (the read returns nothing); "redelivered" is a
// batch the table holds whole (it returns 20,000 offsets). One op is one
// read, for partitions 0..11 in turn.
func BenchmarkStoredRead50M(b *testing.B) {
	w := newWorld(b)
	ctx := context.Background()
	ensureBigTable(b, w.ch)
	tbl, err := sink.NewTable(ctx, w.ch, bigDB, bigTable, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 20_000
	for _, c := range []struct {
		name string
		from func(max int64) int64
		want int
	}{
		{"new", func(max int64) int64 { return max + 1 }, 0},
		{"redelivered", func(max int64) int64 { return max - batch + 1 }, batch},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p := i % bigParts
				from := c.from(bigMax(p))
				offs, _, err := tbl.Stored(ctx, "orders", int32(p), "", from, from+batch-1)
				if err != nil {
					b.Fatal(err)
				}
				if len(offs) != c.want {
					b.Fatalf("partition %d: %d offsets stored in %d..%d, want %d", p, len(offs), from, from+batch-1, c.want)
				}
				i++
			}
		})
	}
}

// BenchmarkMaxOffsetLookup50M measures the highest-loaded-offset lookup
// that workers made before the stored-offsets read replaced it (see
// BenchmarkStoredRead50M), on a 50M-row table, against its variants and an
// offsets ledger filled by a materialized view. One op is one lookup, for partitions 0..11 in turn;
// rows-read/lookup is what the server reports reading (progress packets),
// ch-ms-cpu/lookup the server's CPU per lookup (shared server: an upper
// bound).
func BenchmarkMaxOffsetLookup50M(b *testing.B) {
	w := newWorld(b)
	ctx := context.Background()
	ensureBigTable(b, w.ch)

	var parts, ledgerRows uint64
	if err := w.ch.QueryRow(ctx, `SELECT count() FROM system.parts WHERE database = ? AND table = ? AND active`, bigDB, bigTable).Scan(&parts); err != nil {
		b.Fatal(err)
	}
	if err := w.ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", bigDB, bigLedger)).Scan(&ledgerRows); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s.%s: %d rows in %d active parts; ledger %s holds %d rows", bigDB, bigTable, bigRows, parts, bigLedger, ledgerRows)

	t := bigDB + "." + bigTable
	where := "WHERE _topic = ? AND _partition = ?"
	cases := []struct {
		name string
		sql  string
		// bound, when set, is the third argument (_offset >= bound)
		// given the partition's true maximum.
		bound func(max int64) int64
		// read turns the row into (max, found); nil: the query returns
		// no row when nothing is stored.
		read func(r driver.Row) (int64, bool, error)
		// exact says the variant alone answers MaxOffset's question.
		exact bool
	}{
		{name: "table/max+count(current)", exact: true,
			sql:  "SELECT toInt64(max(_offset)), count() FROM " + t + " " + where,
			read: readMaxCount},
		{name: "table/max-only(no-existence)",
			sql: "SELECT toInt64(max(_offset)) FROM " + t + " " + where,
			read: func(r driver.Row) (int64, bool, error) {
				var m int64
				err := r.Scan(&m)
				return m, true, err
			}},
		{name: "table/max(offset+1)", exact: true,
			sql: "SELECT toInt64(max(_offset + 1)) FROM " + t + " " + where,
			read: func(r driver.Row) (int64, bool, error) {
				var m int64
				err := r.Scan(&m)
				return m - 1, m > 0, err
			}},
		{name: "table/order-by-desc-limit-1", exact: true,
			sql: "SELECT toInt64(_offset) FROM " + t + " " + where + " ORDER BY _offset DESC LIMIT 1"},
		{name: "table/bounded-resume(offset>=max-50000)", exact: true,
			sql:   "SELECT toInt64(max(_offset)), count() FROM " + t + " " + where + " AND _offset >= ?",
			bound: func(max int64) int64 { return max - 50_000 }, read: readMaxCount},
		{name: "table/bounded-fence(offset>=max+1)", exact: true,
			sql:   "SELECT toInt64(max(_offset)), count() FROM " + t + " " + where + " AND _offset >= ?",
			bound: func(max int64) int64 { return max + 1 }, read: readMaxCount},
		{name: "ledger/max+count", exact: true,
			sql:  fmt.Sprintf("SELECT toInt64(max(max_offset)), count() FROM %s.%s %s", bigDB, bigLedger, where),
			read: readMaxCount},
	}
	for _, c := range cases {
		lookup := func(ctx context.Context, p int) (int64, bool, error) {
			args := []any{"orders", uint32(p)}
			if c.bound != nil {
				args = append(args, uint64(c.bound(bigMax(p))))
			}
			if c.read != nil {
				return c.read(w.ch.QueryRow(ctx, c.sql, args...))
			}
			rows, err := w.ch.Query(ctx, c.sql, args...)
			if err != nil {
				return 0, false, err
			}
			defer rows.Close()
			var m int64
			found := rows.Next()
			if found {
				if err := rows.Scan(&m); err != nil {
					return 0, false, err
				}
			}
			return m, found, rows.Err()
		}
		// Every variant must answer what MaxOffset answers, for every
		// partition: the variants are only comparable if equally correct.
		for p := range bigParts {
			got, found, err := lookup(ctx, p)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			want, wantFound := bigMax(p), true
			if c.bound != nil && c.bound(bigMax(p)) > bigMax(p) {
				want, wantFound = 0, false // nothing at or above the bound
			}
			if found != wantFound || (found && got != want) {
				b.Fatalf("%s, partition %d: got (%d, %v), want (%d, %v)", c.name, p, got, found, want, wantFound)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			var rowsRead uint64
			pctx := clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) { rowsRead += p.Rows }))
			b.ReportAllocs()
			ch0, chOK := benchutil.ClickHouseCPU(repoRoot())
			i := 0
			for b.Loop() {
				if _, _, err := lookup(pctx, i%bigParts); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/lookup")
			b.ReportMetric(float64(rowsRead)/float64(b.N), "rows-read/lookup")
			if ch1, ok := benchutil.ClickHouseCPU(repoRoot()); ok && chOK {
				b.ReportMetric(float64((ch1-ch0).Microseconds())/1000/float64(b.N), "ch-ms-cpu/lookup")
			}
			b.ReportMetric(float64(parts), "parts")
		})
	}
}

func readMaxCount(r driver.Row) (int64, bool, error) {
	var m int64
	var n uint64
	err := r.Scan(&m, &n)
	return m, n > 0, err
}

// bigMax is the highest _offset of partition p: row number n goes to
// partition n % 12 at offset n / 12.
func bigMax(p int) int64 { return int64((bigRows - 1 - p) / bigParts) }

// ensureBigTable creates and fills the 50M-row table and its ledger unless
// they are already complete.
func ensureBigTable(b *testing.B, ch driver.Conn) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var n, ledger uint64
	err := ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", bigDB, bigTable)).Scan(&n)
	if err == nil {
		err = ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", bigDB, bigLedger)).Scan(&ledger)
	}
	if err == nil && n == bigRows && ledger > 0 {
		settle(b, ch)
		return
	}
	b.Logf("building %s.%s (%d rows) and its offsets ledger; once, kept for later runs", bigDB, bigTable, bigRows)
	start := time.Now()
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + bigDB,
		fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", bigDB, bigMV),
		fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", bigDB, bigLedger),
		fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", bigDB, bigTable),
		fmt.Sprintf(`CREATE TABLE %s.%s (
    order_id      String,
    created_at    DateTime('UTC'),
    total         Decimal(18, 2),
    _topic        String,
    _partition    UInt32,
    _offset       UInt64,
    _ingested_at  DateTime('UTC')
) ENGINE = MergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (_topic, _partition, _offset)`, bigDB, bigTable),
		// The ledger: one row per (topic, partition) and insert block;
		// merges keep the highest. Filled by the view in the same INSERT.
		fmt.Sprintf(`CREATE TABLE %s.%s (
    _topic      String,
    _partition  UInt32,
    max_offset  UInt64
) ENGINE = ReplacingMergeTree(max_offset)
ORDER BY (_topic, _partition)`, bigDB, bigLedger),
		fmt.Sprintf(`CREATE MATERIALIZED VIEW %s.%s TO %s.%s AS
SELECT _topic, _partition, max(_offset) AS max_offset
FROM %s.%s
GROUP BY _topic, _partition`, bigDB, bigMV, bigDB, bigLedger, bigDB, bigTable),
		// 2026-01-01T00:00:00Z + one second per order; totals 0.00..999.99.
		fmt.Sprintf(`INSERT INTO %s.%s (order_id, created_at, total, _topic, _partition, _offset, _ingested_at)
SELECT concat('ord-', toString(number)),
       toDateTime(1767225600 + number, 'UTC'),
       toDecimal64(number %% 100000, 2) / 100,
       'orders',
       toUInt32(number %% %d),
       intDiv(number, %d),
       now()
FROM numbers(%d)`, bigDB, bigTable, bigParts, bigParts, bigRows),
	}
	for _, s := range stmts {
		if err := ch.Exec(ctx, s); err != nil {
			b.Fatalf("%s: %v", s, err)
		}
	}
	if err := ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", bigDB, bigTable)).Scan(&n); err != nil || n != bigRows {
		b.Fatalf("%s.%s holds %d rows (%v), want %d", bigDB, bigTable, n, err, bigRows)
	}
	settle(b, ch)
	b.Logf("built in %v", time.Since(start).Round(time.Second))
}

// settle merges the table to one part per monthly partition (and the
// ledger to one row per Kafka partition) unless it is already so, so every
// run measures the same layout: the state background merges reach on a
// table that is no longer loaded. A table being loaded has more parts, and
// the bounded lookups read about one granule (8192 rows) per part.
func settle(b *testing.B, ch driver.Conn) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var parts, partitions uint64
	if err := ch.QueryRow(ctx, `SELECT count(), uniqExact(partition) FROM system.parts WHERE database = ? AND table = ? AND active`,
		bigDB, bigTable).Scan(&parts, &partitions); err != nil {
		b.Fatal(err)
	}
	if parts == partitions {
		return
	}
	for _, t := range []string{bigTable, bigLedger} {
		if err := ch.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE %s.%s FINAL", bigDB, t)); err != nil {
			b.Fatalf("optimize %s: %v", t, err)
		}
	}
}
