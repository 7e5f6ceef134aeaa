//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/internal/sluicerun"
	"github.com/sluice-etl/sluice/pkg/config"
)

// The reload tests run `sluice run` as a process and change its config
// file (or send SIGHUP) while it loads: pipelines added, removed, changed,
// an invalid edit. Every pipeline reads orders from a topic of its own
// into the orders table (or orders2); each test checks the rows exactly
// once per topic, the commits at the log ends, and that the partitions of
// the pipelines the edit left alone did not move: this member was never
// asked to revoke them, and they were assigned once.

// reloadPipe is one pipeline line of a reload test's config.
type reloadPipe struct {
	name, topic, table string
	// schema is the pipeline's schema file (the repo's order.avsc when
	// empty).
	schema string
	// batch is the pipeline's own batch section, if any.
	batch string
}

func (p reloadPipe) yaml() string {
	table := p.table
	if table == "" {
		table = "orders"
	}
	schema := p.schema
	if schema == "" {
		schema = filepath.Join(repoRoot(), "schemas", "avro", "order.avsc")
	}
	batch := ""
	if p.batch != "" {
		batch = ", batch: {" + p.batch + "}"
	}
	return fmt.Sprintf("  - {name: %s, topic: %s, schema: %s, table: %s, transforms: [order_items]%s}\n",
		p.name, p.topic, schema, table, batch)
}

// reloadConfig is a reload test's config: group, admin on a free port
// (listen, "127.0.0.1:0" by default), the pipelines, and extra lines
// appended (a typo, say).
func (w *world) reloadConfig(group, listen string, pipes []reloadPipe, extra string) string {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
  session_timeout: 10s
  rebalance_timeout: 20s
clickhouse:
  addr: [%s]
  database: %s
admin:
  listen: %s
log:
  level: info
batch:
  max_wait: 200ms
shutdown_timeout: 20s
pipelines:
`, strings.Join(brokers, ","), group, w.name("dlq"), clickhouse, w.db, listen)
	for _, p := range pipes {
		b.WriteString(p.yaml())
	}
	b.WriteString(extra)
	return b.String()
}

// writeConfig replaces the file at path with content as an editor does:
// a new file renamed over the old one.
func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rows counts the rows of topic in the table.
func (w *world) rows(table, topic string) uint64 {
	w.t.Helper()
	return w.count(fmt.Sprintf("SELECT count() FROM %s.%s WHERE _topic = ?", w.db, table), topic)
}

// exactlyOnceIn is exactlyOnce over the union of tables: every offset of
// the topic once, in one of them.
func (w *world) exactlyOnceIn(topic string, tables ...string) {
	w.t.Helper()
	var want int64
	for _, end := range w.endOffsets(topic) {
		want += end
	}
	var parts []string
	for _, t := range tables {
		parts = append(parts, fmt.Sprintf("SELECT _partition, _offset FROM %s.%s WHERE _topic = '%s'", w.db, t, topic))
	}
	union := strings.Join(parts, " UNION ALL ")
	rows := w.count("SELECT count() FROM (" + union + ")")
	distinct := w.count("SELECT uniqExact(_partition, _offset) FROM (" + union + ")")
	if int64(rows) != want || int64(distinct) != want {
		w.t.Fatalf("%s: %v hold %d rows, %d distinct offsets; want %d and %d", topic, tables, rows, distinct, want, want)
	}
}

var topicAttr = regexp.MustCompile(`\btopic=(\S+)`)

// partitionEvents counts the log's "partitions assigned" lines of topic,
// and those that say its partitions were revoked, lost or restarted in
// place, before the shutdown (which revokes everything).
func partitionEvents(log, topic string) (assigned, revoked int) {
	if i := strings.Index(log, `msg="shutting down`); i >= 0 {
		log = log[:i]
	}
	for _, line := range strings.Split(log, "\n") {
		m := topicAttr.FindStringSubmatch(line)
		if m == nil || m[1] != topic {
			continue
		}
		switch {
		case strings.Contains(line, `msg="partitions assigned"`):
			assigned++
		case strings.Contains(line, `msg="partitions revoked`), strings.Contains(line, `msg="partitions lost`),
			strings.Contains(line, `msg="pipeline restarted`): // a restart in place
			revoked++
		}
	}
	return assigned, revoked
}

