//go:build integration

package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// The 100M-row partition: offsets 0..99,999,999 of one topic-partition,
// without 50,000,000..50,000,009 and with 77,777,777 twice. Built once in
// database sluice_bench (about 15 s), kept for later runs. Not part of
// `make test` or `make bench`; run it with
//
//	go test -tags integration -run '^$' -bench Audit100M -benchtime 1x ./pkg/audit/
const (
	benchDB    = "sluice_bench"
	benchTable = "audit_100m"
	benchRows  = 100_000_000
)

// BenchmarkAudit100M audits the 100M-row partition as `sluice audit` does,
// under a server memory limit of 64 MB per query (max_memory_usage): the
// proof that the windowed aggregation is bounded, not only fast. One op is
// one whole partition's audit; rows-read is what the server reports.
func BenchmarkAudit100M(b *testing.B) {
	ctx := context.Background()
	conn, err := sink.Open(ctx, config.ClickHouse{Addr: []string{itest.ClickHouseAddr()}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatalf("ClickHouse is not reachable (run `make up`): %v", err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", benchDB, benchTable)).Scan(&n); err != nil || n != benchRows-10+1 {
		b.Logf("building %s.%s (%d rows); once, kept for later runs", benchDB, benchTable, benchRows)
		for _, q := range []string{
			"CREATE DATABASE IF NOT EXISTS " + benchDB,
			fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", benchDB, benchTable),
			fmt.Sprintf("CREATE TABLE %s.%s (_topic String, _partition UInt32, _offset UInt64, _ingested_at DateTime) ENGINE = MergeTree ORDER BY (_topic, _partition, _offset)", benchDB, benchTable),
			fmt.Sprintf("INSERT INTO %s.%s SELECT 'orders', 0, number, now() FROM system.numbers WHERE number < 50000000 OR number >= 50000010 LIMIT %d", benchDB, benchTable, benchRows-10),
			fmt.Sprintf("INSERT INTO %s.%s SELECT 'orders', 0, 77777777, now()", benchDB, benchTable),
		} {
			if err := conn.Exec(ctx, q); err != nil {
				b.Fatalf("%s: %v", q, err)
			}
		}
	}
	var rowsRead uint64
	qctx := clickhouse.Context(ctx,
		clickhouse.WithSettings(clickhouse.Settings{"max_memory_usage": 64_000_000}),
		clickhouse.WithProgress(func(p *clickhouse.Progress) { rowsRead += p.Rows }))
	tbl, err := ClickHouseTable(qctx, conn, benchDB, benchTable)
	if err != nil {
		b.Fatal(err)
	}
	a := &auditor{width: DefaultBucketWidth, window: DefaultBucketWidth * DefaultWindowBuckets, maxDrill: DefaultMaxDrill}
	b.ReportAllocs()
	for b.Loop() {
		p := &PartitionReport{Topic: "orders", LogStart: 0, Committed: benchRows}
		p.init(0)
		if err := a.partition(qctx, tbl, p, &partitionLetters{below: -1}); err != nil {
			b.Fatal(err)
		}
		p.end(benchRows)
		p.classify(false)
		if p.Gaps.String() != "50000000-50000009" || p.Duplicates.String() != "77777777" || p.Rows != benchRows-10+1 {
			b.Fatalf("gaps %s, duplicates %s, rows %d", p.Gaps.String(), p.Duplicates.String(), p.Rows)
		}
	}
	b.ReportMetric(float64(rowsRead)/float64(b.N), "rows-read/op")
}
