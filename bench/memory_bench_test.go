//go:build integration

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/schemas"
)

// BenchmarkMemoryDrain is issue 8's point 4 measured (`make bench-memory`):
// a backlog of 10,000,000 JSON orders (SLUICE_MEMORY_ORDERS) over 12
// partitions, produced before the clock starts, drained by one `sluice
// run` at the default limits ([order_items]; SLUICE_MEMORY_FORMAT avro for
// Avro). The process's VmRSS is sampled every 100 ms and the committed
// offsets every second; it prints the bound `sluice check` derives from
// the config (config.MemoryBound) and the largest RSS in each tenth of the
// drain, so a bound that holds only at the start, or memory that creeps,
// shows. It fails when the peak (VmHWM) exceeds the bound or when the
// table does not hold every order exactly once.
func BenchmarkMemoryDrain(b *testing.B) {
	n := envInt(b, "SLUICE_MEMORY_ORDERS", 10_000_000)
	format := env("SLUICE_MEMORY_FORMAT", "json")
	w := newWorld(b)
	g, err := gen.New(gen.Options{Seed: 12, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		b.Fatal(err)
	}
	topic := w.name("orders_drain")
	w.createTopic(topic, 12)
	spec := produceSpec{JSONTopic: topic, JSON: n}
	if format == "avro" {
		spec = produceSpec{AvroTopic: topic, Avro: n}
	}
	p := w.produce(g, spec)
	fmt.Printf("produced %d %s orders (%.0f B each) to 12 partitions in %v\n", n, format,
		float64(p.JSONBytes+p.AvroBytes)/float64(n), p.Took.Round(time.Second))
	b.Cleanup(func() { _, _ = w.adm.DeleteTopics(context.Background(), topic) })
	ends := w.endOffsets(topic)

	db := w.name("drain")
	if err := migrate.Apply(context.Background(), w.ch, db, schemas.ClickHouse, "clickhouse", slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`") })
	group := db + "_g"
	dir := b.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(ordersConfig(db, group, group+"_dlq", topic, format, "[order_items]", "")), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = w.adm.DeleteTopics(context.Background(), group+"_dlq") })
	bin := buildSluice(b)
	out, err := exec.Command(bin, "check", "-c", path).CombinedOutput()
	if err != nil {
		b.Fatalf("sluice check: %v\n%s", err, out)
	}
	bound := checkedBound(b, string(out))

	logPath := filepath.Join(dir, "sluice.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "-c", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	b.ResetTimer()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := strconv.Itoa(cmd.Process.Pid)
	status := "/proc/" + pid + "/status"

	// tenths[i] is the largest RSS seen while the committed offsets were
	// in the i-th tenth of the backlog.
	var tenths [10]uint64
	var total int64
	for _, e := range ends {
		total += e
	}
	var done int64
	lastPoll := time.Time{}
	deadline := time.Now().Add(30 * time.Minute)
	for done < total {
		if time.Now().After(deadline) {
			b.Fatalf("not drained in 30 minutes: %d of %d committed\n%s", done, total, tail(logPath))
		}
		if time.Since(lastPoll) >= time.Second {
			lastPoll = time.Now()
			done = 0
			for _, o := range w.committed(group, topic) {
				done += o
			}
		}
		rss := benchutil.StatusKB(status, "VmRSS:") << 10
		if rss == 0 {
			b.Fatalf("sluice exited:\n%s", tail(logPath))
		}
		i := min(int(done*10/max(total, 1)), 9)
		tenths[i] = max(tenths[i], rss)
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	cpu, _ := benchutil.ProcCPU(pid)
	peak := benchutil.StatusKB(status, "VmHWM:") << 10
	b.StopTimer()
	_ = cmd.Process.Signal(syscall.SIGTERM)

	var rows, distinct uint64
	if err := w.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count(), uniqExact(_partition, _offset) FROM `%s`.orders", db)).Scan(&rows, &distinct); err != nil {
		b.Fatal(err)
	}
	var cells []string
	for _, t := range tenths {
		if t == 0 {
			cells = append(cells, "-") // no sample: the commits skipped it
			continue
		}
		cells = append(cells, fmt.Sprintf("%.0f", float64(t)/(1<<20)))
	}
	fmt.Printf("drained %d %s orders over 12 partitions in %v (%.0f rows/s, %.2f µs CPU/row): peak RSS %.0f MiB, bound %d MiB\n",
		n, format, took.Round(100*time.Millisecond), float64(n)/took.Seconds(), float64(cpu.Microseconds())/float64(n),
		float64(peak)/(1<<20), bound>>20)
	fmt.Printf("largest RSS (MiB) in each tenth of the drain: %s\n", strings.Join(cells, " "))
	b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-rss")
	b.ReportMetric(float64(bound>>20), "MiB-bound")
	b.ReportMetric(float64(n)/took.Seconds(), "rows/s")
	if rows != uint64(n) || distinct != uint64(n) {
		b.Fatalf("the table holds %d rows (%d distinct offsets) of %d orders", rows, distinct, n)
	}
	if peak > bound {
		b.Fatalf("peak RSS %d MiB over the config's bound of %d MiB", peak>>20, bound>>20)
	}
}

// checkedBound reads "memory bound: N MiB" from `sluice check`'s output.
func checkedBound(b *testing.B, out string) uint64 {
	b.Helper()
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "memory bound: "); i >= 0 {
			var mib uint64
			if _, err := fmt.Sscanf(line[i+len("memory bound: "):], "%d MiB", &mib); err == nil {
				return mib << 20
			}
		}
	}
	b.Fatalf("sluice check printed no memory bound:\n%s", out)
	return 0
}