// stayed fails the test unless topic's partitions were assigned once and
// never revoked, lost or restarted: a reload left them alone.
func stayed(t *testing.T, p *sluiceProc, topic string) {
	t.Helper()
	if a, r := partitionEvents(p.log(), topic); a != 1 || r != 0 {
		t.Fatalf("%s: %d assignments and %d revokes in the log, want 1 and 0 (its partitions moved); log:\n%s", topic, a, r, p.log())
	}
}

var adminAddr = regexp.MustCompile(`msg="admin listening" addr=(http://\S+)`)

// metric reads one series' value from the process's /metrics (-1 when
// it is not there).
func (p *sluiceProc) metric(series string) float64 {
	p.t.Helper()
	m := adminAddr.FindStringSubmatch(p.log())
	if m == nil {
		p.t.Fatalf("no admin address in the log:\n%s", p.log())
	}
	return seriesValue(p.t, m[1]+"/metrics", series)
}

// seriesValue reads one series' value (name and labels as exposed) from
// a /metrics URL; -1 when it is not there.
func seriesValue(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// startReload starts `sluice run` on cfg (args after it) and waits until
// it has loaded every record produced so far of the topics.
func (w *world) startReload(path, group string, args []string, topics ...string) *sluiceProc {
	w.t.Helper()
	p := startSluiceBinary(w.t, append([]string{"run", "-c", path}, args...)...)
	p.waitLog("partitions assigned", 60*time.Second)
	for _, topic := range topics {
		w.waitCommitted(group, topic, 90*time.Second)
	}
	return p
}

// TestReloadAddsAPipeline: a pipeline added to the file consumes within
// 10 s of the edit, loads its topic's backlog exactly once, and the
// running pipeline's partitions stay.
func TestReloadAddsAPipeline(t *testing.T) {
	w := newWorld(t)
	a, b := w.name("rl_add_a"), w.name("rl_add_b")
	w.createTopic(a, 3)
	w.createTopic(b, 3)
	w.produceSpreadOrders(a, 300, time.Minute)
	w.produceSpreadOrders(b, 300, time.Minute)
	group := w.name("g_rl_add")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	pa := reloadPipe{name: "a", topic: a}
	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa}, ""))
	p := w.startReload(path, group, nil, a)
	if n := w.rows("orders", b); n != 0 {
		t.Fatalf("%d rows of %s before its pipeline exists", n, b)
	}

	// An edit in place (not a rename), as `echo >>` would make it.
	edited := time.Now()
	if err := os.WriteFile(path, []byte(w.reloadConfig(group, "", []reloadPipe{pa, {name: "b", topic: b}}, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first rows of the added pipeline", 10*time.Second, func() bool { return w.rows("orders", b) > 0 })
	t.Logf("added pipeline's first rows %v after the edit", time.Since(edited).Round(100*time.Millisecond))
	w.produceSpreadOrders(a, 300, time.Minute)
	w.produceSpreadOrders(b, 300, time.Minute)
	w.waitCommitted(group, a, 90*time.Second)
	w.waitCommitted(group, b, 90*time.Second)
	if v := p.metric(`sluice_config_reloads_total{result="ok"}`); v != 1 {
		t.Errorf("sluice_config_reloads_total{result=ok} = %v, want 1", v)
	}
	if code := p.term(60 * time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	w.exactlyOnce(a)
	w.exactlyOnce(b)
	stayed(t, p, a)
	stayed(t, p, b)
}

// heldWait is the max_wait of a pipeline whose records must be loaded by
// a reload's flush: far enough (for this machine) that a flush seen
// before it is the reload's, below admin.lagging_after's default (30 s),
// which must exceed every max_wait.
const heldWait = 25 * time.Second

// heldCut is how long after consumed a held pipeline's batch may be
// taken as not cut by max_wait: a partition's first batch is cut early by
// its phase (pkg/batch), the largest of the tests' 3-partition topics
// being partition 1's, 0.618 of max_wait; less 3 s, for records that
// arrived before consumed.
const heldCut = heldWait*38/100 - 3*time.Second

// flushedByReload fails the test when the records of topic held since
// consumed are not committed before its batches could have been cut by
// max_wait alone.
func (w *world) flushedByReload(group, topic string, consumed time.Time) {
	w.t.Helper()
	w.waitCommitted(group, topic, time.Until(consumed.Add(heldCut)))
	if time.Since(consumed) >= heldCut {
		w.t.Fatalf("%s committed %v after its records were consumed: max_wait may have cut the batch, not the reload", topic, time.Since(consumed))
	}
}

// TestReloadRemovesAPipeline: a pipeline removed from the file flushes
// what it holds (its max_wait is far away), commits it and stops
// consuming; the other pipeline's partitions stay and it goes on loading.
func TestReloadRemovesAPipeline(t *testing.T) {
	w := newWorld(t)
	a, b := w.name("rl_rm_a"), w.name("rl_rm_b")
	w.createTopic(a, 3)
	w.createTopic(b, 3)
	group := w.name("g_rl_rm")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	pa := reloadPipe{name: "a", topic: a}
	// b cuts its batches only after heldWait: what it holds at the edit
	// is loaded by the removal's flush.
	pb := reloadPipe{name: "b", topic: b, batch: "max_wait: " + heldWait.String()}
	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa, pb}, ""))
	w.produceSpreadOrders(a, 300, time.Minute)
	p := w.startReload(path, group, nil, a)
	w.produceSpreadOrders(b, 300, time.Minute)
	waitUntil(t, "b's records consumed into its batches", 60*time.Second, func() bool {
		return p.metric(`sluice_records_consumed_total{pipeline="b"}`) == 300
	})
	consumed := time.Now()
	if n := w.rows("orders", b); n != 0 {
		t.Fatalf("%d rows of %s loaded before the removal (max_wait %v)", n, b, heldWait)
	}

	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa}, ""))
	w.flushedByReload(group, b, consumed)
	w.exactlyOnce(b)
	p.waitLog(`msg="config reload: pipeline removed" pipeline=b`, 30*time.Second)
	// a goes on; b does not consume any more.
	w.produceSpreadOrders(a, 300, time.Minute)
	w.produceSpreadOrders(b, 100, time.Minute)
	w.waitCommitted(group, a, 90*time.Second)
	if code := p.term(60 * time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	w.exactlyOnce(a)
	if n := w.rows("orders", b); n != 300 {
		t.Errorf("%d rows of %s, want the 300 produced before its removal", n, b)
	}
	stayed(t, p, a)
	if _, r := partitionEvents(p.log(), b); r != 1 {
		t.Errorf("%s: %d revokes, want 1 (the removal's)", b, r)
	}
}

