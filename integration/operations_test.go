//go:build integration

package integration

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/audit"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/service"
)

// opsConfig writes a config for the sluice binary: one orders pipeline on
// topic, group group, with kafkaExtra lines under kafka: and top-level
// lines in top.
func (w *world) opsConfig(group, topic, kafkaExtra, top string) string {
	w.t.Helper()
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
%s
clickhouse:
  addr: [%s]
  database: %s
admin:
  listen: ""
log:
  level: info
batch:
  max_wait: 200ms
%s
pipelines:
  - {name: orders, topic: %s, schema: %s, table: orders, transforms: [order_items]}
`, strings.Join(brokers, ","), group, w.name("dlq"), kafkaExtra, clickhouse, w.db, top, topic,
		filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"))
	path := filepath.Join(w.t.TempDir(), group+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// term sends SIGTERM and returns the exit code within d.
func (p *sluiceProc) term(d time.Duration) int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(d)
}

// TestShutdownIsBoundedWhileTheGroupWaitsForADeadMember: after a member is
// killed with SIGKILL and another joins, the group's rebalance waits for
// the dead member until its session times out. A member stopped with
// SIGTERM meanwhile must still exit within its shutdown_timeout, not when
// the group is done waiting.
func TestShutdownIsBoundedWhileTheGroupWaitsForADeadMember(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_bound")
	w.createTopic(topic, 4)
	w.produceSpreadOrders(topic, 400, time.Minute)
	group := w.name("g_bound")
	cfg := w.opsConfig(group, topic, "  session_timeout: 30s\n  rebalance_timeout: 30s", "shutdown_timeout: 3s")

	a := startSluiceBinary(t, "run", "-c", cfg)
	b := startSluiceBinary(t, "run", "-c", cfg)
	a.waitLog("partitions assigned", 30*time.Second)
	b.waitLog("partitions assigned", 30*time.Second)
	w.waitCommitted(group, topic, 60*time.Second)

	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	b.wait(10 * time.Second)
	c := startSluiceBinary(t, "run", "-c", cfg)
	c.waitLog("consuming", 30*time.Second)
	// a hears of the rebalance at its next heartbeat (every 3 s) and
	// rejoins; its join is then parked, waiting for b.
	time.Sleep(6 * time.Second)

	start := time.Now()
	if code := a.term(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, a.log())
	}
	if d := time.Since(start); d > 4500*time.Millisecond {
		t.Fatalf("exited %v after SIGTERM with shutdown_timeout 3s; log:\n%s", d.Round(100*time.Millisecond), a.log())
	}
	c.term(60 * time.Second)
}

// TestStaticMembersRestartWithoutARebalance: with kafka.instance_id, a
// member restarted within the session timeout takes its partitions back
// without a rebalance: the group's generation stays what it was.
func TestStaticMembersRestartWithoutARebalance(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_static")
	w.createTopic(topic, 4)
	w.produceSpreadOrders(topic, 400, time.Minute)
	group := w.name("g_static")
	cfg := w.opsConfig(group, topic, "  session_timeout: 30s\n  rebalance_timeout: 20s\n  instance_id: "+w.name("pod-a"), "shutdown_timeout: 10s")

	a := startSluiceBinary(t, "run", "-c", cfg)
	a.waitLog("partitions assigned", 30*time.Second)
	w.waitCommitted(group, topic, 60*time.Second)
	before := generations(a.log())
	if code := a.term(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d; log:\n%s", code, a.log())
	}
	a = startSluiceBinary(t, "run", "-c", cfg)
	a.waitLog("partitions assigned", 30*time.Second)
	w.produceSpreadOrders(topic, 400, time.Minute)
	w.waitCommitted(group, topic, 60*time.Second)
	after := generations(a.log())
	if len(before) == 0 || len(after) == 0 || after[0] != before[len(before)-1] {
		t.Errorf("generation before the restart %v, after %v: want the restarted static member back in the same generation", before, after)
	}
	a.term(30 * time.Second)
	w.exactlyOnce(topic)
}

// generations lists the group generations of the "partitions assigned"
// lines of a log, in order.
func generations(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "partitions assigned") {
			continue
		}
		if i := strings.Index(line, "generation="); i >= 0 {
			out = append(out, strings.Fields(line[i+len("generation="):])[0])
		}
	}
	return out
}

// TestOffsetBelowTheLogStart: retention removed records the group had not
// loaded (its committed offset is below the log start). With the default
// kafka.on_offset_out_of_range: stop the partition stops loudly and stays
// stopped, /readyz not ready, nothing loaded; with resume_from_log_start
// it loads from the log start on, and the audit is clean.
func TestOffsetBelowTheLogStart(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_retention")
	w.createTopic(topic, 1)
	w.produceOrders(topic, 5, 200)
	group := w.name("g_retention")
	ctx := context.Background()
	var committed, start kadm.Offsets
	committed.Add(kadm.Offset{Topic: topic, Partition: 0, At: 10, LeaderEpoch: -1})
	if _, err := w.adm.CommitOffsets(ctx, group, committed); err != nil {
		t.Fatal(err)
	}
	start.Add(kadm.Offset{Topic: topic, Partition: 0, At: 100, LeaderEpoch: -1})
	if resp, err := w.adm.DeleteRecords(ctx, start); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}

	cfg := w.sluiceConfig(group, ordersPipeline(topic))
	s := w.startSluice(cfg)
	time.Sleep(6 * time.Second)
	if s.svc.Ready() {
		t.Errorf("ready while the partition's position is out of the log")
	}
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); n != 0 {
		t.Errorf("%d rows loaded from a stopped partition", n)
	}
	if c := w.committed(group, topic)[0]; c != 10 {
		t.Errorf("committed %d, want 10 untouched", c)
	}
	s.stop(t)

	cfg.Kafka.OnOffsetOutOfRange = "resume_from_log_start"
	s = w.startSluice(cfg)
	w.waitCommitted(group, topic, 60*time.Second)
	waitUntil(t, "ready", 10*time.Second, s.svc.Ready)
	s.stop(t)
	if n := w.count(fmt.Sprintf("SELECT uniqExact(_offset) FROM %s.orders WHERE _offset >= 100", w.db)); n != 100 {
		t.Errorf("%d distinct offsets from the log start on, want 100", n)
	}
	if n := w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)); n != 100 {
		t.Errorf("%d rows, want the 100 still in the log", n)
	}
	code, rep, stderr := runAudit(t, filepath.Join(cfg.Dir, "sluice.yaml"))
	if code != 0 || rep == nil {
		t.Fatalf("audit exit %d, report %+v\nstderr: %s", code, rep, stderr)
	}
	// The offsets given up are reported as an accepted gap.
	if gaps := partitionOf(t, rep, 0).AcceptedGaps; !slices.Contains(gaps, audit.Range{From: 10, To: 99}) {
		t.Errorf("accepted gaps %v, want 10-99 among them", gaps)
	}
}

// TestPausedPartitionAssignedBackResumes: a partition that backpressure
// paused (its loads hang behind a dead link) is revoked while paused when
// a second member joins, and assigned back when that member leaves. The
// client still has it paused; the new worker must resume it, or it stalls
// for good while /readyz says ready.
func TestPausedPartitionAssignedBackResumes(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_paused")
	w.createTopic(topic, 2)
	w.produceOrders(topic, 11, 10) // a few first, while the link is up
	px := newProxy(t, clickhouse)
	group := w.name("g_paused")
	small := func(cfg *config.Config) *config.Config {
		setBatch(cfg, func(b *config.Batch) { b.MaxRows, b.MaxBytes = 50, 8<<10 })
		cfg.InflightBytes = 64 << 10
		cfg.ClickHouse.InsertTimeout = 2 * time.Second
		cfg.Kafka.RebalanceTimeout = 8 * time.Second
		return cfg
	}
	cfgA := small(w.sluiceConfig(group, ordersPipeline(topic)))
	cfgA.ClickHouse.Addr = []string{px.Listen}
	a := w.startSluice(cfgA)
	w.waitCommitted(group, topic, 30*time.Second)

	// The link dies: A's loads hang and fail, its partitions fill up and
	// pause.
	px.toxic(t, `{"name":"dead","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)
	w.produceOrders(topic, 12, 2000)
	time.Sleep(5 * time.Second)

	b := w.startSluice(small(w.sluiceConfig(group, ordersPipeline(topic))))
	waitUntil(t, "both members holding partitions", 30*time.Second, func() bool { return membersWithPartitions(t, w.adm, group) == 2 })
	b.stop(t) // its partition goes back to A, still paused in A's client
	waitUntil(t, "one member holding both partitions", 30*time.Second, func() bool { return membersWithPartitions(t, w.adm, group) == 1 })
	w.produceOrders(topic, 13, 400)

	px.heal(t, "dead")
	w.waitCommitted(group, topic, 90*time.Second)
	a.stop(t)
	w.exactlyOnce(topic)
}

// membersWithPartitions counts the group's members that hold partitions.
func membersWithPartitions(t *testing.T, adm *kadm.Client, group string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return 0
	}
	n := 0
	for _, m := range groups[group].Members {
		if as, ok := m.Assigned.AsConsumer(); ok && len(as.Topics) > 0 {
			n++
		}
	}
	return n
}

