//go:build cluster

package bench

// BenchmarkScale is issue 10's scaling curve (`make bench-scale`): 1, 2
// and 3 `sluice run` processes of one consumer group draining the same
// backlog of a 12-partition topic (RF 3) on the cluster test bed into
// ReplicatedMergeTree tables of two shards × two replicas.
//
// The orders are produced once, before any clock. Each run (N processes)
// gets a fresh database migrated ON CLUSTER (pkg/migrate.ApplyCluster) and
// a fresh group, so every N drains the same records into empty tables.
// What a run measures:
//
//   - rows/s: the rows committed after the first commit was seen, over
//     the time from that sighting to the last partition's commit at its
//     log end (the group's offsets polled every 100 ms). Start-up and the
//     group's join are left out; the time to the first commit is
//     reported beside.
//   - loader CPU/row: the sum of the processes' utime+stime
//     (/proc/<pid>/stat) from their start to the last commit, start-up
//     and rebalances included, over the rows.
//   - ClickHouse CPU/row: the four clickhouse-server processes of the bed,
//     /proc deltas over the same window ("load"), and again once no merge
//     of the run's table has run for a second on any replica (at most
//     90 s; "+merges"). Replication's fetches are in both.
//   - Kafka CPU/row: the three brokers, over the load window.
//   - others: what every other process of the machine used meanwhile, in
//     cores (/proc/stat minus the loaders, the servers, the brokers and
//     this process). The bed is shared; a run with a high figure here was
//     disturbed by other work.
//   - peak RSS: VmHWM of each process at the last commit.
//   - batches: each process's /metrics at the last commit
//     (sluice_batch_rows, sluice_batch_duration_seconds: cut to commit),
//     summed; "in flight" is Little's law, rows/s × mean batch latency ÷
//     mean batch rows: how many batches were between cut and commit on
//     average.
//   - bed before: the CPU the bed's servers and brokers used, in cores,
//     over the 2 s before the processes start (idle, or other sessions'
//     tests).
//   - parts: the bed's servers have no system.part_log, so parts created
//     are the level-0 parts of the shards' local tables in system.parts,
//     active or not, counted right after the load (INSERTs create level
//     0, merges higher levels; outdated parts stay listed for
//     old_parts_lifetime, 8 minutes), and merges the parts of higher
//     levels once the merges settled; per shard the larger count of its
//     two replicas (a replica that has not fetched a part yet lacks it).
//
// Exactly once: after each run both replicas of every shard must hold the
// same rows, and count() and uniqExact(_partition, _offset) summed over
// the shards' local tables must both equal the records produced, with no
// row on a shard its partition does not map to; otherwise the benchmark
// fails. A run during which a member of the bed restarted (a pid changed
// or vanished: the cluster tests kill replicas and brokers) is disturbed:
// its figures are dropped and it runs again, up to three attempts.
//
// Environment (make bench-scale sets the first four from the bed's env):
//
//	SLUICE_CLUSTER_KAFKA_BROKERS, SLUICE_CLUSTER_CLICKHOUSE_SHARDS,
//	SLUICE_CLUSTER_CLICKHOUSE_CLUSTER  the bed ($SLUICE_STATE_DIR/cluster/env)
//	SLUICE_SCALE_BIN     the sluice binary (bin/sluice; built if unset)
//	SLUICE_SCALE_ORDERS  JSON orders produced (800,000)
//	SLUICE_SCALE_PROCS   the process counts, in order ("1,2,3")
//	SLUICE_SCALE_ROUNDS  how many times the counts run, interleaved (3):
//	                     the machine is shared, so one run of a count
//	                     says little; the summary takes the median
//	SLUICE_SCALE_JSON    the report (<repo>/bin/bench-scale.json)
//	SLUICE_SCALE_LOG_DIR keep each process's log there, as
//	                     sluice-<count>-<round_attempt>-<i>.log (off: the
//	                     logs go with the test's temporary directory)

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/pkg/sink"
	"github.com/sluice-etl/sluice/schemas"
)

const (
	scalePartitions = 12
	scaleAttempts   = 5
)