// startHolding writes the config at path with pipelines pa (loaded at
// once) and pb (max_wait heldWait: its batches hold its records), starts
// `sluice run` on it with 300 orders in each topic, and returns once pa's
// are committed and pb's 300 consumed into its batches, and when.
func (w *world) startHolding(path, group string, pa, pb reloadPipe) (*sluiceProc, time.Time) {
	w.t.Helper()
	pb.batch = "max_wait: " + heldWait.String()
	writeConfig(w.t, path, w.reloadConfig(group, "", []reloadPipe{pa, pb}, ""))
	w.produceSpreadOrders(pa.topic, 300, time.Minute)
	p := w.startReload(path, group, nil, pa.topic)
	w.produceSpreadOrders(pb.topic, 300, time.Minute)
	waitUntil(w.t, pb.name+"'s records consumed into its batches", 60*time.Second, func() bool {
		return p.metric(`sluice_records_consumed_total{pipeline="`+pb.name+`"}`) == 300
	})
	return p, time.Now()
}

// restartedInPlace fails the test unless topic's partitions were assigned
// once and restarted once: a reload restarted its pipeline in place.
func restartedInPlace(t *testing.T, p *sluiceProc, topic string) {
	t.Helper()
	if na, nr := partitionEvents(p.log(), topic); na != 1 || nr != 1 {
		t.Errorf("%s: %d assignments and %d revokes or restarts, want 1 and 1 (the restart in place)", topic, na, nr)
	}
}

