package sink

// A sharded, replicated ClickHouse (clickhouse.cluster). Each Kafka
// partition's rows go to one shard's local ReplicatedMergeTree table,
// through the first replica of the shard that answers; readers query a
// Distributed table over the local ones. What the load protocol needs
// from a single server it gets here as follows (docs/DESIGN.md,
// "Replicated and sharded tables"):
//
//   - Stored reads every shard (a partition's rows stay on one shard,
//     but a change of the shard count moves partitions), each from the
//     replica Sluice writes to, and only once that replica has pulled the
//     shared replication log and fetched every part the log names
//     (system.replicas: log_pointer past log_max_index, no insert in its
//     queue). An acknowledged INSERT is in that log, whichever replica
//     took it, so the read sees it; a part the replica cannot fetch (its
//     only holder is down) keeps the read waiting: the partition stalls
//     until it can be proven, it never loads twice.
//   - Running asks every replica that answers for the partition's
//     INSERTs; one that does not answer is left out (its INSERTs end with
//     its connection or its process, or are dropped by block
//     deduplication when resent unchanged: Batch.Ingested).
//   - A replica that fails without a server answer is passed over for
//     replicaBackoff; the next in the shard's list takes the writes.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-etl/sluice/pkg/config"
)

// replicaBackoff is how long a replica that failed without an answer is
// passed over before it is tried again (after a ping).
const replicaBackoff = 5 * time.Second

// Cluster holds a connection to every replica of every shard.
type Cluster struct {
	shards      [][]*Replica
	quorum      int
	syncTimeout time.Duration
	now         func() time.Time
}

// Replica is one server of a shard.
type Replica struct {
	Addr  string
	Shard int
	conn  driver.Conn

	mu        sync.Mutex
	downUntil time.Time
	lastErr   error
}

// OpenCluster connects to every replica of clickhouse.cluster. A replica
// that does not answer is passed over until it does; every shard needs
// one that answers now.
func OpenCluster(ctx context.Context, c config.ClickHouse) (*Cluster, error) {
	cl := &Cluster{quorum: c.Cluster.InsertQuorum, syncTimeout: c.Cluster.SyncTimeout, now: time.Now}
	if cl.syncTimeout <= 0 {
		cl.syncTimeout = 30 * time.Second
	}
	for i, addrs := range c.Cluster.Replicas() {
		var shard []*Replica
		up := 0
		var errs []error
		for _, a := range addrs {
			one := c
			one.Addr = []string{a}
			conn, err := dial(one)
			if err != nil {
				cl.Close()
				return nil, err
			}
			r := &Replica{Addr: a, Shard: i, conn: conn}
			shard = append(shard, r)
			if err := r.ping(ctx, c.DialTimeout+time.Second); err != nil {
				r.fail(err, cl.now())
				errs = append(errs, err)
				continue
			}
			up++
		}
		cl.shards = append(cl.shards, shard)
		if up == 0 {
			cl.Close()
			return nil, fmt.Errorf("sink: no replica of shard %d answers: %w", i, errors.Join(errs...))
		}
	}
	if len(cl.shards) == 0 {
		return nil, errors.New("sink: clickhouse.cluster lists no shard")
	}
	return cl, nil
}

// Close closes every replica's connection.
func (c *Cluster) Close() {
	for _, s := range c.shards {
		for _, r := range s {
			_ = r.conn.Close()
		}
	}
}

// Shards is the number of shards.
func (c *Cluster) Shards() int { return len(c.shards) }

// ShardOf is the shard a Kafka partition's rows go to.
func (c *Cluster) ShardOf(partition int32) int {
	return int(partition) % len(c.shards)
}

// Writer is the replica of the shard that takes its writes now: the first
// in the configured order that is not passed over. A replica whose pause
// is over is pinged first. With none up, the one whose pause ends first
// is tried anyway (its error tells the caller why).
func (c *Cluster) Writer(ctx context.Context, shard int) *Replica {
	now := c.now()
	rs := c.shards[shard]
	for _, r := range rs {
		r.mu.Lock()
		down, was := now.Before(r.downUntil), !r.downUntil.IsZero()
		r.mu.Unlock()
		if down {
			continue
		}
		if was {
			if err := r.ping(ctx, 2*time.Second); err != nil {
				r.fail(err, c.now())
				continue
			}
			r.mu.Lock()
			r.downUntil, r.lastErr = time.Time{}, nil
			r.mu.Unlock()
		}
		return r
	}
	first := rs[0]
	for _, r := range rs[1:] {
		if r.until().Before(first.until()) {
			first = r
		}
	}
	return first
}

