//go:build integration

package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/pipeline"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
	"github.com/sluice-etl/sluice/pkg/service"
)

const (
	benchOrders     = 500_000
	benchPartitions = 6
)

// BenchmarkPipelineOrders runs the whole engine path in one process:
// kfake (in-process Kafka, 6 partitions, 500,000 Avro orders from
// sluice-gen produced before the clock starts) -> group consumer ->
// per-partition batches (max_rows 50000 as before the default became 20000, max_bytes 16MiB, max_wait 1s) ->
// real Avro decode -> transforms -> the real ClickHouse, into the orders
// table's columns with ENGINE = Null, or into the MergeTree orders table
// that `sluice migrate` creates (with its KPI view). Pipelines are built by
// service.BuildPipelines, as `sluice run` builds them; each iteration is a
// new consumer group reading the topic from the start.
//
// Metrics per iteration:
//   - rows/s: wall time from starting the client to the last row loaded
//     and committed;
//   - µs-cpu/row: this process's user+sys CPU over that time. It INCLUDES
//     kfake serving the fetches and the commits (about 0.3 µs per record,
//     FIELD-NOTES), so Sluice alone is somewhat below it;
//   - ch-µs-cpu/row: the ClickHouse server's CPU over that time, when its
//     pid file is readable (shared server: other sessions add to it);
//   - MB-peak-heap: the largest Go heap (live and unswept objects) sampled
//     every 10 ms; MB-heap-base is the same right before the start. Both
//     include kfake's in-memory log of the 500,000 records;
//   - MB-peak-rss: VmHWM of the process, reset at the start once freed
//     memory is returned to the OS, so each case starts as cold as a fresh
//     process (a second load in a warm process is ~25% faster: faulting in
//     and zeroing 2 GB of new heap costs about 2 µs of CPU per row).
func BenchmarkPipelineOrders(b *testing.B) {
	ctx := context.Background()
	g, err := gen.New(gen.Options{Seed: 7, SchemaDir: avroDir()})
	if err != nil {
		b.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(benchPartitions, "orders"), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	produceOrders(b, c.ListenAddrs(), g, benchOrders)

	store := refdata.NewStore(g.Options().BaseCurrency)
	for _, cu := range g.Customers() {
		store.PutCustomer(cu.CustomerID, refdata.Customer{Name: cu.Name, Country: cu.Country, Segment: string(cu.Segment)})
	}
	for _, r := range g.FxRates() {
		store.PutRate(r.Currency, r.EffectiveFrom.UnixMilli(), r.Rate)
	}

	conn, db := benchutil.ScratchDatabase(b, "bench_pipeline")
	if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE `%s`.orders_null AS `%s`.orders ENGINE = Null", db, db)); err != nil {
		b.Fatal(err)
	}
	const all = "[order_items, currency, customer, fraud]"
	for _, bc := range []struct{ name, table, transforms string }{
		{"null/order_items", "orders_null", "[order_items]"},
		{"null/enriched", "orders_null", all},
		{"mergetree/order_items", "orders", "[order_items]"},
		{"mergetree/enriched", "orders", all},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if bc.table == "orders" {
					// A fresh, empty table per iteration.
					if err := conn.Exec(ctx, fmt.Sprintf("TRUNCATE TABLE `%s`.orders", db)); err != nil {
						b.Fatal(err)
					}
				}
				runOnce(b, c.ListenAddrs(), conn, db, bc.table, bc.transforms, store,
					fmt.Sprintf("bench-%s-%d-%d", strings.ReplaceAll(bc.name, "/", "-"), i, time.Now().UnixNano()))
			}
		})
	}
}

