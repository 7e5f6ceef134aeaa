//go:build integration

// Package bench holds the benchmarks that need the real services `make up`
// starts (Kafka at 127.0.0.1:9092, ClickHouse at 127.0.0.1:9000; override
// with SLUICE_KAFKA_BROKERS and SLUICE_CLICKHOUSE_ADDR). `make bench` runs
// them; a missing service fails the run.
//
//	e2e_bench_test.go        `sluice run` as a subprocess loading 1M orders
//	                         from the real broker: the figures comparable to
//	                         clickhouse_sinker's (DESIGN.md, Performance budget)
//	maxoffset_bench_test.go  the highest-loaded-offset lookup on a 50M-row
//	                         table, its variants and an offsets ledger
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/pkg/sink"
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
	start := time.Now()
	w.produce(g, jsonTopic, avroTopic, customers, fxRates)
	b.Logf("produced %d JSON and %d Avro orders in %v", e2eOrders, e2eOrders, time.Since(start).Round(time.Millisecond))

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
	cfg := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
clickhouse:
  addr: [%s]
  database: %s
admin:
  listen: 127.0.0.1:0
log:
  level: warn
%spipelines:
  - name: orders
    topic: %s
    format: %s
    schema: %s
    table: orders
    transforms: %s
`, strings.Join(brokers(), ", "), group, dlq, clickHouseAddr(), db, extra, topic, format,
		filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"), transforms)
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

// jsonOrder is an order as the json format reads it: the .avsc's field
// names, decimals as strings, timestamps as epoch millis.
type jsonOrder struct {
	OrderID         string     `json:"order_id"`
	CustomerID      string     `json:"customer_id"`
	CreatedAt       int64      `json:"created_at"`
	Currency        string     `json:"currency"`
	Total           string     `json:"total"`
	Status          string     `json:"status"`
	Channel         string     `json:"channel"`
	ShippingCountry string     `json:"shipping_country"`
	Items           []jsonItem `json:"items"`
	Coupon          *string    `json:"coupon"`
}

type jsonItem struct {
	SKU       string `json:"sku"`
	Quantity  int32  `json:"quantity"`
	UnitPrice string `json:"unit_price"`
}

func encodeJSON(o gen.Order) ([]byte, error) {
	j := jsonOrder{
		OrderID: o.OrderID, CustomerID: o.CustomerID, CreatedAt: o.CreatedAt.UnixMilli(),
		Currency: o.Currency, Total: o.Total.StringFixed(gen.MoneyScale), Status: string(o.Status),
		Channel: string(o.Channel), ShippingCountry: o.ShippingCountry, Coupon: o.Coupon,
		Items: make([]jsonItem, len(o.Items)),
	}
	for i, it := range o.Items {
		j.Items[i] = jsonItem{SKU: it.SKU, Quantity: it.Quantity, UnitPrice: it.UnitPrice.StringFixed(gen.MoneyScale)}
	}
	return json.Marshal(j)
}

// produce writes the reference topics and every order once as JSON and
// once as Avro.
func (w *world) produce(g *gen.Generator, jsonTopic, avroTopic, customers, fxRates string) {
	b := w.b
	b.Helper()
	jdec, err := decode.New(decode.FormatJSON, filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"))
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers()...), kgo.MaxBufferedRecords(250_000), kgo.ProducerLinger(10*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var (
		wg    sync.WaitGroup
		fails atomic.Int64
		first atomic.Value
	)
	send := func(r *kgo.Record) {
		wg.Add(1)
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				fails.Add(1)
				first.CompareAndSwap(nil, err)
			}
		})
	}
	codecs := g.Codecs()
	for _, c := range g.Customers() {
		k, v, err := codecs.EncodeCustomer(c)
		if err != nil {
			b.Fatal(err)
		}
		send(&kgo.Record{Topic: customers, Key: k, Value: v})
	}
	for _, r := range g.FxRates() {
		k, v, err := codecs.EncodeFxRate(r)
		if err != nil {
			b.Fatal(err)
		}
		send(&kgo.Record{Topic: fxRates, Key: k, Value: v})
	}
	for seq := range e2eOrders {
		o := g.Order(seq)
		k, av, err := codecs.EncodeOrder(o)
		if err != nil {
			b.Fatal(err)
		}
		jv, err := encodeJSON(o)
		if err != nil {
			b.Fatal(err)
		}
		if seq == 0 {
			if _, err := jdec.Decode(jv); err != nil {
				b.Fatalf("the json decoder rejects %s: %v", jv, err)
			}
		}
		send(&kgo.Record{Topic: jsonTopic, Key: k, Value: jv})
		send(&kgo.Record{Topic: avroTopic, Key: k, Value: av})
	}
	wg.Wait()
	if n := fails.Load(); n > 0 {
		b.Fatalf("%d records not produced, first error: %v", n, first.Load())
	}
}

// buildSluice compiles ./cmd/sluice into a temporary directory.
func buildSluice(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	return bin
}

// world is one benchmark's clients and unique names.
type world struct {
	b      *testing.B
	suffix string
	ch     driver.Conn
	kcl    *kgo.Client
	adm    *kadm.Client
}

func newWorld(b *testing.B) *world {
	b.Helper()
	w := &world{b: b, suffix: fmt.Sprintf("%d_%04d", time.Now().Unix()%1_000_000, rand.IntN(10000))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := sink.Open(ctx, config.ClickHouse{Addr: []string{clickHouseAddr()}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatalf("ClickHouse is not reachable at %s (run `make up`): %v", clickHouseAddr(), err)
	}
	b.Cleanup(func() { ch.Close() })
	kcl, err := kgo.NewClient(kgo.SeedBrokers(brokers()...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kcl.Close)
	if err := kcl.Ping(ctx); err != nil {
		b.Fatalf("Kafka is not reachable at %v (run `make up`): %v", brokers(), err)
	}
	w.ch, w.kcl, w.adm = ch, kcl, kadm.NewClient(kcl)
	return w
}

func (w *world) name(base string) string { return "bench_" + base + "_" + w.suffix }

func (w *world) createTopic(name string, partitions int32) {
	w.b.Helper()
	itest.CreateTopic(w.b, w.adm, name, partitions)
}

func (w *world) endOffsets(topic string) map[int32]int64 {
	w.b.Helper()
	return itest.EndOffsets(w.b, w.adm, topic)
}

func (w *world) committed(group, topic string) map[int32]int64 {
	w.b.Helper()
	return itest.Committed(w.b, w.adm, group, topic)
}

func env(k, def string) string { return itest.Env(k, def) }

func brokers() []string      { return itest.Brokers() }
func clickHouseAddr() string { return itest.ClickHouseAddr() }

func repoRoot() string { return itest.RepoRoot() }

// tail returns the end of a log file for a failure message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