func (r *Replica) until() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.downUntil
}

func (r *Replica) ping(ctx context.Context, d time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := r.conn.Ping(pctx); err != nil {
		return fmt.Errorf("sink: replica %s of shard %d: %w", r.Addr, r.Shard, err)
	}
	return nil
}

// fail passes the replica over for replicaBackoff when err is not the
// server's answer (a refused or cut connection, a timeout): the next one
// of its shard takes the writes meanwhile.
func (r *Replica) fail(err error, now time.Time) {
	if err == nil || errors.Is(err, context.Canceled) || (answered(err) && !unusable(err)) {
		return
	}
	r.mu.Lock()
	r.downUntil, r.lastErr = now.Add(replicaBackoff), err
	r.mu.Unlock()
}

// answered says whether the server answered (an exception): the replica
// is up, whatever the error says.
func answered(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex)
}

// unusable says whether the server's answer makes it useless for now:
// its table is read-only (242, no ZooKeeper session: after a restart it
// waits for its previous session to expire) or it cannot reach ZooKeeper
// (999), or caughtUp found it so.
func unusable(err error) bool {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && (ex.Code == 242 || ex.Code == 999) {
		return true
	}
	return errors.Is(err, errReplicaUnusable)
}

// settings is what every INSERT into the cluster carries.
func (c *Cluster) settings() clickhouse.Settings {
	if c.quorum > 0 {
		return clickhouse.Settings{"insert_quorum": c.quorum}
	}
	return nil
}

// NewClusterTable is NewTable for the local table on every shard: the
// columns are read from shard 0, and every shard's writer must hold the
// table, replicated wherever the shard has more than one replica (a plain
// MergeTree on two replicas would be two tables that do not know of each
// other's rows).
func NewClusterTable(ctx context.Context, cl *Cluster, db, table string, insertTimeout time.Duration) (*Table, error) {
	t, err := NewTable(ctx, cl.Writer(ctx, 0).conn, db, table, insertTimeout)
	if err != nil {
		return nil, err
	}
	for i, rs := range cl.shards {
		w := cl.Writer(ctx, i)
		var engine string
		if err := w.conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&engine); err != nil {
			w.fail(err, cl.now())
			if answered(err) || errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("sink: table %s.%s does not exist on shard %d (%s): run sluice migrate", db, table, i, w.Addr)
			}
			return nil, fmt.Errorf("sink: table %s.%s on shard %d (%s): %w", db, table, i, w.Addr, err)
		}
		if !strings.HasSuffix(engine, "MergeTree") {
			t.prewhere.Store(false) // the stored read goes to every shard
		}
		if len(rs) > 1 && !strings.HasPrefix(engine, "Replicated") {
			return nil, fmt.Errorf("sink: table %s.%s on shard %d is %s: a shard of %d replicas needs a Replicated*MergeTree table (run sluice migrate)", db, table, i, engine, len(rs))
		}
	}
	t.cluster = cl
	t.syncs = make(map[*Replica]*syncPoint)
	for _, rs := range cl.shards {
		for _, r := range rs {
			t.syncs[r] = &syncPoint{}
		}
	}
	return t, nil
}