// joinDelayer is a dialer for a group client whose next JoinGroup request,
// once armed, is held back for delay before it is written: the member
// joins a rebalance too late and is expelled from that round.
type joinDelayer struct {
	armed atomic.Bool
	delay time.Duration
}

func (d *joinDelayer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	return &delayedConn{Conn: c, d: d}, nil
}

type delayedConn struct {
	net.Conn
	d *joinDelayer
}

func (c *delayedConn) Write(p []byte) (int, error) {
	// A request: 4 bytes of length, then the 2-byte API key (11 is
	// JoinGroup).
	if len(p) >= 6 && binary.BigEndian.Uint16(p[4:6]) == 11 && c.d.armed.CompareAndSwap(true, false) {
		time.Sleep(c.d.delay)
	}
	return c.Conn.Write(p)
}

// setBatch changes the batch limits of a loaded config: the global ones
// and those each pipeline inherited from them when the config was read.
func setBatch(cfg *config.Config, f func(*config.Batch)) {
	f(&cfg.Batch)
	for i := range cfg.Pipelines {
		f(&cfg.Pipelines[i].Batch)
	}
}

// logCounter is a slog handler that keeps every record, message and
// attributes (those given by With included), and passes the records at
// or above its next handler's level on to it.
type logCounter struct {
	next  slog.Handler
	mu    *sync.Mutex
	lines *[]logLine
	attrs []slog.Attr
}

