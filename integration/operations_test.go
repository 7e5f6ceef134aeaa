//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, a.log())
	}
	if d := time.Since(start); d > 4500*time.Millisecond {
		t.Fatalf("exited %v after SIGTERM with shutdown_timeout 3s; log:\n%s", d.Round(100*time.Millisecond), a.log())
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	c.wait(60 * time.Second)
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
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(20 * time.Second); code != 0 {
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
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	a.wait(30 * time.Second)
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
