//go:build integration

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/schemas"
)

// BenchmarkSideBySide is issue 8's side-by-side suite, the first step of
// `make bench`: one data set, produced before any clock starts, loaded by
//
//	(a) Sluice (`sluice run`, a subprocess), JSON orders, [order_items]
//	(b) Sluice, the same orders as plain Avro, [order_items, currency,
//	    customer, fraud] with the customers and fx-rates topics
//	(c) ClickHouse's own Kafka engine (JSONEachRow, 1 consumer) and a
//	    materialized view, on the JSON topic
//	(d) the insert-only limit: (b)'s rows, read back into memory, inserted
//	    with clickhouse-go in INSERTs of Sluice's default batch size
//	(e) the consume-only limit: a franz-go group draining the JSON topic
//	(f) latency: `sluice run` (max_wait 1 s) loading a topic produced at a
//	    steady rate, produce→queryable percentiles
//
// each into its own fresh database with the orders table of
// schemas/clickhouse (pkg/migrate). It prints one table of the figures and
// the targets' ratios (all from this run), and writes bin/bench.json,
// printing the previous file's figures beside the new ones. Run it alone
// with `-run '^$' -bench SideBySide -benchtime 1x`; b.N is ignored (one
// run is all the suite does, about 10 minutes at the default sizes here).
//
// A case that fails is reported in the table and fails the benchmark at
// the end; the other cases still run. Sizes, for development (defaults are
// issue 8's):
//
//	SLUICE_BENCH_ORDERS          JSON orders (3,000,000), 6 partitions
//	SLUICE_BENCH_AVRO_ORDERS     Avro orders for (b) and (d) (= ORDERS)
//	SLUICE_BENCH_CUSTOMERS       customers (100,000)
//	SLUICE_BENCH_LATENCY_RATE    (f) events/s (20,000)
//	SLUICE_BENCH_LATENCY_SECONDS (f) seconds of producing (60)
//	SLUICE_BENCH_CASES           the cases to run (abcdef; d needs b)
//	SLUICE_BENCH_JSON            the report (<repo>/bin/bench.json)
//	SLUICE_BENCH_PROFILE_DIR     save CPU profiles of (a) and (b) there (off)
//	SLUICE_BENCH_PROFILE_SECONDS how long each profile runs (15)
//	SLUICE_CLICKHOUSE_INSERT_PROTOCOL  driver or native for (a), (b), (f)
//
// How each figure is measured: sidebyside_meter_test.go (server CPU,
// visible rows, parts, merges) and the case files.
func BenchmarkSideBySide(b *testing.B) {
	s := newSuite(b)
	for b.Loop() {
		s.run()
	}
}

// suite is one run's data set, binaries and report.
type suite struct {
	w              *world
	sluice, limits string // binaries
	chPID          string // clickhouse-server, for its CPU
	kafkaPID       string // the broker, to tell other processes' CPU apart
	g              *gen.Generator
	cases          string
	orders, avro   int
	customers      int
	partitions     int32
	latencyRate    int
	latencySeconds int
	// Sluice's default batch, read from pkg/config: (d) inserts blocks of
	// blockRows.
	blockRows int
	maxWait   time.Duration
	// insertProtocol is clickhouse.insert_protocol of cases (a), (b), (f).
	insertProtocol string
	// profileDir, when set, receives a CPU profile of cases (a) and (b)
	// (profile), profileSeconds long.
	profileDir     string
	profileSeconds int

	jsonTopic, avroTopic, customersTopic, fxTopic string
	report                                        *benchutil.Report
	jsonPath                                      string
	dbs                                           map[string]string // case → database
}

