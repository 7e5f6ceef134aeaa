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
	"github.com/sluice-etl/sluice/pkg/refdata"
)

// TestMemoryStaysUnderItsBound drains a backlog of orders over 12
// partitions, several times inflight_bytes, with `sluice run` at the
// default limits, and samples the process's resident memory: it must stay
// under the bound the config implies (`sluice check` prints it) plus, with
// the enrichment transforms, the state held (sluice_memory_bound_bytes).
func TestMemoryStaysUnderItsBound(t *testing.T) {
	// Both formats take the columnar path (Avro since ColumnAvro); the bound holds
	// for both.
	t.Run("json", func(t *testing.T) { memoryStaysUnderItsBound(t, "json", 400_000, 0) })
	t.Run("avro", func(t *testing.T) { memoryStaysUnderItsBound(t, "avro", 1_000_000, 0) })
	// 400,000 customers: reference data and VELOCITY windows of some 150
	// MiB between them, more than the config's bound leaves spare, so the
	// process passes the config's bound and must stay under the one that
	// follows the state.
	t.Run("avro_enriched", func(t *testing.T) { memoryStaysUnderItsBound(t, "avro", 1_000_000, 400_000) })
}

// memoryStaysUnderItsBound drains n orders in format, several times
// inflight_bytes (346 B as JSON, 100 B as Avro); with customers > 0 the
// pipeline runs [order_items, currency, customer, fraud] over that many
// customers and their FX rates.
func memoryStaysUnderItsBound(t *testing.T, format string, n, customers int) {
	w := newWorld(t)
	topic := w.name("orders_mem")
	w.createTopic(topic, 12)
	opts := gen.Options{Seed: 3, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")}
	if customers > 0 {
		opts.Customers = customers
	}
	g, err := gen.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	produce := func(recs []*kgo.Record) {
		if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	recs := make([]*kgo.Record, 0, 10_000)
	transforms, reference := "[order_items]", ""
	if customers > 0 {
		ct, ft := w.name("customers"), w.name("fx")
		w.createTopic(ct, 1)
		w.createTopic(ft, 1)
		for _, c := range g.Customers() {
			k, v, err := g.Codecs().EncodeCustomer(c)
			if err != nil {
				t.Fatal(err)
			}
			if recs = append(recs, &kgo.Record{Topic: ct, Key: k, Value: v}); len(recs) == cap(recs) {
				produce(recs)
				recs = recs[:0]
			}
		}
		for _, r := range g.FxRates() {
			k, v, err := g.Codecs().EncodeFxRate(r)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: ft, Key: k, Value: v})
		}
		produce(recs)
		recs = recs[:0]
		transforms = "[order_items, currency, customer, fraud]"
		reference = fmt.Sprintf("reference:\n  customers_topic: %s\n  fx_rates_topic: %s\n  base_currency: USD\n", ct, ft)
	}
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
			produce(recs)
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
  level: info
%spipelines:
  - name: orders
    topic: %s
    format: %s
    schema: %s
    table: orders
    transforms: %s
`, strings.Join(brokers, ", "), group, w.name("dlq"), clickhouse, w.db, reference, topic, format, filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"), transforms)
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
	logText := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	// The bound as the process follows it: the config's (what check
	// printed) plus the state held, read after each RSS sample so that
	// a sample is never compared with a bound older than itself.
	var metrics string
	following := func() (bound, state uint64) {
		if metrics == "" {
			m := adminAddr.FindStringSubmatch(logText())
			if m == nil {
				return 0, 0
			}
			metrics = m[1] + "/metrics"
		}
		b, st := seriesValue(t, metrics, "sluice_memory_bound_bytes"), seriesValue(t, metrics, "sluice_memory_state_bytes")
		if b < 0 || st < 0 {
			t.Fatalf("%s lacks the memory bound's series", metrics)
		}
		return uint64(b), uint64(st)
	}
	var peak, peakState, lastBound uint64
	deadline := time.Now().Add(3 * time.Minute)
	for !itest.EqualOffsets(w.committed(group, topic), ends) {
		if time.Now().After(deadline) {
			t.Fatalf("not drained in 3 minutes; committed %v of %v", w.committed(group, topic), ends)
		}
		rss := benchutil.StatusKB(status, "VmRSS:") << 10
		peak = max(peak, rss)
		if b, st := following(); b > 0 {
			if b < bound {
				t.Fatalf("sluice_memory_bound_bytes %d MiB is under the config's bound of %d MiB that check printed", b>>20, bound>>20)
			}
			if rss > b {
				t.Fatalf("RSS %d MiB over the bound of %d MiB (state %d MiB)\n%s", rss>>20, b>>20, st>>20, logText())
			}
			lastBound, peakState = b, max(peakState, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	peak = max(peak, benchutil.StatusKB(status, "VmHWM:")<<10)
	t.Logf("peak RSS %d MiB while draining %d %s orders over 12 partitions in %v; bound %d MiB (config %d MiB, state up to %d MiB)",
		peak>>20, n, format, time.Since(start).Round(100*time.Millisecond), lastBound>>20, bound>>20, peakState>>20)
	if lastBound == 0 {
		t.Fatalf("the bound was never read from /metrics\n%s", logText())
	}
	if peak > lastBound {
		t.Fatalf("peak RSS %d MiB over the bound of %d MiB\n%s", peak>>20, lastBound>>20, logText())
	}
	if customers > 0 && peakState < uint64(customers)*refdata.CustomerBytes {
		t.Fatalf("state term %d MiB for %d customers held: under their CustomerBytes alone", peakState>>20, customers)
	}
	if bad, _ := itest.UnlabelledErrors(logText()); len(bad) > 0 {
		t.Errorf("ERROR records without stage or error_type:\n%s", strings.Join(bad, "\n"))
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