// ScaleReport is bin/bench-scale.json.
type ScaleReport struct {
	Date    string `json:"date"`
	Commit  string `json:"commit"`
	Machine string `json:"machine"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute figures before the
	// first run.
	LoadAvg        string  `json:"load_avg_before"`
	Orders         int     `json:"orders"`
	Partitions     int     `json:"partitions"`
	BytesPerOrder  float64 `json:"json_bytes_per_order"`
	ProduceSeconds float64 `json:"produce_seconds"`
	// MemoryBoundMiB is config.MemoryBound of the runs' config at the
	// processes' GOMAXPROCS (the bound `sluice run` logs).
	MemoryBoundMiB int64      `json:"memory_bound_mib"`
	Gomaxprocs     int        `json:"gomaxprocs"`
	PartsSource    string     `json:"parts_source"`
	Rounds         int        `json:"rounds"`
	Runs           []ScaleRun `json:"runs"`
	// Summary is one line per process count: the median of its rounds.
	Summary []ScaleSummary `json:"summary"`
}

// ScaleSummary is the median of one process count's rounds, and the
// spread of its rates.
type ScaleSummary struct {
	Processes         int     `json:"processes"`
	Runs              int     `json:"runs"`
	RowsPerSec        float64 `json:"rows_per_sec_median"`
	RowsPerSecMin     float64 `json:"rows_per_sec_min"`
	RowsPerSecMax     float64 `json:"rows_per_sec_max"`
	LoaderCPUUsPerRow float64 `json:"loader_cpu_us_per_row_median"`
	CHCPUUsPerRow     float64 `json:"clickhouse_cpu_us_per_row_median"`
	KafkaCPUUsPerRow  float64 `json:"kafka_cpu_us_per_row_median"`
	PeakRSSMB         float64 `json:"peak_rss_mb_max"`
	PartsPerMillion   float64 `json:"parts_per_million_rows_median"`
	BatchRows         float64 `json:"batch_rows_median"`
	BatchSeconds      float64 `json:"batch_seconds_median"`
	OtherCores        float64 `json:"other_cores_median"`
}

// ScaleRun is the figures of N processes.
type ScaleRun struct {
	Processes         int       `json:"processes"`
	Round             int       `json:"round"`
	Attempts          int       `json:"attempts"`
	Rows              uint64    `json:"rows"`
	Distinct          uint64    `json:"distinct_offsets"`
	RowsPerSec        float64   `json:"rows_per_sec"`
	LoadSeconds       float64   `json:"load_seconds"`
	FirstCommitSec    float64   `json:"first_commit_seconds"`
	LoaderCPUUsPerRow float64   `json:"loader_cpu_us_per_row"`
	CHCPUUsPerRow     float64   `json:"clickhouse_cpu_us_per_row"`
	CHMergeCPUUsRow   float64   `json:"clickhouse_cpu_us_per_row_with_merges"`
	MergeSettleSec    float64   `json:"merge_settle_seconds"`
	KafkaCPUUsPerRow  float64   `json:"kafka_cpu_us_per_row"`
	OtherCores        float64   `json:"other_cores"`
	PeakRSSMB         []float64 `json:"peak_rss_mb"`
	PartsCreated      int64     `json:"parts_created"`
	PartsPerMillion   float64   `json:"parts_per_million_rows"`
	Merges            int64     `json:"merged_parts"`
	BatchRows         float64   `json:"batch_rows_mean"`
	BatchSeconds      float64   `json:"batch_seconds_mean"`
	InFlight          float64   `json:"batches_in_flight"`
	BedCHCoresBefore  float64   `json:"bed_clickhouse_cores_before"`
	BedKCoresBefore   float64   `json:"bed_kafka_cores_before"`
	Disturbed         []string  `json:"disturbed_attempts,omitempty"`
}

func BenchmarkScale(b *testing.B) {
	s := newScaleBed(b)
	for b.Loop() {
		s.run()
	}
}

// scaleBed is the cluster bed's clients and the run's settings.
type scaleBed struct {
	b        *testing.B
	brokers  []string
	shards   [][]string
	replicas [][]driver.Conn // per shard, per replica
	cluster  string
	stateDir string
	adm      *kadm.Client
	kcl      *kgo.Client
	bin      string
	orders   int
	procs    []int
	rounds   int
	jsonPath string
	logDir   string
	suffix   string
	topic    string
}

func newScaleBed(b *testing.B) *scaleBed {
	b.Helper()
	s := &scaleBed{
		b:        b,
		brokers:  strings.Split(itest.Env("SLUICE_CLUSTER_KAFKA_BROKERS", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"), ","),
		cluster:  itest.Env("SLUICE_CLUSTER_CLICKHOUSE_CLUSTER", "sluice"),
		stateDir: itest.Env("SLUICE_STATE_DIR", filepath.Join(itest.RepoRoot(), ".state")),
		jsonPath: itest.Env("SLUICE_SCALE_JSON", filepath.Join(itest.RepoRoot(), "bin", "bench-scale.json")),
		logDir:   os.Getenv("SLUICE_SCALE_LOG_DIR"),
		suffix:   fmt.Sprintf("%d", time.Now().Unix()%1_000_000),
	}
	for _, sh := range strings.Split(itest.Env("SLUICE_CLUSTER_CLICKHOUSE_SHARDS",
		"127.0.0.1:19001,127.0.0.1:19002;127.0.0.1:19003,127.0.0.1:19004"), ";") {
		s.shards = append(s.shards, strings.Split(sh, ","))
	}
	if s.logDir != "" {
		if err := os.MkdirAll(s.logDir, 0o755); err != nil {
			b.Fatalf("SLUICE_SCALE_LOG_DIR: %v", err)
		}
	}
	var err error
	if s.orders, err = strconv.Atoi(strings.ReplaceAll(itest.Env("SLUICE_SCALE_ORDERS", "800000"), "_", "")); err != nil || s.orders <= 0 {
		b.Fatalf("SLUICE_SCALE_ORDERS: want a positive integer")
	}
	if s.rounds, err = strconv.Atoi(itest.Env("SLUICE_SCALE_ROUNDS", "3")); err != nil || s.rounds <= 0 {
		b.Fatalf("SLUICE_SCALE_ROUNDS: want a positive integer")
	}
	for _, f := range strings.Split(itest.Env("SLUICE_SCALE_PROCS", "1,2,3"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > scalePartitions {
			b.Fatalf("SLUICE_SCALE_PROCS %q: want process counts from 1 to %d", f, scalePartitions)
		}
		s.procs = append(s.procs, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for si, rs := range s.shards {
		var conns []driver.Conn
		for ri, addr := range rs {
			conn, err := sink.Open(ctx, config.ClickHouse{Addr: []string{addr}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
			if err != nil {
				b.Fatalf("replica s%dr%d at %s (make up-cluster): %v", si+1, ri+1, addr, err)
			}
			b.Cleanup(func() { conn.Close() })
			conns = append(conns, conn)
		}
		s.replicas = append(s.replicas, conns)
	}
	if s.kcl, err = kgo.NewClient(kgo.SeedBrokers(s.brokers...)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.kcl.Close)
	s.adm = kadm.NewClient(s.kcl)
	if err := s.kcl.Ping(ctx); err != nil {
		b.Fatalf("Kafka at %v (make up-cluster): %v", s.brokers, err)
	}
	if _, err := s.members(); err != nil {
		b.Fatal(err)
	}
	s.bin = os.Getenv("SLUICE_SCALE_BIN")
	if s.bin == "" {
		s.bin = filepath.Join(b.TempDir(), "sluice")
		cmd := exec.Command("go", "build", "-o", s.bin, "./cmd/sluice")
		cmd.Dir = itest.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
		}
	}
	return s
}

// bedMember is one server of the bed whose CPU a run reads.
type bedMember struct {
	name, kind, pid string // kind: clickhouse or kafka
}

// members reads the pid files of the bed's ClickHouse servers and brokers
// and checks each pid runs that member (its config file on the command
// line, as integration/cluster.sh checks).
func (s *scaleBed) members() ([]bedMember, error) {
	var out []bedMember
	add := func(name, kind, pidFile, needle string) error {
		raw, err := os.ReadFile(pidFile)
		if err != nil {
			return fmt.Errorf("bed member %s: %w (make up-cluster)", name, err)
		}
		pid := strings.TrimSpace(string(raw))
		cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), needle) {
			return fmt.Errorf("bed member %s: pid %s from %s is not running it", name, pid, pidFile)
		}
		out = append(out, bedMember{name: name, kind: kind, pid: pid})
		return nil
	}
	dir := filepath.Join(s.stateDir, "cluster")
	for si, rs := range s.shards {
		for ri := range rs {
			m := fmt.Sprintf("s%dr%d", si+1, ri+1)
			if err := add(m, "clickhouse", filepath.Join(dir, "clickhouse", m, "clickhouse.pid"),
				"--config-file="+filepath.Join(dir, "clickhouse", m, "etc", "config.xml")); err != nil {
				return nil, err
			}
		}
	}
	for i := range s.brokers {
		m := fmt.Sprintf("kafka%d", i+1)
		if err := add(m, "kafka", filepath.Join(dir, m, "kafka.pid"), "kafka.Kafka "+filepath.Join(dir, m, "server.properties")); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// bedCPU is the summed CPU of the members of kind.
func bedCPU(ms []bedMember, kind string) time.Duration {
	var sum time.Duration
	for _, m := range ms {
		if m.kind == kind {
			c, _ := benchutil.ProcCPU(m.pid)
			sum += c
		}
	}
	return sum
}

func (s *scaleBed) run() {
	b := s.b
	rep := &ScaleReport{Date: time.Now().UTC().Format(time.RFC3339), Commit: scaleGitDescribe(), Machine: scaleMachine(),
		Orders: s.orders, Partitions: scalePartitions, Gomaxprocs: runtime.NumCPU(), Rounds: s.rounds,
		PartsSource: "system.parts (no system.part_log on the bed): level-0 parts created, parts of higher levels merged, per shard the larger count of its two replicas"}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		rep.LoadAvg = strings.Join(strings.Fields(string(la))[:3], " ")
	}
	s.topic = "bench-scale-orders-" + s.suffix
	ctx := context.Background()
	resp, err := s.adm.CreateTopic(ctx, scalePartitions, 3, nil, s.topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		b.Fatalf("create topic %s: %v", s.topic, err)
	}
	b.Cleanup(func() { _, _ = s.adm.DeleteTopics(context.Background(), s.topic) })
	t0 := time.Now()
	bytes := s.produce()
	rep.ProduceSeconds = time.Since(t0).Seconds()
	rep.BytesPerOrder = float64(bytes) / float64(s.orders)
	fmt.Printf("bench-scale: produced %d JSON orders (%.0f B each) over %d partitions (RF 3, acks=all) in %v; load average %s\n",
		s.orders, rep.BytesPerOrder, scalePartitions, time.Since(t0).Round(time.Second), rep.LoadAvg)

	for round := 1; round <= s.rounds; round++ {
		for _, n := range s.procs {
			r := s.runCount(n, round)
			fmt.Printf("bench-scale: round %d, %d process(es): %d rows exactly once, %.0f rows/s (others %.2f cores)\n",
				round, n, r.Rows, r.RowsPerSec, r.OtherCores)
			rep.Runs = append(rep.Runs, r)
			if rep.MemoryBoundMiB == 0 {
				rep.MemoryBoundMiB = s.memoryBound()
			}
		}
	}
	rep.Summary = summarize(s.procs, rep.Runs)
	fmt.Println()
	formatScale(os.Stdout, rep)
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(s.jsonPath), 0o755)
	}
	if err == nil {
		err = os.WriteFile(s.jsonPath, append(raw, '\n'), 0o644)
	}
	if err != nil {
		b.Fatalf("write %s: %v", s.jsonPath, err)
	}
	fmt.Printf("report: %s\n", s.jsonPath)
}

// runCount runs n processes until a run is not disturbed (at most
// scaleAttempts), and fails the benchmark on any other error.
func (s *scaleBed) runCount(n, round int) ScaleRun {
	b := s.b
	var disturbed []string
	for attempt := 1; ; attempt++ {
		if err := s.waitBed(5 * time.Minute); err != nil {
			b.Fatal(err)
		}
		r, err := s.runN(n, fmt.Sprintf("%d_%d", round, attempt))
		var d *disturbance
		if errors.As(err, &d) && attempt < scaleAttempts {
			fmt.Printf("bench-scale: round %d, %d process(es), attempt %d disturbed (%v): running it again\n", round, n, attempt, err)
			disturbed = append(disturbed, err.Error())
			continue
		}
		if err != nil {
			b.Fatalf("round %d, %d process(es), attempt %d: %v", round, n, attempt, err)
		}
		r.Round, r.Attempts, r.Disturbed = round, attempt, disturbed
		return r
	}
}

// summarize takes, per process count, the median of its runs.
func summarize(procs []int, runs []ScaleRun) []ScaleSummary {
	var out []ScaleSummary
	for _, n := range procs {
		var rs []ScaleRun
		for _, r := range runs {
			if r.Processes == n {
				rs = append(rs, r)
			}
		}
		med := func(f func(ScaleRun) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			slices.Sort(v)
			if len(v)%2 == 1 {
				return v[len(v)/2]
			}
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		sm := ScaleSummary{Processes: n, Runs: len(rs),
			RowsPerSec:        med(func(r ScaleRun) float64 { return r.RowsPerSec }),
			LoaderCPUUsPerRow: med(func(r ScaleRun) float64 { return r.LoaderCPUUsPerRow }),
			CHCPUUsPerRow:     med(func(r ScaleRun) float64 { return r.CHCPUUsPerRow }),
			KafkaCPUUsPerRow:  med(func(r ScaleRun) float64 { return r.KafkaCPUUsPerRow }),
			PartsPerMillion:   med(func(r ScaleRun) float64 { return r.PartsPerMillion }),
			BatchRows:         med(func(r ScaleRun) float64 { return r.BatchRows }),
			BatchSeconds:      med(func(r ScaleRun) float64 { return r.BatchSeconds }),
			OtherCores:        med(func(r ScaleRun) float64 { return r.OtherCores }),
			RowsPerSecMin:     rs[0].RowsPerSec, RowsPerSecMax: rs[0].RowsPerSec,
		}
		for _, r := range rs {
			sm.RowsPerSecMin, sm.RowsPerSecMax = min(sm.RowsPerSecMin, r.RowsPerSec), max(sm.RowsPerSecMax, r.RowsPerSec)
			for _, m := range r.PeakRSSMB {
				sm.PeakRSSMB = max(sm.PeakRSSMB, m)
			}
		}
		out = append(out, sm)
	}
	return out
}

// produce writes the orders, seq i to partition i mod 12 (every partition
// the same backlog), acks=all; it returns the bytes of the values.
func (s *scaleBed) produce() int64 {
	b := s.b
	g, err := gen.New(gen.Options{Seed: 10, SchemaDir: filepath.Join(itest.RepoRoot(), "schemas", "avro")})
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(200_000), kgo.ProducerLinger(10*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var (
		wg    sync.WaitGroup
		fails atomic.Int64
		first atomic.Value
		bytes int64
	)
	for seq := range s.orders {
		k, v, err := gen.EncodeOrderJSON(g.Order(seq))
		if err != nil {
			b.Fatal(err)
		}
		bytes += int64(len(v))
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: s.topic, Partition: int32(seq % scalePartitions), Key: k, Value: v},
			func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					fails.Add(1)
					first.CompareAndSwap(nil, err)
				}
			})
	}
	wg.Wait()
	if n := fails.Load(); n > 0 {
		b.Fatalf("%d records not produced, first error: %v", n, first.Load())
	}
	return bytes
}

// disturbance is a run that a restart of a bed member spoiled.
type disturbance struct{ what string }

func (d *disturbance) Error() string { return d.what }

// serving is nil when every member of the bed runs and answers: each
// replica a ping, the brokers a metadata request.
func (s *scaleBed) serving() error {
	if _, err := s.members(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for si, rs := range s.replicas {
		for ri, conn := range rs {
			if err := conn.Ping(ctx); err != nil {
				return fmt.Errorf("replica s%dr%d: %w", si+1, ri+1, err)
			}
		}
	}
	md, err := s.adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if len(md.Brokers) != len(s.brokers) {
		return fmt.Errorf("kafka: %d of %d brokers in the metadata", len(md.Brokers), len(s.brokers))
	}
	return nil
}

// waitBed waits until every member of the bed runs and answers: the
// cluster tests that share it kill members and restart them.
func (s *scaleBed) waitBed(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := s.serving()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the bed is not whole after %v: %w", d, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// runN loads the topic with n processes into a fresh database. An error
// of a run during which a member of the bed restarted is a disturbance.
func (s *scaleBed) runN(n int, attempt string) (ScaleRun, error) {
	before, err := s.members()
	if err != nil {
		return ScaleRun{}, &disturbance{err.Error()}
	}
	r, err := s.load(n, attempt)
	var d *disturbance
	if err != nil && !errors.As(err, &d) {
		if derr := s.sameMembers(before); derr != nil {
			return r, &disturbance{fmt.Sprintf("%v (after: %v)", derr, err)}
		}
		if serr := s.serving(); serr != nil {
			return r, &disturbance{fmt.Sprintf("%v (after: %v)", serr, err)}
		}
	}
	return r, err
}

// load is one run of n processes.
func (s *scaleBed) load(n int, attempt string) (ScaleRun, error) {
	ctx := context.Background()
	r := ScaleRun{Processes: n}
	db := fmt.Sprintf("bench_scale_%s_%d_%s", s.suffix, n, attempt)
	group := fmt.Sprintf("bench-scale-%s-%d-%s", s.suffix, n, attempt)
	first := s.replicas[0][0]
	if err := migrate.ApplyCluster(ctx, first, db, migrate.Cluster{Name: s.cluster, LocalSuffix: "_local"},
		schemas.ClickHouse, "clickhouse", slog.New(slog.DiscardHandler)); err != nil {
		return r, fmt.Errorf("migrate %s on cluster %s: %w", db, s.cluster, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = first.Exec(dctx, "DROP DATABASE IF EXISTS `"+db+"` ON CLUSTER `"+s.cluster+"`")
		_, _ = s.adm.DeleteTopics(dctx, group+"-dlq")
		_, _ = s.adm.DeleteGroup(dctx, group)
	}()
	ends, err := s.adm.ListEndOffsets(ctx, s.topic)
	if err != nil {
		return r, err
	}
	want := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset; total += o.Offset })
	if total != int64(s.orders) {
		return r, fmt.Errorf("topic %s holds %d records, %d were produced", s.topic, total, s.orders)
	}
	cfgPath, err := s.writeConfig(db, group)
	if err != nil {
		return r, err
	}
	s.quiesce()

	ms, err := s.members()
	if err != nil {
		return r, &disturbance{err.Error()}
	}
	{
		c, k, t := bedCPU(ms, "clickhouse"), bedCPU(ms, "kafka"), time.Now()
		time.Sleep(2 * time.Second)
		el := time.Since(t).Seconds()
		r.BedCHCoresBefore = (bedCPU(ms, "clickhouse") - c).Seconds() / el
		r.BedKCoresBefore = (bedCPU(ms, "kafka") - k).Seconds() / el
	}
	ch0, k0, m0, self0 := bedCPU(ms, "clickhouse"), bedCPU(ms, "kafka"), machineCPU(), benchutil.SelfCPU()
	start := time.Now()
	procs := make([]*scaleProc, 0, n)
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	for i := range n {
		logPath := filepath.Join(s.b.TempDir(), fmt.Sprintf("sluice-%d.log", i+1))
		if s.logDir != "" {
			logPath = filepath.Join(s.logDir, fmt.Sprintf("sluice-%d-%s-%d.log", n, attempt, i+1))
		}
		p, err := startScaleProc(s.bin, cfgPath, logPath, freeAddr())
		if err != nil {
			return r, err
		}
		procs = append(procs, p)
	}

	// Poll the group's commits until every partition is at its log end.
	var firstAt time.Time
	var firstRows int64
	deadline := start.Add(10 * time.Minute)
	for {
		c, err := s.committed(ctx, group)
		if err != nil {
			return r, &disturbance{fmt.Sprintf("reading the group's offsets: %v", err)}
		}
		var sum int64
		for _, o := range c {
			sum += o
		}
		if sum > 0 && firstAt.IsZero() {
			firstAt, firstRows = time.Now(), sum
		}
		if itest.EqualOffsets(c, want) {
			break
		}
		for _, p := range procs {
			if err := p.alive(); err != nil {
				return r, err
			}
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("committed %d of %d after 10 minutes:\n%s", sum, total, scaleTail(procs[0].log))
		}
		time.Sleep(100 * time.Millisecond)
	}
	end := time.Now()
	var loaderCPU time.Duration
	for _, p := range procs {
		c, ok := benchutil.ProcCPU(p.pid)
		hwm := benchutil.StatusKB("/proc/"+p.pid+"/status", "VmHWM:")
		if !ok || hwm == 0 {
			return r, fmt.Errorf("cannot read /proc/%s", p.pid)
		}
		loaderCPU += c
		r.PeakRSSMB = append(r.PeakRSSMB, float64(hwm)/1024)
	}
	var bm batchMetrics
	for _, p := range procs {
		m, err := scrapeBatches(p.admin)
		if err != nil {
			return r, fmt.Errorf("sluice (pid %s) /metrics: %w", p.pid, err)
		}
		bm.add(m)
	}
	chLoad, kLoad := bedCPU(ms, "clickhouse")-ch0, bedCPU(ms, "kafka")-k0
	others := machineCPU() - m0 - (benchutil.SelfCPU() - self0) - chLoad - kLoad - loaderCPU
	if err := s.sameMembers(ms); err != nil {
		return r, err
	}
	for _, p := range procs {
		if err := p.stop(); err != nil {
			return r, err
		}
	}
	rows := float64(total)
	r.LoadSeconds = end.Sub(firstAt).Seconds()
	r.RowsPerSec = float64(total-firstRows) / max(r.LoadSeconds, 1e-3)
	r.FirstCommitSec = firstAt.Sub(start).Seconds()
	r.LoaderCPUUsPerRow = float64(loaderCPU.Microseconds()) / rows
	r.CHCPUUsPerRow = float64(chLoad.Microseconds()) / rows
	r.KafkaCPUUsPerRow = float64(kLoad.Microseconds()) / rows
	r.OtherCores = max(0, others.Seconds()/end.Sub(start).Seconds())
	if bm.batches > 0 {
		r.BatchRows, r.BatchSeconds = bm.rows/bm.batches, bm.seconds/bm.batches
		r.InFlight = r.RowsPerSec * r.BatchSeconds / r.BatchRows
	}

	if r.PartsCreated, _, err = s.parts(ctx, db); err != nil {
		return r, err
	}
	t := time.Now()
	if err := s.settleMerges(ctx, db); err != nil {
		return r, err
	}
	r.MergeSettleSec = time.Since(t).Seconds()
	r.CHMergeCPUUsRow = float64((bedCPU(ms, "clickhouse") - ch0).Microseconds()) / rows
	if _, r.Merges, err = s.parts(ctx, db); err != nil {
		return r, err
	}
	r.PartsPerMillion = float64(r.PartsCreated) / rows * 1e6
	if err := s.sameMembers(ms); err != nil {
		return r, err
	}
	if r.Rows, r.Distinct, err = s.exactlyOnce(ctx, db, uint64(total)); err != nil {
		return r, err
	}
	return r, nil
}

// sameMembers says whether every member still runs under the pid it had
// at the run's start: a restart in between spoils the CPU deltas and the
// load's timing.
func (s *scaleBed) sameMembers(before []bedMember) error {
	now, err := s.members()
	if err != nil {
		return &disturbance{err.Error()}
	}
	for i, m := range before {
		if now[i].pid != m.pid {
			return &disturbance{fmt.Sprintf("%s restarted during the run (pid %s, now %s)", m.name, m.pid, now[i].pid)}
		}
	}
	return nil
}

// committed is the group's committed offsets of the topic; a retriable
// error (a broker loading the offsets topic) is retried for 10 s.
func (s *scaleBed) committed(ctx context.Context, group string) (map[int32]int64, error) {
	out := map[int32]int64{}
	var resp kadm.OffsetResponses
	var err error
	for i := 0; i < 100; i++ {
		if resp, err = s.adm.FetchOffsets(ctx, group); err == nil || !kerr.IsRetriable(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == s.topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// quiesce waits (at most 30 s) until the bed's servers and brokers used
// under 10 % of a core for a second, so a run does not pay for the
// previous one's drops and merges. Other sessions' tests on the bed can
// keep it busy; the run's "others" figure says so.
func (s *scaleBed) quiesce() {
	t0 := time.Now()
	for time.Since(t0) < 30*time.Second {
		ms, err := s.members()
		if err != nil {
			return
		}
		a := bedCPU(ms, "clickhouse") + bedCPU(ms, "kafka")
		time.Sleep(time.Second)
		if bedCPU(ms, "clickhouse")+bedCPU(ms, "kafka")-a < 100*time.Millisecond {
			return
		}
	}
	fmt.Printf("bench-scale: the bed did not go idle within 30 s; starting anyway\n")
}

// parts counts, per shard the larger figure of its replicas, the level-0
// parts of the run's local table (created by INSERTs) and the parts of
// higher levels (made by merges), active or not.
func (s *scaleBed) parts(ctx context.Context, db string) (created, merged int64, err error) {
	for _, rs := range s.replicas {
		var c, m int64
		for _, conn := range rs {
			var l0, hi int64
			if err := conn.QueryRow(ctx, fmt.Sprintf(
				"SELECT toInt64(countIf(level = 0)), toInt64(countIf(level > 0)) FROM system.parts WHERE database = '%s' AND table = 'orders_local'", db)).
				Scan(&l0, &hi); err != nil {
				return 0, 0, err
			}
			c, m = max(c, l0), max(m, hi)
		}
		created, merged = created+c, merged+m
	}
	return created, merged, nil
}

// settleMerges waits until no replica has run a merge of the run's table
// for a second (at most 90 s).
func (s *scaleBed) settleMerges(ctx context.Context, db string) error {
	t0 := time.Now()
	for idle := 0; idle < 4 && time.Since(t0) < 90*time.Second; {
		var busy uint64
		for _, rs := range s.replicas {
			for _, conn := range rs {
				var n uint64
				if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM system.merges WHERE database = '%s'", db)).Scan(&n); err != nil {
					return err
				}
				busy += n
			}
		}
		if busy == 0 {
			idle++
		} else {
			idle = 0
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil
}

// exactlyOnce waits (at most 2 minutes) until both replicas of every
// shard hold the same rows, then checks that the shards hold every
// produced record once, each on the shard of its partition.
func (s *scaleBed) exactlyOnce(ctx context.Context, db string, want uint64) (rows, distinct uint64, err error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var differ []string
		for si, rs := range s.replicas {
			var counts []uint64
			for _, conn := range rs {
				var n uint64
				if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM `%s`.orders_local", db)).Scan(&n); err != nil {
					return 0, 0, err
				}
				counts = append(counts, n)
			}
			for _, c := range counts[1:] {
				if c != counts[0] {
					differ = append(differ, fmt.Sprintf("shard %d: replicas hold %v rows", si+1, counts))
					break
				}
			}
		}
		if len(differ) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, errors.New(strings.Join(differ, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
	var misplaced uint64
	for si, rs := range s.replicas {
		var n, d, off uint64
		if err := rs[0].QueryRow(ctx, fmt.Sprintf(
			"SELECT count(), uniqExact(_partition, _offset), countIf(_partition %% %d != %d) FROM `%s`.orders_local WHERE _topic = ?",
			len(s.replicas), si, db), s.topic).Scan(&n, &d, &off); err != nil {
			return 0, 0, err
		}
		rows, distinct, misplaced = rows+n, distinct+d, misplaced+off
	}
	if rows != want || distinct != want || misplaced != 0 {
		return rows, distinct, fmt.Errorf("not exactly once: the shards hold %d rows, %d distinct (_partition, _offset), %d on the wrong shard; %d were produced",
			rows, distinct, misplaced, want)
	}
	return rows, distinct, nil
}

// writeConfig writes the runs' sluice.yaml: one JSON orders pipeline at
// the default batch limits, the bed's shards in their order (every
// process writes to each shard's first replica while it answers).
func (s *scaleBed) writeConfig(db, group string) (string, error) {
	var shards []string
	for _, rs := range s.shards {
		shards = append(shards, `"`+strings.Join(rs, " ")+`"`)
	}
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s-dlq
clickhouse:
  database: %s
  cluster:
    name: %s
    shards: [%s]
admin:
  listen: 127.0.0.1:0
log:
  level: warn
pipelines:
  - name: orders
    topic: %s
    format: json
    schema: %s
    table: orders
    transforms: [order_items]
`, strings.Join(s.brokers, ", "), group, group, db, s.cluster, strings.Join(shards, ", "), s.topic,
		filepath.Join(itest.RepoRoot(), "schemas", "avro", "order.avsc"))
	path := filepath.Join(s.b.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		return "", err
	}
	if _, err := config.Load(path); err != nil {
		return "", fmt.Errorf("config: %w\n%s", err, yaml)
	}
	return path, nil
}

