//go:build cluster

// Package cluster is the smoke test of the cluster test bed that
// `make up-cluster` starts (integration/cluster.sh): a three-broker KRaft
// Kafka and a ClickHouse cluster of two shards x two replicas coordinated by
// ZooKeeper. It checks that the bed is what the cluster tests of issue 10
// assume: topics replicated three times with every replica in sync, writes
// and reads through franz-go, ReplicatedMergeTree tables created ON CLUSTER
// that copy an insert to the other replica of its shard, a Distributed table
// that reads both shards from any server, and a replica killed with SIGKILL
// that catches up after its restart through the script. A member that is
// down fails the test; nothing skips.
//
// Addresses come from $SLUICE_STATE_DIR/cluster/env (make test-cluster
// sources it): SLUICE_CLUSTER_KAFKA_BROKERS, SLUICE_CLUSTER_CLICKHOUSE_SHARDS
// (shards separated by ';', replicas by ','; the replica at position R of
// shard S is the script's member sSrR) and SLUICE_CLUSTER_SCRIPT; unset, the
// bed's fixed ports and ../cluster.sh.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var (
	brokers = strings.Split(env("SLUICE_CLUSTER_KAFKA_BROKERS", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"), ",")
	shards  = parseShards(env("SLUICE_CLUSTER_CLICKHOUSE_SHARDS", "127.0.0.1:19001,127.0.0.1:19002;127.0.0.1:19003,127.0.0.1:19004"))
	script  = env("SLUICE_CLUSTER_SCRIPT", "../cluster.sh")
)

const clusterName = "sluice"

func parseShards(s string) [][]string {
	var out [][]string
	for _, sh := range strings.Split(s, ";") {
		out = append(out, strings.Split(sh, ","))
	}
	return out
}

func suffix() string {
	return fmt.Sprintf("%d_%04d", time.Now().Unix()%1_000_000, rand.IntN(10000))
}

// runScript runs integration/cluster.sh with args and fails the test when it
// exits non-zero.
func runScript(t *testing.T, args ...string) {
	t.Helper()
	path, err := filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	out, err := exec.Command(path, args...).CombinedOutput()
	t.Logf("cluster.sh %s (%v):\n%s", strings.Join(args, " "), time.Since(t0).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("cluster.sh %s: %v", strings.Join(args, " "), err)
	}
}

// eventually calls f every 200 ms until it returns nil or d has passed, and
// returns its last error.
// memberPid is the pid of a running member of the bed (cluster.sh pid).
func memberPid(t *testing.T, m string) int {
	t.Helper()
	path, err := filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "pid", m).Output()
	if err != nil {
		t.Fatalf("cluster.sh pid %s: %v", m, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("cluster.sh pid %s printed %q", m, out)
	}
	return pid
}

func eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestKafkaThreeBrokers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// Every seed is a broker of one cluster of three.
	for _, b := range brokers {
		one, err := kgo.NewClient(kgo.SeedBrokers(b))
		if err != nil {
			t.Fatal(err)
		}
		md, err := kadm.NewClient(one).BrokerMetadata(ctx)
		one.Close()
		if err != nil {
			t.Fatalf("broker %s (run `make up-cluster`): %v", b, err)
		}
		if len(md.Brokers) != 3 {
			t.Fatalf("broker %s knows %d brokers, want 3: %v", b, len(md.Brokers), md.Brokers.NodeIDs())
		}
	}

	// And each of the three answers: a broker killed less than its
	// session timeout (9 s) ago is still in the metadata, and a topic
	// created then starts with it in every ISR.
	vctx, vcancel := context.WithTimeout(ctx, 10*time.Second)
	vs, err := adm.ApiVersions(vctx)
	vcancel()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Sorted() {
		if v.Err != nil {
			t.Fatalf("broker %d does not answer: %v", v.NodeID, v.Err)
		}
	}

	topic := "cluster_smoke_" + suffix()
	const partitions = 6
	resp, err := adm.CreateTopics(ctx, partitions, 3, nil, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("create topic %s with RF 3: %v", topic, err)
	}
	defer func() { _, _ = adm.DeleteTopics(context.Background(), topic) }()

	// Each partition: three replicas on three distinct brokers, all in sync.
	inSync := func() error {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		d := td[topic]
		if d.Err != nil {
			return d.Err
		}
		if len(d.Partitions) != partitions {
			return fmt.Errorf("%d partitions, want %d", len(d.Partitions), partitions)
		}
		for _, p := range d.Partitions.Sorted() {
			reps := slices.Clone(p.Replicas)
			slices.Sort(reps)
			if len(slices.Compact(reps)) != 3 {
				return fmt.Errorf("partition %d: replicas %v, want 3 distinct brokers", p.Partition, p.Replicas)
			}
			if len(p.ISR) != 3 {
				return fmt.Errorf("partition %d: in-sync replicas %v of %v, want 3", p.Partition, p.ISR, p.Replicas)
			}
			if p.Err != nil {
				return fmt.Errorf("partition %d: %w", p.Partition, p.Err)
			}
		}
		return nil
	}
	if err := eventually(30*time.Second, inSync); err != nil {
		t.Fatalf("topic %s: %v", topic, err)
	}

	// min.insync.replicas 2 is the brokers' default, seen on the topic.
	// The broker that answers may not have the new topic in its metadata
	// yet (each learns it from the controller on its own): it says
	// UNKNOWN_TOPIC_OR_PARTITION until it has.
	var rc kadm.ResourceConfig
	if err := eventually(10*time.Second, func() error {
		cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return err
		}
		if rc, err = cfgs.On(topic, nil); err == nil {
			err = rc.Err
		}
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Fatal(err)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" && c.MaybeValue() != "2" {
			t.Fatalf("min.insync.replicas = %q, want 2", c.MaybeValue())
		}
	}

	// Produce with acks=all (franz-go's default) and read everything back.
	const n = 3000
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%97)), Value: []byte(fmt.Sprintf("v%05d", i))}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", n, err)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	perPartition := map[int32]int{}
	for len(seen) < n && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 && ctx.Err() == nil {
			t.Fatalf("fetch: %v", errs)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)] = true
			perPartition[r.Partition]++
		})
	}
	if len(seen) != n {
		t.Fatalf("consumed %d distinct records, want %d", len(seen), n)
	}
	if len(perPartition) != partitions {
		t.Fatalf("records in %d partitions, want all %d: %v", len(perPartition), partitions, perPartition)
	}
	// The records are on every replica: each broker's log of each
	// partition has grown, and every replica is still in sync.
	err = eventually(30*time.Second, func() error {
		set := kadm.TopicsSet{}
		for p := int32(0); p < partitions; p++ {
			set.Add(topic, p)
		}
		dirs, err := adm.DescribeAllLogDirs(ctx, set)
		if err != nil {
			return err
		}
		for _, id := range []int32{1, 2, 3} {
			for p := int32(0); p < partitions; p++ {
				var size int64 = -1
				dirs[id].Each(func(d kadm.DescribedLogDir) {
					if lp, ok := d.Topics[topic][p]; ok {
						size = lp.Size
					}
				})
				if size <= 0 {
					return fmt.Errorf("broker %d: partition %d has log size %d", id, p, size)
				}
			}
		}
		return inSync()
	})
	if err != nil {
		t.Fatalf("topic %s after %d records: %v", topic, n, err)
	}
	t.Logf("topic %s: %d partitions x 3 in-sync replicas; %d records produced (acks=all) and consumed, per partition %v", topic, partitions, n, perPartition)
}