// TestReloadChangesAPipeline: a pipeline whose table changes restarts
// alone: what it holds is flushed into the old table and committed, what
// follows goes to the new one, every record in exactly one of them; the
// partitions of both pipelines stay with the member (no revoke: the
// changed one restarts in place).
func TestReloadChangesAPipeline(t *testing.T) {
	w := newWorld(t)
	a, b := w.name("rl_ch_a"), w.name("rl_ch_b")
	w.createTopic(a, 3)
	w.createTopic(b, 3)
	if err := w.ch.Exec(context.Background(), fmt.Sprintf("CREATE TABLE %s.orders2 AS %s.orders", w.db, w.db)); err != nil {
		t.Fatal(err)
	}
	group := w.name("g_rl_ch")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	pa := reloadPipe{name: "a", topic: a}
	p, consumed := w.startHolding(path, group, pa, reloadPipe{name: "b", topic: b})

	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa, {name: "b", topic: b, table: "orders2"}}, ""))
	p.waitLog(`msg="config reload: pipeline changed, restarted with its new settings" pipeline=b`, 30*time.Second)
	w.flushedByReload(group, b, consumed)
	if n := w.rows("orders", b); n != 300 {
		t.Fatalf("%d rows of %s in orders, want the 300 it held at the change", n, b)
	}
	w.produceSpreadOrders(a, 300, time.Minute)
	w.produceSpreadOrders(b, 300, time.Minute)
	w.waitCommitted(group, a, 90*time.Second)
	w.waitCommitted(group, b, 90*time.Second)
	if code := p.term(60 * time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	if n := w.rows("orders2", b); n != 300 {
		t.Errorf("%d rows of %s in orders2, want the 300 produced after the change", n, b)
	}
	w.exactlyOnce(a)
	w.exactlyOnceIn(b, "orders", "orders2")
	if n := w.rows("orders2", a); n != 0 {
		t.Errorf("%d rows of the unchanged %s in orders2", n, a)
	}
	stayed(t, p, a)
	restartedInPlace(t, p, b)
}

// TestReloadOnSchemaEdit: an edit of a running pipeline's schema file,
// the config file untouched, restarts that pipeline alone with the new
// schema (what it holds flushed and committed first), as an edit of its
// settings does; the other pipeline's partitions stay.
func TestReloadOnSchemaEdit(t *testing.T) {
	w := newWorld(t)
	a, b := w.name("rl_sc_a"), w.name("rl_sc_b")
	w.createTopic(a, 3)
	w.createTopic(b, 3)
	group := w.name("g_rl_sc")
	dir := t.TempDir()
	path, schema := filepath.Join(dir, "sluice.yaml"), filepath.Join(t.TempDir(), "order.avsc")
	orig, err := os.ReadFile(filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	writeConfig(t, schema, string(orig))
	p, consumed := w.startHolding(path, group, reloadPipe{name: "a", topic: a}, reloadPipe{name: "b", topic: b, schema: schema})

	// The same schema with a doc added: a new digest, the same records.
	edited := strings.Replace(string(orig), `"doc": "An order`, `"doc": "Edited while running. An order`, 1)
	if edited == string(orig) {
		t.Fatal("the schema was not edited")
	}
	writeConfig(t, schema, edited)
	at := time.Now()
	p.waitLog(`msg="config reload: pipeline changed, restarted with its new settings" pipeline=b`, 30*time.Second)
	t.Logf("pipeline b restarted %v after the schema edit", time.Since(at).Round(100*time.Millisecond))
	w.flushedByReload(group, b, consumed)
	if v := p.metric(`sluice_config_reloads_total{result="ok"}`); v != 1 {
		t.Errorf("sluice_config_reloads_total{result=ok} = %v, want 1", v)
	}
	// b's new batches are held for heldWait too: the shutdown flushes
	// them.
	w.produceSpreadOrders(a, 300, time.Minute)
	w.produceSpreadOrders(b, 300, time.Minute)
	w.waitCommitted(group, a, 90*time.Second)
	waitUntil(t, "b's new records consumed", 60*time.Second, func() bool {
		return p.metric(`sluice_records_consumed_total{pipeline="b"}`) >= 600 // the counter runs on across the restart
	})
	if code := p.term(60 * time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	if !strings.Contains(p.log(), `msg="a watched file changed: reloading the config"`) || !strings.Contains(p.log(), schema) {
		t.Errorf("no log line naming the edited schema file %s as the reload's cause; log:\n%s", schema, p.log())
	}
	w.exactlyOnce(a)
	w.exactlyOnce(b)
	stayed(t, p, a)
	restartedInPlace(t, p, b)
}

// TestReloadCutShortByShutdown: a reload whose context ends while it
// builds an added pipeline (SIGTERM racing SIGHUP) is abandoned with one
// INFO, no ERROR and no rejection, and the running config stays.
func TestReloadCutShortByShutdown(t *testing.T) {
	w := newWorld(t)
	a, b := w.name("rl_stop_a"), w.name("rl_stop_b")
	w.createTopic(a, 3)
	w.createTopic(b, 3)
	group := w.name("g_rl_stop")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	pa := reloadPipe{name: "a", topic: a}
	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa}, ""))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logged itest.LogBuffer
	s := sluicerun.StartLogging(t, cfg, &logged, slog.LevelInfo)
	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa, {name: "b", topic: b}}, ""))
	stopping, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.Svc.ReloadFile(stopping, path)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ReloadFile with its context ended: %v, want an error wrapping context.Canceled", err)
	}
	s.Stop(t)
	log := logged.String()
	if strings.Contains(log, "level=ERROR") || strings.Count(log, `msg="config reload abandoned: the service is stopping; the running config stays"`) != 1 {
		t.Fatalf("want one INFO saying the reload was abandoned and no ERROR; log:\n%s", log)
	}
	if strings.Contains(log, `msg="config reload: pipeline added"`) {
		t.Fatalf("the abandoned reload added its pipeline; log:\n%s", log)
	}
	if got := len(s.Svc.Config().Pipelines); got != 1 {
		t.Errorf("%d pipelines in force after the abandoned reload, want the 1 running", got)
	}
}