// memoryBound is config.MemoryBound of the runs' config (JSON with
// order_items is columnar: no row-path term) at this machine's
// GOMAXPROCS, which the processes inherit.
func (s *scaleBed) memoryBound() int64 {
	path, err := s.writeConfig("bound", "bound")
	if err != nil {
		s.b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		s.b.Fatal(err)
	}
	return config.MemoryBound(cfg, runtime.GOMAXPROCS(0), false) >> 20
}

// batchMetrics is what a process's /metrics says of its batches.
type batchMetrics struct{ batches, rows, seconds float64 }

func (m *batchMetrics) add(o batchMetrics) {
	m.batches, m.rows, m.seconds = m.batches+o.batches, m.rows+o.rows, m.seconds+o.seconds
}

// scrapeBatches reads the batch histograms' sums and counts (one pipeline).
func scrapeBatches(addr string) (batchMetrics, error) {
	var m batchMetrics
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return m, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		name, rest, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "{")
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		switch name {
		case "sluice_batch_rows_count":
			m.batches += v
		case "sluice_batch_rows_sum":
			m.rows += v
		case "sluice_batch_duration_seconds_sum":
			m.seconds += v
		}
	}
	if m.batches == 0 {
		return m, errors.New("no sluice_batch_rows_count")
	}
	return m, nil
}

