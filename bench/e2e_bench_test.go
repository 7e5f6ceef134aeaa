//go:build integration

// Package bench holds the benchmarks that need the real services `make up`
// starts (Kafka at 127.0.0.1:9092, ClickHouse at 127.0.0.1:9000; override
// with SLUICE_KAFKA_BROKERS and SLUICE_CLICKHOUSE_ADDR, and point
// SLUICE_STATE_DIR at that stack's state dir so the server's CPU is read
// from the right process). `make bench` runs them; a missing service fails
// the run.
//
//	sidebyside_bench_test.go the side-by-side suite of issue 8 (make bench,
//	                         first): Sluice, ClickHouse's Kafka engine, the
//	                         insert-only and consume-only limits and the
//	                         latency case on one data set; one table and
//	                         bin/bench.json
//	sidebyside_*_test.go     its cases: sluice (a, b, f), engine (c),
//	                         limits (d, e), latency (f), measuring
//	cmd/bench-limits         the loader processes of cases d and e
//	e2e_bench_test.go        `sluice run` as a subprocess loading 1M orders,
//	                         JSON, Avro and Avro enriched (make bench-e2e)
//	maxoffset_bench_test.go  the highest-loaded-offset lookup on a 50M-row
//	                         table, its variants and an offsets ledger
//	                         (make bench-offsets)
//	world_test.go            clients, unique names, building binaries
//	dataset_test.go          producing sluice-gen's orders and reference data
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/schemas"
)

const (
	e2eOrders     = 1_000_000
	e2ePartitions = 6
)

// BenchmarkE2E loads 1,000,000 orders from the real Kafka into a fresh
// MergeTree orders table (created by pkg/migrate, with its KPI view) with
// `sluice run` as a subprocess, the closest setup to the peer's figures:
//
//   - json:          JSON orders (one object per record, decimals as
//     strings, timestamps as millis), transforms [order_items];
//   - avro:          the same orders in plain Avro, [order_items];
//   - avro-enriched: Avro, [order_items, currency, customer, fraud] with the
//     customers and fx-rates reference topics.
//
// The orders (sluice-gen's data set, keyed by customer_id, 6 partitions,
// franz-go's default producer compression) are produced once, before any
// clock starts. Each case runs a new consumer group and a new database, with
// the default batch limits (50,000 rows, 16 MiB, 1 s) and inflight_bytes.
//
// Metrics (the process's own, read from /proc/<pid> the moment the
// committed offsets reach the log end, before SIGTERM):
//   - rows/s: 1M / wall time from starting the process to the committed
//     offsets at the log end (start-up and group join included);
//   - s-first-commit: how long until the first batch was committed;
//   - µs-cpu/row: the process's user+sys CPU / 1M;
//   - MB-peak-rss: the process's VmHWM;
//   - ch-µs-cpu/row: the ClickHouse server's CPU over the same time (the
//     server is shared with other sessions: an upper bound).
func BenchmarkE2E(b *testing.B) {
	w := newWorld(b)
	bin := buildSluice(b)
	g, err := gen.New(gen.Options{Seed: 11, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		b.Fatal(err)
	}
	jsonTopic, avroTopic := w.name("orders_json"), w.name("orders_avro")
	customers, fxRates := w.name("customers"), w.name("fx_rates")
	for _, t := range []string{jsonTopic, avroTopic} {
		w.createTopic(t, e2ePartitions)
	}
	for _, t := range []string{customers, fxRates} {
		w.createTopic(t, 1)
	}
	p := w.produce(g, produceSpec{JSONTopic: jsonTopic, AvroTopic: avroTopic, JSON: e2eOrders, Avro: e2eOrders,
		Customers: customers, FxRatesName: fxRates})
	b.Logf("produced %d JSON and %d Avro orders in %v", e2eOrders, e2eOrders, p.Took.Round(time.Millisecond))

	enriched := fmt.Sprintf(`reference:
  customers_topic: %s
  fx_rates_topic: %s
  base_currency: USD
`, customers, fxRates)
	for _, bc := range []struct {
		name, topic, format, transforms, extra string
	}{
		{"json", jsonTopic, "json", "[order_items]", ""},
		{"avro", avroTopic, "avro", "[order_items]", ""},
		{"avro-enriched", avroTopic, "avro", "[order_items, currency, customer, fraud]", enriched},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				w.run(b, bin, bc.topic, bc.format, bc.transforms, bc.extra)
			}
		})
	}
}

// run loads topic with one `sluice run` and reports its figures.
func (parent *world) run(b *testing.B, bin, topic, format, transforms, extra string) {
	w := *parent
	w.b = b // Fatal from this benchmark's goroutine
	// Only the load itself is timed (ns/op): not the set-up, not the checks.
	b.StopTimer()
	defer b.StartTimer()
	ctx := context.Background()
	db := w.name(fmt.Sprintf("e2e_%d", rand.IntN(1_000_000)))
	if err := migrate.Apply(ctx, w.ch, db, schemas.ClickHouse, "clickhouse", slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`") })
	group, dlq := db+"_g", db+"_dlq"
	b.Cleanup(func() { _, _ = w.adm.DeleteTopics(context.Background(), dlq) })
	cfg := ordersConfig(db, group, dlq, topic, format, transforms, extra)
	dir := b.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		b.Fatalf("config: %v\n%s", err, cfg)
	}
	ends := w.endOffsets(topic)

	logf, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "-c", path)
	cmd.Stdout, cmd.Stderr = logf, logf

	chCPU0, chOK := benchutil.ClickHouseCPU(repoRoot())
	b.StartTimer()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := strconv.Itoa(cmd.Process.Pid)
	var firstCommit time.Duration
	deadline := start.Add(3 * time.Minute)
	for {
		c := w.committed(group, topic)
		if firstCommit == 0 && len(c) > 0 {
			firstCommit = time.Since(start)
		}
		if itest.EqualOffsets(c, ends) {
			break
		}
		select {
		case err := <-exited:
			b.Fatalf("sluice exited early (%v):\n%s", err, tail(logf.Name()))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			b.Fatalf("committed %v, log end %v after 3 minutes:\n%s", c, ends, tail(logf.Name()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu, cpuOK := benchutil.ProcCPU(pid)
	hwm := benchutil.StatusKB("/proc/"+pid+"/status", "VmHWM:")
	chCPU1, _ := benchutil.ClickHouseCPU(repoRoot())

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			b.Fatalf("sluice exited with %v:\n%s", err, tail(logf.Name()))
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		b.Fatalf("sluice did not stop within 60s of SIGTERM")
	}
	if !cpuOK || hwm == 0 {
		b.Fatalf("could not read /proc/%s", pid)
	}

	var n, distinct uint64
	if err := w.ch.QueryRow(ctx, fmt.Sprintf("SELECT count(), uniqExact(_topic, _partition, _offset) FROM `%s`.orders", db)).Scan(&n, &distinct); err != nil {
		b.Fatal(err)
	}
	if n != e2eOrders || distinct != e2eOrders {
		b.Fatalf("orders holds %d rows (%d distinct), want %d", n, distinct, e2eOrders)
	}

	b.ReportMetric(e2eOrders/elapsed.Seconds(), "rows/s")
	b.ReportMetric(firstCommit.Seconds(), "s-first-commit")
	b.ReportMetric(float64(cpu.Microseconds())/e2eOrders, "µs-cpu/row")
	b.ReportMetric(float64(hwm)/1024, "MB-peak-rss")
	if chOK {
		b.ReportMetric(float64((chCPU1-chCPU0).Microseconds())/e2eOrders, "ch-µs-cpu/row")
	}
}