type logLine struct {
	msg   string
	attrs map[string]string
}

func newLogCounter(next slog.Handler) logCounter {
	return logCounter{next: next, mu: &sync.Mutex{}, lines: &[]logLine{}}
}

func (h logCounter) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (h logCounter) Handle(ctx context.Context, r slog.Record) error {
	l := logLine{msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		l.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.lines = append(*h.lines, l)
	h.mu.Unlock()
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}
func (h logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return logCounter{next: h.next.WithAttrs(as), mu: h.mu, lines: h.lines, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h logCounter) WithGroup(g string) slog.Handler {
	return logCounter{next: h.next.WithGroup(g), mu: h.mu, lines: h.lines, attrs: h.attrs}
}

// matching returns the records whose message starts with prefix.
func (h logCounter) matching(prefix string) []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logLine
	for _, l := range *h.lines {
		if strings.HasPrefix(l.msg, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func (h logCounter) count(prefix string) int { return len(h.matching(prefix)) }

func (h logCounter) all() []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logLine(nil), *h.lines...)
}

// TestExpelledMemberRejoiningUnderANewIDDoesNotFence: member A holds
// records of both partitions in its batcher when B joins; A's JoinGroup
// is held back past the rebalance timeout, so the round completes without
// A (B takes both partitions and loads them), A's late join is refused and
// A rejoins under a new member ID. franz-go then revokes (not loses) the
// partition A no longer has, and A's flush of it must not fence: the
// coordinator would accept the commit of the new ID for a partition A
// does not own. Everything ends stored once, and A's log shows the flush
// of each partition revoked under the new ID fenced (A's batches are cut
// only on revoke or shutdown, so it holds records of both).
func TestExpelledMemberRejoiningUnderANewIDDoesNotFence(t *testing.T) {
	w := newWorld(t)
	topic := w.name("orders_expelled")
	w.createTopic(topic, 2)
	group := w.name("g_expelled")
	timeouts := func(cfg *config.Config) *config.Config {
		cfg.Kafka.SessionTimeout, cfg.Kafka.RebalanceTimeout = 30*time.Second, 5*time.Second
		return cfg
	}
	// A cuts batches only on revoke or shutdown.
	cfgA := timeouts(w.sluiceConfig(group, ordersPipeline(topic)))
	setBatch(cfgA, func(b *config.Batch) { b.MaxWait, b.MaxRows = time.Hour, 1_000_000 })
	delayer := &joinDelayer{delay: 9 * time.Second}
	logs := newLogCounter(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := service.New(ctx, cfgA, slog.New(logs), service.WithGroupClientOpts(kgo.Dialer(delayer.dial)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(ctx); a.Close() }()
	defer func() {
		cancel()
		<-aDone
	}()
	waitUntil(t, "A holding both partitions", 30*time.Second, func() bool { return membersWithPartitions(t, w.adm, group) == 1 })
	w.produceOrders(topic, 21, 300)
	waitUntil(t, "A holding the 300 records in its batcher", 30*time.Second, func() bool {
		return metric(t, a.AdminAddr(), `sluice_records_consumed_total{pipeline="orders"}`) == `sluice_records_consumed_total{pipeline="orders"} 300`
	})

	delayer.armed.Store(true)
	b := w.startSluice(timeouts(w.sluiceConfig(group, ordersPipeline(topic))))
	waitUntil(t, "A's late join refused, A back under a new ID and revoked", 60*time.Second, func() bool {
		return logs.count("partitions revoked") > 0
	})
	w.waitCommitted(group, topic, 60*time.Second)
	b.stop(t)
	cancel()
	if err := <-aDone; err != nil {
		t.Errorf("A: %v", err)
	}
	aDone <- nil
	w.exactlyOnce(topic)

	// A's first member ID, and the partitions revoked from A once it was
	// back under another: their flush must have been fenced, unless A had
	// been assigned them under the new ID before (then it owned them).
	assigned := logs.matching("partitions assigned")
	if len(assigned) == 0 {
		t.Fatal("A logged no assignment")
	}
	first := assigned[0].attrs["member"]
	ownedUnder := map[string]bool{} // member + partition
	fencedAt := map[string]bool{}   // partition
	checked := 0
	for _, l := range logs.all() {
		switch {
		case strings.HasPrefix(l.msg, "partitions assigned"):
			for _, p := range strings.Fields(strings.Trim(l.attrs["partitions"], "[]")) {
				ownedUnder[l.attrs["member"]+"/"+p] = true
			}
		case strings.HasPrefix(l.msg, "fenced while stopping"):
			fencedAt[l.attrs["partition"]] = true
		case strings.HasPrefix(l.msg, "partitions revoked") && l.attrs["member"] != first && checked == 0:
			for _, p := range strings.Fields(strings.Trim(l.attrs["partitions"], "[]")) {
				if ownedUnder[l.attrs["member"]+"/"+p] {
					continue
				}
				checked++
				if !fencedAt[p] {
					t.Errorf("partition %s was revoked from A under its new member ID %s (first %s) without A's flush being fenced", p, l.attrs["member"], first)
				}
			}
		}
	}
	if checked == 0 {
		t.Errorf("no partition was revoked from A under a new member ID; A's log: %v", logs.all())
	}
}
