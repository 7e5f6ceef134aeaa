//go:build cluster

package cluster

// Exactly once into replicated and sharded tables (issue 10, point 2):
// Sluice on the bed's two shards × two replicas, writing each Kafka
// partition to one shard's ReplicatedMergeTree and reading the stored
// offsets from a replica only once it holds every part the shard's
// replication log names (pkg/sink/cluster.go).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/internal/sluicerun"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/gen"
	"github.com/sluice-etl/sluice/pkg/migrate"
	"github.com/sluice-etl/sluice/pkg/sink"
	"github.com/sluice-etl/sluice/schemas"
)

// loadWorld is one test's database on the cluster, its topic and group,
// and a connection to every replica (by member name, s1r1 …).
type loadWorld struct {
	t     *testing.T
	db    string
	topic string
	group string
	// partitions of the topic.
	partitions int
	conns      map[string]driver.Conn
	// cfgPath is the last config written (config); combine its
	// batch.combine (0: 1).
	cfgPath string
	combine int
	kcl     *kgo.Client
	adm     *kadm.Client
}

func member(s, r int) string { return fmt.Sprintf("s%dr%d", s+1, r+1) }

func newLoadWorld(t *testing.T, partitions int32) *loadWorld {
	t.Helper()
	return newLoadWorldRF(t, partitions, 3)
}

// newLoadWorldRF is newLoadWorld with the topic's replication factor.
func newLoadWorldRF(t *testing.T, partitions int32, rf int16) *loadWorld {
	t.Helper()
	sfx := suffix()
	w := &loadWorld{t: t, db: "eo_" + sfx, topic: "eo-orders-" + sfx, group: "eo-" + sfx, partitions: int(partitions), conns: map[string]driver.Conn{}}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for s, rs := range shards {
		for r, addr := range rs {
			conn, err := sink.Open(ctx, config.ClickHouse{Addr: []string{addr}, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("replica %s at %s (make up-cluster): %v", member(s, r), addr, err)
			}
			w.conns[member(s, r)] = conn
			t.Cleanup(func() { conn.Close() })
		}
	}
	first := w.conns["s1r1"]
	if err := migrate.ApplyCluster(ctx, first, w.db, migrate.Cluster{Name: clusterName, LocalSuffix: "_local"},
		schemas.ClickHouse, "clickhouse", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			_ = first.Exec(ctx, "DROP DATABASE IF EXISTS "+w.db+" ON CLUSTER "+clusterName)
		}
	})
	kcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.Close)
	w.kcl, w.adm = kcl, kadm.NewClient(kcl)
	if _, err := w.adm.CreateTopic(ctx, partitions, rf, nil, w.topic); err != nil {
		t.Fatal(err)
	}
	return w
}

// produce writes n JSON orders, spread over the partitions by their keys.
func (w *loadWorld) produce(n int) {
	w.t.Helper()
	g, err := gen.New(gen.Options{Seed: 11, SchemaDir: filepath.Join("..", "..", "schemas", "avro")})
	if err != nil {
		w.t.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, n)
	for seq := range n {
		k, v, err := gen.EncodeOrderJSON(g.Order(seq))
		if err != nil {
			w.t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: w.topic, Key: k, Value: v})
	}
	if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		w.t.Fatalf("produce: %v", err)
	}
}