// storedCluster is Stored over every shard (readShards).
func (t *Table) storedCluster(ctx context.Context, topic string, partition int32, topicID string, from, to int64) ([]int64, int, error) {
	var all []int64
	foreign := 0
	err := t.readShards(ctx, func(conn driver.Conn) error {
		offs, f, err := t.storedOn(ctx, conn, topic, partition, topicID, from, to)
		all, foreign = append(all, offs...), foreign+f
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if len(t.cluster.shards) > 1 {
		slices.Sort(all)
	}
	return all, foreign, nil
}

// highestCluster is Highest over every shard (readShards).
func (t *Table) highestCluster(ctx context.Context, topic string, partition int32, topicID string, after int64) (int64, int, error) {
	highest, foreign := int64(-1), 0
	err := t.readShards(ctx, func(conn driver.Conn) error {
		h, f, err := t.highestOn(ctx, conn, topic, partition, topicID, after)
		highest, foreign = max(highest, h), foreign+f
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return highest, foreign, nil
}

// readShards runs read on each shard's writer once the writer is known to
// hold every part committed before the call; a failure marks the replica
// failed and ends the walk.
func (t *Table) readShards(ctx context.Context, read func(conn driver.Conn) error) error {
	after := time.Now()
	for s := range t.cluster.shards {
		r := t.cluster.Writer(ctx, s)
		if err := t.syncs[r].await(ctx, after, func(ctx context.Context) error { return t.caughtUp(ctx, r) }); err != nil {
			r.fail(err, t.cluster.now())
			return err
		}
		if err := read(r.conn); err != nil {
			r.fail(err, t.cluster.now())
			return fmt.Errorf("%w (replica %s of shard %d)", err, r.Addr, r.Shard)
		}
	}
	return nil
}

// ErrReplicaBehind says a replica has not fetched every part of the table
// that the replication log names within clickhouse.cluster.sync_timeout.
var ErrReplicaBehind = errors.New("replica behind its replication log")

// caughtUp waits until the replica holds every part that the table's
// replication log named when the wait began. It reads ZooKeeper (through
// system.zookeeper), in this order: the log's highest entry M, then the
// replica's log_pointer P (the next entry it will copy into its queue),
// then the replica's queue. The replica moves entries from the log into
// its queue and advances P in one ZooKeeper transaction, and removes a
// fetch from the queue only once the part is in its table; so P > M (or
// an empty log) and no fetch ("get") in the queue read after it mean that
// every part logged before the wait is readable there. Every acknowledged
// INSERT into any replica is in that log. system.replicas is not enough:
// it reads the queue from memory before it reads P from ZooKeeper, and an
// empty log looks like a log of one entry. A table that is not
// replicated has nothing to wait for.
func (t *Table) caughtUp(ctx context.Context, r *Replica) error {
	return t.cluster.caughtUp(ctx, r, t.db, t.name)
}

func (c *Cluster) caughtUp(ctx context.Context, r *Replica, db, table string) error {
	var zkPath, replicaPath string
	var readonly, expired uint8
	err := r.conn.QueryRow(ctx, `SELECT zookeeper_path, replica_path, toUInt8(is_readonly), toUInt8(is_session_expired)
		FROM system.replicas WHERE database = ? AND table = ?`, db, table).Scan(&zkPath, &replicaPath, &readonly, &expired)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("sink: replica %s of shard %d, table %s: replication state: %w", r.Addr, r.Shard, table, err)
	case readonly != 0 || expired != 0:
		// Without ZooKeeper the replica cannot say what the log holds.
		return fmt.Errorf("sink: replica %s of shard %d, table %s: read-only (no ZooKeeper session): %w", r.Addr, r.Shard, table, errReplicaUnusable)
	}
	ctx, cancel := context.WithTimeout(ctx, c.syncTimeout)
	defer cancel()
	wait := 20 * time.Millisecond
	var last string
	for {
		behind, state, err := logState(ctx, r.conn, zkPath, replicaPath)
		if err != nil {
			if ctx.Err() != nil && last != "" {
				err = fmt.Errorf("%w after %s (%s)", ErrReplicaBehind, c.syncTimeout, last)
			}
			return fmt.Errorf("sink: replica %s of shard %d, table %s: %w", r.Addr, r.Shard, table, err)
		}
		if !behind {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("sink: replica %s of shard %d, table %s: %w after %s (%s)", r.Addr, r.Shard, table, ErrReplicaBehind, c.syncTimeout, last)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// logState reads, in order, the log's highest entry, the replica's log
// pointer and the fetches in its queue (caughtUp).
func logState(ctx context.Context, conn driver.Conn, zkPath, replicaPath string) (behind bool, state string, err error) {
	var entries uint64
	var maxEntry int64
	// Entries are named log-0000000042.
	if err := conn.QueryRow(ctx, `SELECT count(), toInt64(max(toUInt64OrZero(substring(name, 5)))) FROM system.zookeeper WHERE path = ?`,
		zkPath+"/log").Scan(&entries, &maxEntry); err != nil {
		return false, "", fmt.Errorf("replication log: %w", err)
	}
	var pointer string
	if err := conn.QueryRow(ctx, `SELECT value FROM system.zookeeper WHERE path = ? AND name = 'log_pointer'`,
		replicaPath).Scan(&pointer); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, "", fmt.Errorf("log pointer: %w", err)
	}
	p, _ := strconv.ParseInt(strings.TrimSpace(pointer), 10, 64)
	var fetches uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM system.zookeeper WHERE path = ? AND position(value, '\nget\n') > 0`,
		replicaPath+"/queue").Scan(&fetches); err != nil {
		return false, "", fmt.Errorf("replication queue: %w", err)
	}
	copied := entries == 0 || p > maxEntry
	state = fmt.Sprintf("log pointer %d, last log entry %d, %d parts to fetch", p, maxEntry, fetches)
	return !copied || fetches > 0, state, nil
}

// AwaitCaughtUp waits until every replica of the table that answers
// holds every part its shard's replication log named when the call began
// (caughtUp), so that a read through the Distributed table, whichever
// replica of a shard serves it, sees every INSERT acknowledged before.
// `sluice audit` calls it after reading the committed offsets.
func (c *Cluster) AwaitCaughtUp(ctx context.Context, db, table string) error {
	for s, rs := range c.shards {
		answered := 0
		var errs []error
		for _, r := range rs {
			if err := r.ping(ctx, 2*time.Second); err != nil {
				errs = append(errs, err)
				continue
			}
			answered++
			if err := c.caughtUp(ctx, r, db, table); err != nil {
				return err
			}
		}
		if answered == 0 {
			return fmt.Errorf("sink: no replica of shard %d answers: %w", s, errors.Join(errs...))
		}
	}
	return nil
}

// errReplicaUnusable is an answer that makes the replica useless for now:
// it is passed over like one that does not answer.
var errReplicaUnusable = errors.New("replica unusable")

// runningCluster is Running on every replica that answers; a shard none
// of whose replicas answers is an error.
func (t *Table) runningCluster(ctx context.Context, topic string, partition int32, kill bool) (int, error) {
	n := 0
	for s, rs := range t.cluster.shards {
		var errs []error
		for _, r := range rs {
			c, err := t.runningOn(ctx, r.conn, topic, partition, kill)
			if err != nil {
				r.fail(err, t.cluster.now())
				errs = append(errs, fmt.Errorf("%w (replica %s)", err, r.Addr))
				continue
			}
			n += c
		}
		if len(errs) == len(rs) {
			return 0, fmt.Errorf("sink: no replica of shard %d answers: %w", s, errors.Join(errs...))
		}
	}
	return n, nil
}

// syncPoint shares a replica's catch-up checks between the partitions
// that read from it: a read needs a check that started after it was
// asked for (after its fence), and one check serves every read that
// waits for it.
type syncPoint struct {
	mu  sync.Mutex
	ok  time.Time // start of the latest check that found the replica caught up
	run *syncRun
}

type syncRun struct {
	start time.Time
	done  chan struct{}
	err   error
}

func (p *syncPoint) await(ctx context.Context, after time.Time, check func(context.Context) error) error {
	for {
		p.mu.Lock()
		if !p.ok.Before(after) {
			p.mu.Unlock()
			return nil
		}
		run := p.run
		if run == nil {
			run = &syncRun{start: time.Now(), done: make(chan struct{})}
			p.run = run
			p.mu.Unlock()
			run.err = check(ctx)
			p.mu.Lock()
			if run.err == nil && run.start.After(p.ok) {
				p.ok = run.start
			}
			p.run = nil
			p.mu.Unlock()
			close(run.done)
			if run.err != nil {
				return run.err
			}
			continue
		}
		p.mu.Unlock()
		select {
		case <-run.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if run.err != nil && !run.start.Before(after) && !errors.Is(run.err, context.Canceled) {
			return run.err
		}
	}
}

// Shards is the number of shards the table is on (1 without a cluster).
func (t *Table) Shards() int {
	if t.cluster == nil {
		return 1
	}
	return t.cluster.Shards()
}

// ShardOf is the shard a partition's rows go to (0 without a cluster).
func (t *Table) ShardOf(partition int32) int {
	if t.cluster == nil {
		return 0
	}
	return t.cluster.ShardOf(partition)
}