// startupProblems is what `sluice` prints for the config at path at
// start-up (its "key: problem" lines), through `sluice config print`,
// which loads it as `run` does.
func startupProblems(t *testing.T, path string) []string {
	t.Helper()
	out, _ := exec.Command(sluiceBinary(t), "config", "print", "-c", path).CombinedOutput()
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "  ") {
			problems = append(problems, strings.TrimSpace(line))
		}
	}
	if len(problems) == 0 {
		t.Fatalf("sluice config print found no problem in %s:\n%s", path, out)
	}
	return problems
}

var rejection = regexp.MustCompile(`level=ERROR msg="config reload rejected: the running config stays" stage=config key=(\S+) problems=("(?:[^"\\]|\\.)*")`)

// rejections lists the problems of each rejected reload in the log.
func rejections(t *testing.T, log string) [][]string {
	t.Helper()
	var out [][]string
	for _, m := range rejection.FindAllStringSubmatch(log, -1) {
		text, err := strconv.Unquote(m[2])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(text, "; "))
	}
	return out
}

// TestReloadRejectsAnInvalidEdit: an edit with a misspelt key, then one
// with a value out of range, is each rejected with one ERROR naming the
// key in start-up's words, counted, and the running pipelines go on as
// they were (the edits also dropped one); a valid edit afterwards is
// applied.
func TestReloadRejectsAnInvalidEdit(t *testing.T) {
	w := newWorld(t)
	a, b := w.name("rl_bad_a"), w.name("rl_bad_b")
	w.createTopic(a, 3)
	w.createTopic(b, 3)
	group := w.name("g_rl_bad")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	pa, pb := reloadPipe{name: "a", topic: a}, reloadPipe{name: "b", topic: b}
	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa, pb}, ""))
	w.produceSpreadOrders(a, 200, time.Minute)
	w.produceSpreadOrders(b, 200, time.Minute)
	p := w.startReload(path, group, nil, a, b)

	bads := []string{
		w.reloadConfig(group, "", []reloadPipe{pa}, fmt.Sprintf("  - {name: c, topic: %s, schema: x.avsc, tranforms: []}\n", w.name("rl_bad_c"))),
		w.reloadConfig(group, "", []reloadPipe{{name: "a", topic: a, batch: "max_rows: 2000000"}}, ""),
	}
	for i, bad := range bads {
		badPath := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(badPath, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		want := startupProblems(t, badPath)
		writeConfig(t, path, bad)
		waitUntil(t, "the rejection", 30*time.Second, func() bool { return len(rejections(t, p.log())) == i+1 })
		if got := rejections(t, p.log())[i]; !slices.Equal(got, want) {
			t.Errorf("rejection %d says %q; start-up says %q", i+1, got, want)
		}
		if v := p.metric(`sluice_config_reloads_total{result="rejected"}`); v != float64(i+1) {
			t.Errorf("sluice_config_reloads_total{result=rejected} = %v, want %d", v, i+1)
		}
	}
	if !strings.Contains(p.log(), "pipelines[1].tranforms: unknown key") || !strings.Contains(p.log(), "pipelines[0].batch.max_rows: must be between") {
		t.Errorf("the rejections do not name both keys; log:\n%s", p.log())
	}
	// The running config stays: both pipelines load what comes.
	w.produceSpreadOrders(a, 200, time.Minute)
	w.produceSpreadOrders(b, 200, time.Minute)
	w.waitCommitted(group, a, 90*time.Second)
	w.waitCommitted(group, b, 90*time.Second)

	// Fixed: applied (b removed).
	before := p.metric("sluice_config_last_reload_success_timestamp_seconds")
	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa}, ""))
	p.waitLog(`msg="config reload: pipeline removed" pipeline=b`, 30*time.Second)
	if v := p.metric(`sluice_config_reloads_total{result="ok"}`); v != 1 {
		t.Errorf("sluice_config_reloads_total{result=ok} = %v, want 1", v)
	}
	if after := p.metric("sluice_config_last_reload_success_timestamp_seconds"); after <= before {
		t.Errorf("last successful reload at %v, was %v: want later", after, before)
	}
	if code := p.term(60 * time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	if n := strings.Count(p.log(), "level=ERROR"); n != len(bads) {
		t.Errorf("%d ERROR lines, want one per rejection (%d); log:\n%s", n, len(bads), p.log())
	}
	w.exactlyOnce(a)
	w.exactlyOnce(b)
	stayed(t, p, a)
}