// config is a Sluice of the group whose shards list their replicas in the
// order given (member names per shard, most preferred first).
func (w *loadWorld) config(order [][]int, maxRows int) *config.Config {
	w.t.Helper()
	var shardList []string
	for s, rs := range order {
		var addrs []string
		for _, r := range rs {
			addrs = append(addrs, shards[s][r])
		}
		shardList = append(shardList, `"`+strings.Join(addrs, " ")+`"`)
	}
	abs, err := filepath.Abs(filepath.Join("..", "..", "schemas", "avro", "order.avsc"))
	if err != nil {
		w.t.Fatal(err)
	}
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s-dlq
  session_timeout: 10s
  rebalance_timeout: 20s
clickhouse:
  database: %s
  unknown_outcome_wait: 1s
  cluster:
    name: %s
    shards: [%s]
    sync_timeout: 20s
admin:
  listen: 127.0.0.1:0
log:
  level: warn
batch:
  max_rows: %d
  max_wait: 200ms
  combine: %d
shutdown_timeout: 20s
pipelines:
  - name: orders
    topic: %s
    format: json
    schema: %s
    table: orders
    transforms: [order_items]
`, strings.Join(brokers, ", "), w.group, w.topic, w.db, clusterName, strings.Join(shardList, ", "), maxRows, max(w.combine, 1), w.topic, abs)
	path := filepath.Join(w.t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		w.t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		w.t.Fatalf("config: %v\n%s", err, yaml)
	}
	w.cfgPath = path
	return cfg
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// audit runs `sluice audit` with the last config written: it must find
// every offset stored or dead-lettered exactly once, across the shards.
func (w *loadWorld) audit() {
	w.t.Helper()
	w.buildSluice()
	out, err := exec.Command(binary, "audit", "-c", w.cfgPath).CombinedOutput()
	if err != nil {
		w.t.Fatalf("sluice audit: %v\n%s", err, out)
	}
	w.t.Logf("sluice audit:\n%s", out)
}

func (w *loadWorld) start(cfg *config.Config) *sluicerun.Sluice {
	w.t.Helper()
	return sluicerun.Start(w.t, cfg)
}

func (w *loadWorld) waitCommitted(d time.Duration) {
	w.t.Helper()
	ends := w.ends()
	if err := eventually(d, func() error {
		if got := w.committed(); !itest.EqualOffsets(got, ends) {
			return fmt.Errorf("committed %v, log ends %v", got, ends)
		}
		return nil
	}); err != nil {
		w.t.Fatal(err)
	}
}

// committed is the group's committed offsets of the topic. With a broker
// down a request may go to it (the client's cached coordinator or
// leader) and fail: it is asked again, for up to a minute.
func (w *loadWorld) committed() map[int32]int64 {
	w.t.Helper()
	out := map[int32]int64{}
	err := eventually(time.Minute, func() error {
		resp, err := w.adm.FetchOffsets(context.Background(), w.group)
		if errors.Is(err, kerr.GroupIDNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		resp.Each(func(o kadm.OffsetResponse) {
			if o.Topic == w.topic && o.Err == nil {
				out[o.Partition] = o.At
			}
		})
		return nil
	})
	if err != nil {
		w.t.Fatalf("committed offsets of %s: %v", w.group, err)
	}
	return out
}

// ends is the topic's log end offsets, asked again like committed.
func (w *loadWorld) ends() map[int32]int64 {
	w.t.Helper()
	out := map[int32]int64{}
	err := eventually(time.Minute, func() error {
		resp, err := w.adm.ListEndOffsets(context.Background(), w.topic)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return err
		}
		resp.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return nil
	})
	if err != nil {
		w.t.Fatalf("end offsets of %s: %v", w.topic, err)
	}
	return out
}

func (w *loadWorld) committedTotal() int64 {
	w.t.Helper()
	return total(w.committed())
}

// total sums offsets per partition.
func total(offs map[int32]int64) int64 {
	var sum int64
	for _, c := range offs {
		sum += c
	}
	return sum
}

func (w *loadWorld) fetches(on bool, members ...string) {
	w.t.Helper()
	verb := "STOP"
	if on {
		verb = "START"
	}
	for _, m := range members {
		if err := w.conns[m].Exec(context.Background(), fmt.Sprintf("SYSTEM %s FETCHES %s.orders_local", verb, w.db)); err != nil {
			w.t.Fatalf("%s: %s fetches: %v", m, verb, err)
		}
	}
}

func (w *loadWorld) localCount(m string) uint64 {
	w.t.Helper()
	var n uint64
	if err := w.conns[m].QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM %s.orders_local", w.db)).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", m, err)
	}
	return n
}

// exactlyOnce waits until both replicas of each shard hold the same rows,
// then asserts that the shards together hold every offset of the topic
// once, each partition on its own shard only.
func (w *loadWorld) exactlyOnce() {
	w.t.Helper()
	w.exactlyOnceWith(0)
}

// exactlyOnceWith is exactlyOnce for a topic of which poison records are
// not rows (they are dead letters, which `sluice audit` checks).
func (w *loadWorld) exactlyOnceWith(poison int) {
	w.t.Helper()
	ends := w.ends()
	want := -uint64(poison)
	for _, e := range ends {
		want += uint64(e)
	}
	if err := eventually(2*time.Minute, func() error {
		for s := range shards {
			if a, b := w.localCount(member(s, 0)), w.localCount(member(s, 1)); a != b {
				return fmt.Errorf("shard %d: replicas hold %d and %d rows", s+1, a, b)
			}
		}
		return nil
	}); err != nil {
		w.t.Fatal(err)
	}
	var rows, distinct, misplaced uint64
	for s := range shards {
		var n, d, off uint64
		q := fmt.Sprintf("SELECT count(), uniqExact(_partition, _offset), countIf(_partition %% %d != %d) FROM %s.orders_local WHERE _topic = ?", len(shards), s, w.db)
		if err := w.conns[member(s, 0)].QueryRow(context.Background(), q, w.topic).Scan(&n, &d, &off); err != nil {
			w.t.Fatal(err)
		}
		rows, distinct, misplaced = rows+n, distinct+d, misplaced+off
	}
	if rows != want || distinct != want || misplaced != 0 {
		w.t.Fatalf("the shards hold %d rows, %d distinct offsets, %d on the wrong shard; want %d, %d, 0", rows, distinct, misplaced, want, want)
	}
	// Readers see the same through the Distributed table.
	var dist uint64
	if err := w.conns["s2r2"].QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM %s.orders WHERE _topic = ?", w.db), w.topic).Scan(&dist); err != nil {
		w.t.Fatal(err)
	}
	if dist != want {
		w.t.Fatalf("the Distributed table shows %d rows, want %d", dist, want)
	}
}

// TestStoredOffsetsAreReadFromACaughtUpReplica: a member loads through the
// first replica of each shard while the second ones fetch nothing, and
// crashes before its commits (the group's offsets are set back to the log
// start). The next owner prefers the second replicas, which lack every
// row: its stored-offsets read must wait until they have fetched what the
// replication log names, and then load nothing twice. A read that trusted
// the lagging replica would load every row again (different
// _ingested_at, so block deduplication would not save it).
func TestStoredOffsetsAreReadFromACaughtUpReplica(t *testing.T) {
	w := newLoadWorld(t, 4)
	const n = 4000
	w.produce(n)
	w.fetches(false, "s1r2", "s2r2")
	a := w.start(w.config([][]int{{0, 1}, {0, 1}}, 500))
	w.waitCommitted(2 * time.Minute)
	a.Stop(t)
	for _, m := range []string{"s1r2", "s2r2"} {
		if c := w.localCount(m); c != 0 {
			t.Fatalf("%s holds %d rows with its fetches stopped: the lag this test needs is not there", m, c)
		}
	}
	// As if the first member had crashed after its INSERTs, before its
	// commits: the group starts again from the log start.
	zero := kadm.Offsets{}
	for p := range int32(w.partitions) {
		zero.Add(kadm.Offset{Topic: w.topic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	if _, err := w.adm.CommitOffsets(context.Background(), w.group, zero); err != nil {
		t.Fatal(err)
	}
	b := w.start(w.config([][]int{{1, 0}, {1, 0}}, 500))
	// While the preferred replicas lag, nothing may be read as final:
	// the group's offsets stay at the start.
	time.Sleep(5 * time.Second)
	for p, off := range w.committed() {
		if off != 0 {
			t.Fatalf("partition %d committed to %d while its stored offsets could not be read from a caught-up replica", p, off)
		}
	}
	w.fetches(true, "s1r2", "s2r2")
	w.waitCommitted(2 * time.Minute)
	b.Stop(t)
	w.exactlyOnce()
	w.audit()
}

// TestReplicaKilledMidLoad: the replica that takes a shard's writes is
// killed with SIGKILL while one of Sluice's INSERTs runs on it, and
// restarted 10 s later. The shard's other replica takes the writes
// meanwhile; what the killed one had committed but not yet handed over
// keeps the reads waiting until it is back. Nothing is lost or stored
// twice.
func TestReplicaKilledMidLoad(t *testing.T) {
	w := newLoadWorld(t, 4)
	const n = 40000
	w.produce(n)
	pid := memberPid(t, "s1r1")
	r := w.start(w.config([][]int{{0, 1}, {0, 1}}, 500))
	if err := eventually(2*time.Minute, func() error {
		if c := w.localCount("s1r1"); c < 4000 {
			return fmt.Errorf("s1r1 holds %d rows", c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The kill follows the sight of an INSERT of ours in the server's
	// process list at once, from this process (a script would start too
	// late): it lands while the INSERT runs, or within the microseconds
	// after one that was about to end.
	running := fmt.Sprintf("SELECT count(), any(query_id) FROM system.processes WHERE startsWith(query, 'INSERT INTO `%s`.`orders_local`')", w.db)
	deadline := time.Now().Add(time.Minute)
	for {
		var inserts uint64
		var id string
		if err := w.conns["s1r1"].QueryRow(context.Background(), running).Scan(&inserts, &id); err != nil {
			t.Fatal(err)
		}
		if inserts > 0 {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			t.Logf("s1r1 (pid %d) killed with INSERT %s running", pid, id)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no INSERT seen running on s1r1 in a minute of load")
		}
	}
	before := w.committedTotal()
	if before >= n {
		t.Fatalf("everything was committed (%d) before the kill: the fault did not hit a load", before)
	}
	time.Sleep(10 * time.Second)
	// More load while it is down, through the other replica.
	w.produce(4000)
	t.Logf("committed %d of %d at the kill, %d before the restart", before, n, w.committedTotal())
	runScript(t, "restart", "s1r1")
	w.waitCommitted(4 * time.Minute)
	r.Stop(t)
	w.exactlyOnce()
	w.audit()
}

// TestMigrateOnCluster: `sluice migrate` with clickhouse.cluster creates, on
// every server, each table as a replicated local table and a Distributed
// one over it, and the views; a second run changes nothing.
func TestMigrateOnCluster(t *testing.T) {
	w := newLoadWorld(t, 1) // its own database, migrated by the library
	w.config([][]int{{0, 1}, {0, 1}}, 500)
	db := "mig_" + suffix()
	// The same config, another database: the command creates it.
	raw, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "migrate.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(raw), "database: "+w.db, "database: "+db, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	w.buildSluice()
	t.Cleanup(func() {
		if !t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			_ = w.conns["s1r1"].Exec(ctx, "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+clusterName)
		}
	})
	for run := 1; run <= 2; run++ {
		out, err := exec.Command(binary, "migrate", "-c", path).CombinedOutput()
		if err != nil {
			t.Fatalf("sluice migrate (run %d): %v\n%s", run, err, out)
		}
	}
	want := map[string]string{
		"orders_local": "ReplicatedMergeTree", "payments_local": "ReplicatedMergeTree", "shipments_local": "ReplicatedMergeTree",
		"orders": "Distributed", "payments": "Distributed", "shipments": "Distributed",
		"orders_per_minute": "View", "payment_success_rate": "View",
	}
	for m, conn := range w.conns {
		rows, err := conn.Query(context.Background(), "SELECT name, engine FROM system.tables WHERE database = ?", db)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rows.Next() {
			var name, engine string
			if err := rows.Scan(&name, &engine); err != nil {
				t.Fatal(err)
			}
			got[name] = engine
		}
		rows.Close()
		for name, engine := range want {
			if got[name] != engine {
				t.Errorf("%s: %s.%s is %q, want %s (tables: %v)", m, db, name, got[name], engine, got)
			}
		}
	}
	// The views answer through the Distributed tables on any server.
	var n uint64
	if err := w.conns["s2r2"].QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM %s.orders_per_minute", db)).Scan(&n); err != nil {
		t.Fatalf("orders_per_minute: %v", err)
	}
}