// freeAddr is a loopback address with a port free a moment ago, for a
// process's admin server.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

// scaleProc is one `sluice run` process.
type scaleProc struct {
	cmd    *exec.Cmd
	pid    string
	admin  string
	log    string
	logf   *os.File
	exited chan error
	done   bool
}

// startScaleProc starts `sluice run`, its admin server at admin (the
// environment overrides the shared config's admin.listen).
func startScaleProc(bin, cfgPath, logPath, admin string) (*scaleProc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &scaleProc{log: logPath, logf: f, admin: admin, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run", "-c", cfgPath)
	p.cmd.Env = append(os.Environ(), "SLUICE_ADMIN_LISTEN="+admin)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p.pid = strconv.Itoa(p.cmd.Process.Pid)
	go func() { p.exited <- p.cmd.Wait() }()
	return p, nil
}

func (p *scaleProc) alive() error {
	select {
	case err := <-p.exited:
		p.done = true
		p.logf.Close()
		return fmt.Errorf("sluice (pid %s) exited during the load (%v):\n%s", p.pid, err, scaleTail(p.log))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *scaleProc) stop() error {
	if p.done {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.done = true
		p.logf.Close()
		if err != nil {
			return fmt.Errorf("sluice (pid %s) exited with %v:\n%s", p.pid, err, scaleTail(p.log))
		}
		return nil
	case <-time.After(60 * time.Second):
		p.kill()
		return fmt.Errorf("sluice (pid %s) did not stop within 60 s of SIGTERM", p.pid)
	}
}

func (p *scaleProc) kill() {
	if p.done {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.done = true
	p.logf.Close()
}

func scaleTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func machineCPU() time.Duration {
	d, _ := benchutil.MachineBusy()
	return d
}

// formatScale prints every run, then the median of each process count
// with each rate's ratio to the one-process median.
func formatScale(w *os.File, rep *ScaleReport) {
	fmt.Fprintf(w, "bench-scale %s (%s) on %s\n", rep.Date, rep.Commit, rep.Machine)
	fmt.Fprintf(w, "%d JSON orders of %.0f B, %d partitions RF 3, ClickHouse 2 shards x 2 replicas; load average before: %s; memory bound per process %d MiB (GOMAXPROCS %d)\n",
		rep.Orders, rep.BytesPerOrder, rep.Partitions, rep.LoadAvg, rep.MemoryBoundMiB, rep.Gomaxprocs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tprocs\trows/s\tload s\tfirst commit s\tloader µs/row\tCH µs/row load\t+merges\tKafka µs/row\tpeak RSS MB each\tparts/M rows\tmerged parts\tbatch rows\tbatch s\tin flight\tbed before CH/Kafka cores\tother cores\texactly once\t")
	for _, r := range rep.Runs {
		rss := make([]string, len(r.PeakRSSMB))
		for i, v := range r.PeakRSSMB {
			rss[i] = fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%.0f\t%d\t%.0f\t%.2f\t%.1f\t%.2f/%.2f\t%.2f\t%d/%d\t\n",
			r.Round, r.Processes, r.RowsPerSec, r.LoadSeconds, r.FirstCommitSec, r.LoaderCPUUsPerRow,
			r.CHCPUUsPerRow, r.CHMergeCPUUsRow, r.KafkaCPUUsPerRow, strings.Join(rss, " "), r.PartsPerMillion, r.Merges,
			r.BatchRows, r.BatchSeconds, r.InFlight, r.BedCHCoresBefore, r.BedKCoresBefore, r.OtherCores, r.Distinct, r.Rows)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "median of the rounds:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "procs\trows/s\t(min-max)\tvs 1\tloader µs/row\tCH µs/row\tKafka µs/row\tpeak RSS MB\tparts/M rows\tbatch rows\tbatch s\tother cores\t")
	var base float64
	for _, m := range rep.Summary {
		if base == 0 {
			base = m.RowsPerSec
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f-%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t\n",
			m.Processes, m.RowsPerSec, m.RowsPerSecMin, m.RowsPerSecMax, m.RowsPerSec/base, m.LoaderCPUUsPerRow,
			m.CHCPUUsPerRow, m.KafkaCPUUsPerRow, m.PeakRSSMB, m.PartsPerMillion, m.BatchRows, m.BatchSeconds, m.OtherCores)
	}
	tw.Flush()
	fmt.Fprintf(w, "parts: %s\n", rep.PartsSource)
}

func scaleGitDescribe() string {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = itest.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func scaleMachine() string {
	model := "?"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := benchutil.StatusKB("/proc/meminfo", "MemTotal:")
	return fmt.Sprintf("%d cores (%s), %.0f GiB, %s", runtime.NumCPU(), model, float64(mem)/(1<<20), runtime.Version())
}