// TestReloadOnSIGHUP: with the file not watched (--watch=false), an edit
// does nothing until SIGHUP, which adds the pipeline; the edit's new
// admin.listen is reported as needing a restart (one WARN naming it) and
// the admin server stays where it was.
func TestReloadOnSIGHUP(t *testing.T) {
	w := newWorld(t)
	a, b := w.name("rl_hup_a"), w.name("rl_hup_b")
	w.createTopic(a, 3)
	w.createTopic(b, 3)
	w.produceSpreadOrders(a, 300, time.Minute)
	w.produceSpreadOrders(b, 300, time.Minute)
	group := w.name("g_rl_hup")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	pa := reloadPipe{name: "a", topic: a}
	writeConfig(t, path, w.reloadConfig(group, "", []reloadPipe{pa}, ""))
	p := w.startReload(path, group, []string{"--watch=false"}, a)

	writeConfig(t, path, w.reloadConfig(group, "127.0.0.1:1", []reloadPipe{pa, {name: "b", topic: b}}, ""))
	// Not watched: a produce and a full load of a later, b is still not
	// consumed (the rows of a come after the edit, so the process has
	// been running well past a watcher's settle time).
	w.produceSpreadOrders(a, 300, time.Minute)
	w.waitCommitted(group, a, 90*time.Second)
	if n := w.rows("orders", b); n != 0 || strings.Contains(p.log(), "config reload") || strings.Contains(p.log(), "reloading") {
		t.Fatalf("%d rows of %s before SIGHUP; log:\n%s", n, b, p.log())
	}

	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first rows of the added pipeline", 10*time.Second, func() bool { return w.rows("orders", b) > 0 })
	w.waitCommitted(group, b, 90*time.Second)
	if n := strings.Count(p.log(), "key=admin.listen"); n != 1 || !strings.Contains(p.log(), "takes effect only at the next start") {
		t.Errorf("%d WARNs naming admin.listen, want 1; log:\n%s", n, p.log())
	}
	// Still served at the address it started with.
	if v := p.metric(`sluice_config_reloads_total{result="ok"}`); v != 1 {
		t.Errorf("sluice_config_reloads_total{result=ok} = %v, want 1", v)
	}
	if code := p.term(60 * time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	w.exactlyOnce(a)
	w.exactlyOnce(b)
	stayed(t, p, a)
}
