//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// TestMemoryStaysUnderItsBound drains a backlog of orders over 12
// partitions, several times inflight_bytes, with `sluice run` at the
// default limits, and samples the process's resident memory: it must stay
// under the bound the config implies (`sluice check` prints it).
func TestMemoryStaysUnderItsBound(t *testing.T) {
	// Both formats take the columnar path (Avro since ColumnAvro); the bound holds
	// for both.
	t.Run("json", func(t *testing.T) { memoryStaysUnderItsBound(t, "json", 400_000) })
	t.Run("avro", func(t *testing.T) { memoryStaysUnderItsBound(t, "avro", 1_000_000) })
}

// memoryStaysUnderItsBound drains n orders in format, several times
// inflight_bytes (346 B as JSON, 100 B as Avro).
func memoryStaysUnderItsBound(t *testing.T, format string, n int) {
	w := newWorld(t)
	topic := w.name("orders_mem")
	w.createTopic(topic, 12)
	g, err := gen.New(gen.Options{Seed: 3, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, 10_000)
	for seq := range n {
		encode := g.Codecs().EncodeOrder
		if format == "json" {
			encode = gen.EncodeOrderJSON
		}
		k, v, err := encode(g.Order(seq))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: k, Value: v})
		if len(recs) == cap(recs) || seq == n-1 {
			if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	ends := w.endOffsets(topic)

	group := w.name("g_mem")
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
pipelines:
  - name: orders
    topic: %s
    format: %s
    schema: %s
    table: orders
    transforms: [order_items]
`, strings.Join(brokers, ", "), group, w.name("dlq"), clickhouse, w.db, topic, format, filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"))
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := sluiceBinary(t)
	out, err := exec.Command(bin, "check", "-c", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice check: %v\n%s", err, out)
	}
	bound := memoryBound(t, string(out))

	logPath := filepath.Join(t.TempDir(), "sluice.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "-c", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var peak uint64
	deadline := time.Now().Add(3 * time.Minute)
	for !itest.EqualOffsets(w.committed(group, topic), ends) {
		if time.Now().After(deadline) {
			t.Fatalf("not drained in 3 minutes; committed %v of %v", w.committed(group, topic), ends)
		}
		peak = max(peak, benchutil.StatusKB(status, "VmRSS:")<<10)
		time.Sleep(50 * time.Millisecond)
	}
	peak = max(peak, benchutil.StatusKB(status, "VmHWM:")<<10)
	t.Logf("peak RSS %d MiB while draining %d %s orders over 12 partitions in %v; bound %d MiB", peak>>20, n, format, time.Since(start).Round(100*time.Millisecond), bound>>20)
	if peak > bound {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("peak RSS %d MiB over the config's bound of %d MiB\n%s", peak>>20, bound>>20, log)
	}
	w.exactlyOnce(topic)
}

// memoryBound reads "memory bound: N MiB" from `sluice check`'s output.
func memoryBound(t *testing.T, out string) uint64 {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "memory bound: "); i >= 0 {
			var mib uint64
			if _, err := fmt.Sscanf(line[i+len("memory bound: "):], "%d MiB", &mib); err == nil {
				return mib << 20
			}
		}
	}
	t.Fatalf("sluice check printed no memory bound:\n%s", out)
	return 0
}