func newSuite(b *testing.B) *suite {
	b.Helper()
	w := newWorld(b)
	pid, err := benchutil.ClickHouseServerPID(repoRoot())
	if err != nil {
		b.Fatalf("the suite needs the ClickHouse server's CPU: %v", err)
	}
	kpid, err := benchutil.KafkaBrokerPID(repoRoot())
	if err != nil {
		b.Fatalf("the suite needs the Kafka broker's CPU: %v", err)
	}
	s := &suite{
		w: w, chPID: pid, kafkaPID: kpid, partitions: 6,
		cases:          env("SLUICE_BENCH_CASES", "abcdef"),
		orders:         envInt(b, "SLUICE_BENCH_ORDERS", 3_000_000),
		customers:      envInt(b, "SLUICE_BENCH_CUSTOMERS", 100_000),
		latencyRate:    envInt(b, "SLUICE_BENCH_LATENCY_RATE", 20_000),
		latencySeconds: envInt(b, "SLUICE_BENCH_LATENCY_SECONDS", 60),
		jsonPath:       env("SLUICE_BENCH_JSON", filepath.Join(repoRoot(), "bin", "bench.json")),
		dbs:            map[string]string{},
	}
	s.avro = envInt(b, "SLUICE_BENCH_AVRO_ORDERS", s.orders)
	s.profileDir, s.profileSeconds = os.Getenv("SLUICE_BENCH_PROFILE_DIR"), envInt(b, "SLUICE_BENCH_PROFILE_SECONDS", 15)
	def, err := config.Load(s.writeConfig(b.TempDir(), "defaults", "default", "t", "json", "[]", "", ""))
	if err != nil {
		b.Fatalf("config defaults: %v", err)
	}
	s.blockRows, s.maxWait = def.Batch.MaxRows, def.Batch.MaxWait
	// SLUICE_CLICKHOUSE_INSERT_PROTOCOL reaches the sluice processes too.
	s.insertProtocol = def.ClickHouse.InsertProtocol
	// Eight currencies, each with a rate history across the whole data set.
	cur := []string{"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK"}
	s.g, err = gen.New(gen.Options{Seed: 8, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro"), Customers: s.customers,
		Currencies: cur, FxChanges: 100, FxInterval: time.Duration(max(s.orders, s.avro)/100+1) * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	s.sluice = buildSluice(b)
	s.limits = buildCmd(b, "./bench/cmd/bench-limits")
	b.Cleanup(func() {
		for _, db := range s.dbs {
			_ = w.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`")
		}
	})
	return s
}

func (s *suite) has(k string) bool { return strings.Contains(s.cases, k) }

func (s *suite) run() {
	b, w := s.w.b, s.w
	prev, err := benchutil.LoadReport(s.jsonPath)
	if err != nil {
		b.Logf("previous report unreadable, not compared: %v", err)
	}
	s.report = &benchutil.Report{Date: time.Now().UTC().Format(time.RFC3339), Commit: gitDescribe(), Machine: s.machine()}

	// The data set, before any clock.
	s.jsonTopic, s.avroTopic = w.name("orders_json"), w.name("orders_avro")
	s.customersTopic, s.fxTopic = w.name("customers"), w.name("fx_rates")
	w.createTopic(s.jsonTopic, s.partitions)
	w.createTopic(s.avroTopic, s.partitions)
	w.createTopic(s.customersTopic, 1)
	w.createTopic(s.fxTopic, 1)
	nAvro := s.avro
	if !s.has("b") && !s.has("d") {
		nAvro = 0
	}
	p := w.produce(s.g, produceSpec{JSONTopic: s.jsonTopic, AvroTopic: s.avroTopic, JSON: s.orders, Avro: nAvro,
		Customers: s.customersTopic, FxRatesName: s.fxTopic})
	fmt.Printf("produced %d JSON orders (%.0f B each), %d Avro orders (%.0f B each), %d customers, %d fx rates in %v\n",
		s.orders, float64(p.JSONBytes)/float64(max(s.orders, 1)), nAvro, float64(p.AvroBytes)/float64(max(nAvro, 1)),
		p.Customers, p.FxRates, p.Took.Round(time.Second))
	s.report.Setup = map[string]string{
		"orders_json":          strconv.Itoa(s.orders),
		"orders_avro":          strconv.Itoa(nAvro),
		"partitions":           strconv.Itoa(int(s.partitions)),
		"customers":            strconv.Itoa(p.Customers),
		"fx_rates":             strconv.Itoa(p.FxRates),
		"currencies":           "8",
		"json_bytes_per_order": fmt.Sprintf("%.0f", float64(p.JSONBytes)/float64(max(s.orders, 1))),
		"avro_bytes_per_order": fmt.Sprintf("%.0f", float64(p.AvroBytes)/float64(max(nAvro, 1))),
		"batch_max_rows":       strconv.Itoa(s.blockRows),
		"batch_max_wait":       s.maxWait.String(),
		"insert_protocol":      s.insertProtocol,
		"latency_rate":         strconv.Itoa(s.latencyRate),
		"latency_seconds":      strconv.Itoa(s.latencySeconds),
		"latency_max_wait":     latencyMaxWait.String(),
		"produce_seconds":      fmt.Sprintf("%.0f", p.Took.Seconds()),
	}
	if s.orders < 3_000_000 || (nAvro > 0 && nAvro < s.orders) {
		s.report.Notes = append(s.report.Notes, fmt.Sprintf(
			"scaled down: %d JSON and %d Avro orders (issue 8 asks for 3,000,000 each)", s.orders, nAvro))
	}

	for _, c := range []struct {
		key string
		run func() benchutil.Case
	}{
		{benchutil.CaseSluiceJSON, s.caseSluiceJSON},
		{benchutil.CaseEngine, s.caseEngine},
		{benchutil.CaseConsume, s.caseConsume},
		{benchutil.CaseSluiceAvro, s.caseSluiceAvro},
		{benchutil.CaseInsertOnly, s.caseInsertOnly},
		{benchutil.CaseLatency, s.caseLatency},
	} {
		if !s.has(c.key) {
			continue
		}
		s.quiesce()
		t0 := time.Now()
		r := c.run()
		r.Key, r.WallSeconds = c.key, time.Since(t0).Seconds()
		s.report.Cases = append(s.report.Cases, r)
		if r.Err != "" {
			fmt.Printf("(%s) %s FAILED after %v: %s\n", r.Key, r.Name, time.Since(t0).Round(time.Second), r.Err)
		} else {
			fmt.Printf("(%s) %s: %d rows, %.0f rows/s (case took %v)\n", r.Key, r.Name, r.Rows, r.RowsPerSec, time.Since(t0).Round(time.Second))
		}
		// (b)'s table is (d)'s source; every other table goes now, so
		// its merges do not run into the next case.
		if c.key != benchutil.CaseSluiceAvro || !s.has(benchutil.CaseInsertOnly) {
			s.dropDB(c.key)
		}
		if c.key == benchutil.CaseInsertOnly {
			s.dropDB(benchutil.CaseSluiceAvro)
		}
	}

	s.report.Evaluate(s.latencyMaxWaitMs())
	fmt.Println()
	s.report.Format(os.Stdout, prev)
	if err := s.report.Save(s.jsonPath); err != nil {
		b.Errorf("write %s: %v", s.jsonPath, err)
	} else {
		fmt.Printf("report: %s\n", s.jsonPath)
	}
	if f := s.report.Failed(); len(f) > 0 {
		b.Errorf("%d case(s) failed:\n%s", len(f), strings.Join(f, "\n"))
	}
}

// newDB creates the case's database with the schemas' tables.
func (s *suite) newDB(key string) (string, error) {
	db := s.w.name("sbs_" + key)
	s.dbs[key] = db
	if err := migrate.Apply(context.Background(), s.w.ch, db, schemas.ClickHouse, "clickhouse", slog.New(slog.DiscardHandler)); err != nil {
		return "", fmt.Errorf("migrate %s: %w", db, err)
	}
	return db, nil
}

func (s *suite) dropDB(key string) {
	if db, ok := s.dbs[key]; ok {
		_ = s.w.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`")
		delete(s.dbs, key)
	}
}

// writeConfig writes a one-pipeline sluice.yaml into dir and returns its
// path. extra goes before `pipelines:` (reference data, batch limits).
func (s *suite) writeConfig(dir, db, group, topic, format, transforms, extra, dlq string) string {
	if dlq == "" {
		dlq = group + "_dlq"
	}
	cfg := ordersConfig(db, group, dlq, topic, format, transforms, extra)
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		s.w.b.Fatal(err)
	}
	return path
}

// machine describes the host for the report.
func (s *suite) machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := benchutil.StatusKB("/proc/meminfo", "MemTotal:")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	var chVersion string
	_ = s.w.ch.QueryRow(context.Background(), "SELECT version()").Scan(&chVersion)
	return fmt.Sprintf("%d cores (%s), %.0f GiB, Linux %s, %s, ClickHouse %s, Kafka %s",
		runtime.NumCPU(), model, float64(mem)/(1<<20), strings.TrimSpace(string(kernel)), runtime.Version(), chVersion, kafkaVersion())
}

func kafkaVersion() string {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "integration", "kafka", "pom.xml"))
	if err != nil {
		return "?"
	}
	_, rest, ok := strings.Cut(string(b), "<kafka.version>")
	v, _, _ := strings.Cut(rest, "<")
	if !ok {
		return "?"
	}
	return v
}

func gitDescribe() string {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func envInt(b *testing.B, k string, def int) int {
	v := env(k, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", k, v)
	}
	return n
}