// server is one ClickHouse server of the bed.
type server struct {
	name string // the script's member name, sSrR
	addr string
	conn driver.Conn
}

func openServer(t *testing.T, name, addr string) *server {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: "default", Username: "default"},
		Protocol:    clickhouse.Native,
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		t.Fatalf("ClickHouse %s at %s (run `make up-cluster`): %v", name, addr, err)
	}
	return &server{name: name, addr: addr, conn: conn}
}

// count is count() and sum(id) of table on s.
func (s *server) count(ctx context.Context, table string) (n, sum uint64, err error) {
	err = s.conn.QueryRow(ctx, "SELECT count(), sum(id) FROM "+table).Scan(&n, &sum)
	return n, sum, err
}

// wantRows waits up to d for table on s to hold n rows whose ids add up to sum.
func (s *server) wantRows(t *testing.T, table string, n, sum uint64, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	var gotN, gotSum uint64
	err := eventually(d, func() error {
		var err error
		gotN, gotSum, err = s.count(ctx, table)
		if err != nil {
			return err
		}
		if gotN != n || gotSum != sum {
			return fmt.Errorf("%d rows, sum(id) %d", gotN, gotSum)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s (%s) %s: want %d rows with sum(id) %d within %v; last: %v", s.name, s.addr, table, n, sum, d, err)
	}
}

// idSum is the sum of the ids from..to-1.
func idSum(from, to uint64) uint64 { return (from + to - 1) * (to - from) / 2 }

func TestClickHouseTwoShardsTwoReplicas(t *testing.T) {
	if len(shards) != 2 || len(shards[0]) != 2 || len(shards[1]) != 2 {
		t.Fatalf("SLUICE_CLUSTER_CLICKHOUSE_SHARDS: want 2 shards of 2 replicas, got %v", shards)
	}
	var all []*server
	srv := map[string]*server{}
	for si, sh := range shards {
		for ri, addr := range sh {
			s := openServer(t, fmt.Sprintf("s%dr%d", si+1, ri+1), addr)
			t.Cleanup(func() { s.conn.Close() })
			all = append(all, s)
			srv[s.name] = s
		}
	}
	ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{
		// Fail an ON CLUSTER query within a minute when a server does not
		// run it (18.16's default waits three). 120 arrives as 60: 18.16
		// reads its Int64 settings as zigzag varints, clickhouse-go sends
		// plain ones to a server that old (seen in system.settings).
		"distributed_ddl_task_timeout": 120,
	}))

	// Each server: its own macros, and the same cluster of 2 x 2.
	for _, s := range all {
		var shard, replica string
		if err := s.conn.QueryRow(ctx, "SELECT anyIf(substitution, macro = 'shard'), anyIf(substitution, macro = 'replica') FROM system.macros").Scan(&shard, &replica); err != nil {
			t.Fatalf("%s: macros: %v", s.name, err)
		}
		if shard != "0"+s.name[1:2] || replica != s.name {
			t.Fatalf("%s: macros shard=%q replica=%q, want 0%s and %s", s.name, shard, replica, s.name[1:2], s.name)
		}
		var nShards, nReplicas uint64
		if err := s.conn.QueryRow(ctx, "SELECT uniqExact(shard_num), count() FROM system.clusters WHERE cluster = ?", clusterName).Scan(&nShards, &nReplicas); err != nil {
			t.Fatalf("%s: system.clusters: %v", s.name, err)
		}
		if nShards != 2 || nReplicas != 4 {
			t.Fatalf("%s: cluster %s has %d shards and %d replicas, want 2 and 4", s.name, clusterName, nShards, nReplicas)
		}
	}

	db := "cluster_smoke_" + suffix()
	local, dist := db+".events", db+".events_all"
	ddl := func(q string) {
		t.Helper()
		if err := srv["s1r1"].conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ddl("CREATE DATABASE " + db + " ON CLUSTER " + clusterName)
	t.Cleanup(func() {
		// The tables first, each ON CLUSTER, then the database.
		for _, q := range []string{
			"DROP TABLE IF EXISTS " + dist + " ON CLUSTER " + clusterName,
			"DROP TABLE IF EXISTS " + local + " ON CLUSTER " + clusterName,
			"DROP DATABASE IF EXISTS " + db + " ON CLUSTER " + clusterName,
		} {
			if err := srv["s1r1"].conn.Exec(ctx, q); err != nil {
				t.Errorf("clean-up: %s: %v", q, err)
			}
		}
	})
	ddl("CREATE TABLE " + local + " ON CLUSTER " + clusterName + ` (id UInt64, origin String)
		ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/` + local + `', '{replica}') ORDER BY id`)
	ddl("CREATE TABLE " + dist + " ON CLUSTER " + clusterName + " AS " + local +
		" ENGINE = Distributed(" + clusterName + ", " + db + ", events, id)")
	for _, s := range all {
		var n uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name IN ('events', 'events_all')", db).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%s: %d of the 2 tables created ON CLUSTER (%v)", s.name, n, err)
		}
		var zkPath string
		if err := s.conn.QueryRow(ctx, "SELECT zookeeper_path FROM system.replicas WHERE database = ? AND table = 'events'", db).Scan(&zkPath); err != nil {
			t.Fatalf("%s: %s is not a replicated table: %v", s.name, local, err)
		}
	}

	insert := func(s *server, from, to uint64) {
		t.Helper()
		q := fmt.Sprintf("INSERT INTO %s SELECT number, '%s' FROM system.numbers WHERE number >= %d LIMIT %d", local, s.name, from, to-from)
		if err := s.conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %s: %v", s.name, q, err)
		}
	}

	// Replication: an insert into s1r1 appears on s1r2, and on no server of
	// shard 2.
	insert(srv["s1r1"], 0, 1000)
	srv["s1r2"].wantRows(t, local, 1000, idSum(0, 1000), 30*time.Second)
	for _, name := range []string{"s2r1", "s2r2"} {
		srv[name].wantRows(t, local, 0, 0, 0)
	}
	// Shard 2 the same way, then the Distributed table reads both shards
	// from each of the four servers.
	insert(srv["s2r1"], 100_000, 100_500)
	srv["s2r2"].wantRows(t, local, 500, idSum(100_000, 100_500), 30*time.Second)
	for _, s := range all {
		s.wantRows(t, dist, 1500, idSum(0, 1000)+idSum(100_000, 100_500), 10*time.Second)
	}

	// A replica crashes (SIGKILL through the script), misses an insert into
	// its shard, and catches up once the script has restarted it.
	killed := false
	t.Cleanup(func() {
		if killed { // leave the bed whole for the next test
			runScript(t, "start", "s1r2")
		}
	})
	runScript(t, "kill9", "s1r2")
	killed = true
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := srv["s1r2"].conn.Ping(pctx); err == nil {
		t.Fatal("s1r2 still answers after cluster.sh kill9 s1r2")
	}
	cancel()
	insert(srv["s1r1"], 1000, 3000)
	srv["s1r1"].wantRows(t, local, 3000, idSum(0, 3000), 0)
	t0 := time.Now()
	runScript(t, "restart", "s1r2")
	killed = false
	srv["s1r2"].wantRows(t, local, 3000, idSum(0, 3000), 60*time.Second)
	t.Logf("s1r2 caught up %v after its restart began", time.Since(t0).Round(time.Millisecond))
	srv["s1r2"].wantRows(t, dist, 3500, idSum(0, 3000)+idSum(100_000, 100_500), 10*time.Second)
}