// runOnce loads the whole topic with a new group and reports its figures.
func runOnce(b *testing.B, brokers []string, conn driver.Conn, db, table, transforms string, store *refdata.Store, group string) {
	b.StopTimer()
	ctx := context.Background()
	cfg := benchConfig(b, brokers, db, table, transforms, group)
	nw, err := service.NativeWriterFor(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer nw.Close()
	pipes, err := service.BuildPipelines(ctx, cfg, conn, store, nw)
	if err != nil {
		b.Fatal(err)
	}
	m := pipeline.NewMetrics(nil)
	e, err := pipeline.New(pipeline.Options{
		Pipelines:       pipes,
		InflightBytes:   int64(cfg.InflightBytes),
		Group:           group,
		Metadata:        dlq.Metadata,
		ShutdownTimeout: 30 * time.Second,
		Log:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Metrics:         m,
	})
	if err != nil {
		b.Fatal(err)
	}
	loaded := m.Loaded.WithLabelValues("orders")
	deadLetters := func() float64 {
		n := 0.0
		for _, st := range []record.Stage{record.StageDecode, record.StageTransform, record.StageLoad} {
			n += counterValue(m.DeadLetters.WithLabelValues("orders", string(st)))
		}
		return n
	}

	// Give freed memory back to the OS so that peak RSS measures this
	// load, not what earlier ones left mapped (every case then starts as
	// cold as a fresh process does).
	debug.FreeOSMemory()
	base := heapBytes()
	resetPeakRSS()
	stopSampling, peak := sampleHeap()
	chCPU0, chOK := benchutil.ClickHouseCPU(repoRoot())
	cpu0 := benchutil.SelfCPU()
	start := time.Now()
	b.StartTimer()

	cl, err := kgo.NewClient(append(e.ClientOpts(group),
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(dlq.Partitioner("dlq")),
	)...)
	if err != nil {
		b.Fatal(err)
	}
	e.SetDeadLetters(dlq.New(cl, "dlq", brokers))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx, cl) }()
	deadline := time.Now().Add(5 * time.Minute)
	for counterValue(loaded)+deadLetters() < benchOrders {
		if time.Now().After(deadline) {
			cancel()
			b.Fatalf("loaded %v of %d rows within 5 minutes", counterValue(loaded), benchOrders)
		}
		time.Sleep(10 * time.Millisecond)
	}

	b.StopTimer()
	elapsed := time.Since(start)
	cpu := benchutil.SelfCPU() - cpu0
	chCPU1, _ := benchutil.ClickHouseCPU(repoRoot())
	stopSampling()
	hwm := peakRSS()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if d := deadLetters(); d != 0 {
		b.Fatalf("%v rows dead-lettered", d)
	}
	checkCommitted(b, brokers, group)
	if table == "orders" {
		var n, distinct uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(), uniqExact(_topic, _partition, _offset) FROM `%s`.orders", db)).Scan(&n, &distinct); err != nil {
			b.Fatal(err)
		}
		if n != benchOrders || distinct != benchOrders {
			b.Fatalf("orders holds %d rows (%d distinct), want %d", n, distinct, benchOrders)
		}
	}

	b.ReportMetric(benchOrders/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(cpu.Microseconds())/benchOrders, "µs-cpu/row")
	if chOK {
		b.ReportMetric(float64((chCPU1-chCPU0).Microseconds())/benchOrders, "ch-µs-cpu/row")
	}
	b.ReportMetric(float64(peak())/(1<<20), "MB-peak-heap")
	b.ReportMetric(float64(base)/(1<<20), "MB-heap-base")
	b.ReportMetric(float64(hwm)/(1<<20), "MB-peak-rss")
	b.StartTimer()
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func benchConfig(b *testing.B, brokers []string, db, table, transforms, group string) *config.Config {
	b.Helper()
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: dlq
clickhouse:
  addr: [%s]
  database: %s
log:
  level: warn
batch:
  max_rows: 50000
  max_bytes: 16MiB
  max_wait: 1s
pipelines:
  - name: orders
    topic: orders
    format: avro
    schema: %s
    table: %s
    transforms: %s
`, strings.Join(brokers, ", "), group, clickHouseAddr(), db, filepath.Join(avroDir(), "order.avsc"), table, transforms)
	path := filepath.Join(b.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatalf("config: %v\n%s", err, yaml)
	}
	return cfg
}

// produceOrders writes orders 0..n-1, keyed by customer_id as sluice-gen
// does, so the default partitioner spreads them over the partitions.
func produceOrders(b *testing.B, brokers []string, g *gen.Generator, n int) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(100_000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for seq := range n {
		k, v, err := g.Codecs().EncodeOrder(g.Order(seq))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: "orders", Key: k, Value: v}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		b.Fatalf("produce: %v", first)
	}
}

// checkCommitted fails unless the group committed the log end of every
// partition.
func checkCommitted(b *testing.B, brokers []string, group string) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, "orders")
	if err != nil {
		b.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		if c, ok := committed.Lookup("orders", o.Partition); !ok || c.At != o.Offset {
			b.Errorf("partition %d: committed %v, log end %d", o.Partition, c.At, o.Offset)
		}
	})
	if total != benchOrders {
		b.Fatalf("topic holds %d records, want %d", total, benchOrders)
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func avroDir() string { return filepath.Join(repoRoot(), "schemas", "avro") }

func clickHouseAddr() string {
	if a := os.Getenv("SLUICE_CLICKHOUSE_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:9000"
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

// heapBytes is the memory held by heap objects, live or not yet swept
// (runtime.MemStats.HeapAlloc), read without stopping the world.
func heapBytes() uint64 {
	metrics.Read(heapSample)
	return heapSample[0].Value.Uint64()
}

// sampleHeap samples heapBytes every 10 ms until stop; peak returns the
// largest sample.
func sampleHeap() (stop func(), peak func() uint64) {
	var (
		mu  sync.Mutex
		max uint64
	)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			h := heapBytes()
			mu.Lock()
			max = maxU(max, h)
			mu.Unlock()
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-done }, func() uint64 { mu.Lock(); defer mu.Unlock(); return max }
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// resetPeakRSS resets VmHWM (Linux: "5" to clear_refs).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0o644) }

// peakRSS is VmHWM in bytes.
func peakRSS() uint64 { return benchutil.StatusKB("/proc/self/status", "VmHWM:") * 1024 }
