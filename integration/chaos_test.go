//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// buildSluice compiles cmd/sluice once per test binary.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func sluiceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "sluice")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "./cmd/sluice")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// proc is one `sluice run` process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     string
	done    chan error
	started time.Time
}

type fleet struct {
	t       *testing.T
	bin     string
	cfg     string
	dir     string
	mu      sync.Mutex
	procs   map[string]*proc
	started int
	rolled  sync.WaitGroup // old members of rolling deploys, exiting
}

func (f *fleet) start(name string) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started++
	logPath := filepath.Join(f.dir, fmt.Sprintf("%s-%d.log", name, f.started))
	out, err := os.Create(logPath)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(f.bin, "run", "-c", f.cfg)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan error, 1), started: time.Now()}
	go func() { p.done <- cmd.Wait(); out.Close() }()
	f.procs[name] = p
}

// kill9 kills a process without any chance to flush or commit.
func (f *fleet) kill9(name string) {
	f.mu.Lock()
	p := f.procs[name]
	delete(f.procs, name)
	f.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and expects a clean exit 0 within the shutdown timeout.
func (f *fleet) stop(name string) {
	f.t.Helper()
	if p := f.terminate(name); p != nil {
		f.exited(p)
	}
}

// roll is one step of a rolling deploy: SIGTERM the member while its
// batches load and start its replacement at once, under a new name; the
// old process must still exit 0 within its shutdown timeout (checked in
// the background; f.rolled waits for it).
func (f *fleet) roll(name, replacement string) {
	f.t.Helper()
	p := f.terminate(name)
	if p == nil {
		return
	}
	f.start(replacement)
	f.rolled.Add(1)
	go func() {
		defer f.rolled.Done()
		f.exited(p)
	}()
}

// terminate takes the member out of the fleet and sends it SIGTERM; nil
// when there is no such member.
func (f *fleet) terminate(name string) *proc {
	f.mu.Lock()
	p := f.procs[name]
	delete(f.procs, name)
	f.mu.Unlock()
	if p != nil {
		// Not within its first second: a SIGTERM before the Go runtime
		// reaches main (a few milliseconds after exec) ends the process
		// by the signal's default action, which no handler can change
		// (cmd/sluice catches it from the first line of main on). What
		// this checks is the stop of a member that started.
		time.Sleep(time.Until(p.started.Add(time.Second)))
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	return p
}

// exited expects p, sent SIGTERM, to exit 0 within 60 s.
func (f *fleet) exited(p *proc) {
	select {
	case err := <-p.done:
		if err != nil {
			f.t.Errorf("%s exited with %v after SIGTERM; log tail:\n%s", p.name, err, tail(p.log, 30))
		}
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		f.t.Errorf("%s did not exit within 60s of SIGTERM; log tail:\n%s", p.name, tail(p.log, 30))
	}
}

// alive reports processes that exited on their own (a crash).
func (f *fleet) checkAlive() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, p := range f.procs {
		select {
		case err := <-p.done:
			f.t.Fatalf("%s exited by itself (%v); log tail:\n%s", name, err, tail(p.log, 40))
		default:
		}
	}
}

func (f *fleet) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.procs {
		out = append(out, n)
	}
	return out
}

func tail(path string, n int) string {
	fh, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestChaos produces over a million events across three topics with poison
// records sprinkled in, and event times months apart within every batch,
// while three Sluice processes load them through a fault-injecting proxy
// to ClickHouse. Meanwhile: members are killed with SIGKILL and restarted;
// rolling deploys SIGTERM a member while its batches load and start its
// replacement at once; ClickHouse turns slow (INSERTs outlive their 2 s
// client timeout on the server) behind a slow link; the link cuts every
// INSERT in the middle; clickhouse-server is killed with SIGKILL during
// inserts and restarted; the Kafka broker is killed with SIGKILL and
// restarted; ClickHouse stops long enough that every partition pauses
// while a fourth member joins and leaves. At the end every produced offset
// is in its table exactly once or in the dead-letter topic exactly once, no
// valid record is dead-lettered, the committed offsets are at the log end,
// and `sluice audit` agrees (exit 0).
func TestChaos(t *testing.T) {
	w := newWorld(t)
	const parts = 4
	topics := map[string]string{ // pipeline -> topic
		"orders": w.name("orders"), "payments": w.name("payments"), "shipments": w.name("shipments"),
	}
	for _, tp := range topics {
		w.createTopic(tp, parts)
	}
	dlqTopic := w.name("dlq")
	w.createTopic(dlqTopic, 3)
	group := w.name("g")
	schema := func(f string) string { return filepath.Join(repoRoot(), "schemas", "avro", f) }
	cfg := w.sluiceConfig(group, fmt.Sprintf(`  - name: orders
    topic: %s
    schema: %s
    table: orders
    transforms: [order_items]
  - name: payments
    topic: %s
    schema: %s
    table: payments
    transforms: [payment_status]
  - name: shipments
    topic: %s
    schema: %s
    table: shipments
`, topics["orders"], schema("order.avsc"), topics["payments"], schema("payment.avsc"), topics["shipments"], schema("shipment.avsc")))
	// The members reach ClickHouse through a fault-injecting proxy
	// (toxiproxy, in this process): slow and cut links on demand.
	px := newProxy(t, clickhouse)
	// The config file the processes read: same as cfg, with faster group
	// failover after a SIGKILL, smaller batches so kills land mid-stream,
	// shared INSERTs (batch.combine) so kills can land in them, and an
	// INSERT timeout that slow steps outlast.
	cfgPath := filepath.Join(t.TempDir(), "chaos.yaml")
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
  session_timeout: 6s
  rebalance_timeout: 20s
clickhouse:
  addr: [%s]
  database: %s
  insert_timeout: 2s
admin:
  listen: 127.0.0.1:0
log:
  level: warn
batch:
  max_rows: 5000
  max_bytes: 4MiB
  max_wait: 250ms
  combine: 4
shutdown_timeout: 20s
pipelines:
`, strings.Join(brokers, ", "), group, dlqTopic, px.Listen, w.db)
	for _, p := range cfg.Pipelines {
		yaml += fmt.Sprintf("  - {name: %s, topic: %s, schema: %s, table: %s, transforms: [%s]}\n",
			p.Name, p.Topic, p.Schema, p.Table, strings.Join(p.Transforms, ", "))
	}
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}

	f := &fleet{t: t, bin: sluiceBinary(t), cfg: cfgPath, dir: t.TempDir(), procs: map[string]*proc{}}
	t.Cleanup(func() {
		for _, n := range f.names() {
			f.kill9(n)
		}
	})

	// The producer: orders with their payments and shipments, about
	// 1.05M events in ~70 s, one poison record in every ~4,000. Orders are
	// 10 minutes of event time apart: a batch of one partition spans
	// months, so every INSERT writes several table partitions.
	g, err := gen.New(gen.Options{Seed: 7, Step: 10 * time.Minute, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		t.Fatal(err)
	}
	var produced, poison atomic.Int64
	prodErr := make(chan error, 1)
	prodCtx, stopProducing := context.WithCancel(context.Background())
	defer stopProducing()
	go func() {
		const orders = 190_000
		const perSecond = 15_000
		rng := rand.New(rand.NewPCG(7, 7))
		var first atomic.Value
		var wg sync.WaitGroup
		send := func(topic string, key, value []byte) {
			wg.Add(1)
			w.kcl.Produce(prodCtx, &kgo.Record{Topic: topic, Key: key, Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					first.CompareAndSwap(nil, err)
				} else {
					produced.Add(1)
				}
				wg.Done()
			})
		}
		start := time.Now()
		sent := 0
		for seq := 0; seq < orders && prodCtx.Err() == nil; seq++ {
			o := g.Order(seq)
			k, v, _ := g.Codecs().EncodeOrder(o)
			send(topics["orders"], k, v)
			sent++
			for _, p := range g.Payments(o) {
				k, v, _ := g.Codecs().EncodePayment(p)
				send(topics["payments"], k, v)
				sent++
			}
			for _, s := range g.Shipments(o) {
				k, v, _ := g.Codecs().EncodeShipment(s)
				send(topics["shipments"], k, v)
				sent++
			}
			if rng.IntN(700) == 0 { // ~1 poison record per 4,000 events
				junk := make([]byte, 1+rng.IntN(64))
				for i := range junk {
					junk[i] = byte(rng.IntN(256))
				}
				tps := []string{topics["orders"], topics["payments"], topics["shipments"]}
				send(tps[rng.IntN(3)], []byte(fmt.Sprintf("poison-%d", seq)), junk)
				poison.Add(1)
				sent++
			}
			if ahead := time.Duration(sent)*time.Second/perSecond - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		wg.Wait()
		if err, _ := first.Load().(error); err != nil {
			prodErr <- err
			return
		}
		prodErr <- nil
	}()

	for i := 1; i <= 3; i++ {
		f.start(fmt.Sprintf("s%d", i))
	}
	var kills, chKills, kafkaKills, rolls int
	began := time.Now()
	// Which member dies when varies from run to run; SLUICE_CHAOS_SEED
	// replays a run's choices.
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("SLUICE_CHAOS_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("chaos seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	ctx := context.Background()
	// A member of the three, by its current name (rolling deploys rename).
	member := map[int]string{1: "s1", 2: "s2", 3: "s3"}
	roll := func(i int) {
		next := fmt.Sprintf("s%d-r%d", i, rolls)
		f.roll(member[i], next)
		member[i] = next
		rolls++
	}
	alter := func(q string) {
		if err := w.ch.Exec(ctx, fmt.Sprintf(q, w.db)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	producing := true
	for step := 0; producing || step < 18; step++ {
		time.Sleep(time.Duration(4000+rng.IntN(2000)) * time.Millisecond)
		f.checkAlive()
		switch step {
		case 1, 7, 13: // rolling deploys
			roll(1 + step%3)
		case 3:
			// A slow server: every order INSERT takes ~2.5 s in
			// ClickHouse, longer than the 2 s client timeout, and goes
			// on after the client gave up. And a slow link for all.
			alter("ALTER TABLE %s.orders ADD COLUMN _slow UInt8 MATERIALIZED sleep(2.5)") // per block
			px.toxic(t, `{"name":"slow","type":"latency","stream":"upstream","attributes":{"latency":300,"jitter":200}}`)
		case 4:
			alter("ALTER TABLE %s.orders DROP COLUMN _slow")
			px.heal(t, "slow")
			// A cut link: every connection is cut after 256 KiB, in the
			// middle of larger INSERTs.
			px.toxic(t, `{"name":"cut","type":"limit_data","stream":"upstream","attributes":{"bytes":262144}}`)
		case 5:
			px.heal(t, "cut")
			runScript(t, "clickhouse.sh", "kill9") // during inserts
			chKills++
		case 6:
			runScript(t, "clickhouse.sh", "start")
		case 9:
			runScript(t, "kafka.sh", "kill9")
			kafkaKills++
		case 10:
			runScript(t, "kafka.sh", "start")
		case 11:
			// An outage long enough that every partition pauses,
			// with a member joining and leaving meanwhile.
			runScript(t, "clickhouse.sh", "stop")
			f.start("s4")
		case 12:
			f.stop("s4")
			runScript(t, "clickhouse.sh", "start")
		default:
			i := 1 + rng.IntN(3)
			f.kill9(member[i])
			kills++
			time.Sleep(500 * time.Millisecond)
			f.start(member[i])
		}
		select {
		case err := <-prodErr:
			if err != nil {
				t.Fatalf("producer: %v", err)
			}
			producing = false
			t.Logf("producer done after %v: %d records (%d poison)", time.Since(began).Round(time.Second), produced.Load(), poison.Load())
		default:
		}
		if time.Since(began) > 6*time.Minute {
			t.Fatal("chaos phase ran over 6 minutes")
		}
	}
	f.rolled.Wait()
	t.Logf("chaos phase over after %v: %d member SIGKILLs, %d rolling-deploy steps, %d ClickHouse SIGKILLs, %d Kafka SIGKILLs, slow server + slow link, cut link, ClickHouse outage with a member joining and leaving",
		time.Since(began).Round(time.Second), kills, rolls, chKills, kafkaKills)

	// Let the three survivors converge.
	ends := map[string]map[int32]int64{}
	var total int64
	for _, tp := range topics {
		ends[tp] = w.endOffsets(tp)
		for _, o := range ends[tp] {
			total += o
		}
	}
	if total != produced.Load() {
		t.Fatalf("log end offsets add up to %d, producer acknowledged %d", total, produced.Load())
	}
	waitUntil(t, "committed offsets at the log end", 4*time.Minute, func() bool {
		f.checkAlive()
		for _, tp := range topics {
			if !itest.EqualOffsets(w.committed(group, tp), ends[tp]) {
				return false
			}
		}
		return true
	})
	for _, n := range f.names() {
		f.stop(n)
	}

	// Every produced offset: in its table once, or in the DLQ once.
	letters := readAll(t, w, dlqTopic)
	dead := map[string]map[int32]map[int64]int{} // topic -> partition -> offset -> times
	for _, l := range letters {
		if !strings.HasPrefix(string(l.Key), "poison-") {
			t.Errorf("a valid record was dead-lettered: key %q reason %q", l.Key, dlq.Header(l, dlq.HeaderReason))
		}
		tp := dlq.Header(l, dlq.HeaderTopic)
		p, _ := strconv.Atoi(dlq.Header(l, dlq.HeaderPartition))
		off, _ := strconv.ParseInt(dlq.Header(l, dlq.HeaderOffset), 10, 64)
		if dead[tp] == nil {
			dead[tp] = map[int32]map[int64]int{}
		}
		if dead[tp][int32(p)] == nil {
			dead[tp][int32(p)] = map[int64]int{}
		}
		dead[tp][int32(p)][off]++
	}
	var rows, dups, lost, dlqDups int64
	for pipe, tp := range topics {
		for p, end := range ends[tp] {
			var n, distinct uint64
			var lo, hi int64
			err := w.ch.QueryRow(context.Background(), fmt.Sprintf(
				"SELECT count(), uniqExact(_offset), toInt64(min(_offset)), toInt64(max(_offset)) FROM %s.%s WHERE _topic = ? AND _partition = ?", w.db, pipe),
				tp, p).Scan(&n, &distinct, &lo, &hi)
			if err != nil {
				t.Fatal(err)
			}
			rows += int64(n)
			dups += int64(n - distinct)
			nd := int64(0)
			for off, times := range dead[tp][p] {
				nd++
				dlqDups += int64(times - 1)
				if off >= end {
					t.Errorf("%s[%d]: dead letter for offset %d past the log end %d", tp, p, off, end)
				}
			}
			// A dead-lettered offset must not be in the table too.
			if nd > 0 {
				var offs []string
				for off := range dead[tp][p] {
					offs = append(offs, strconv.FormatInt(off, 10))
				}
				both := w.count(fmt.Sprintf("SELECT count() FROM %s.%s WHERE _topic = '%s' AND _partition = %d AND _offset IN (%s)",
					w.db, pipe, tp, p, strings.Join(offs, ",")))
				if both > 0 {
					t.Errorf("%s[%d]: %d offsets both loaded and dead-lettered", tp, p, both)
				}
			}
			missing := end - int64(distinct) - nd
			lost += max(missing, 0)
			if missing != 0 || (n > 0 && hi >= end) {
				t.Errorf("%s[%d]: log end %d, %d distinct rows (offsets %d..%d), %d dead letters: %d unaccounted",
					tp, p, end, distinct, lo, hi, nd, missing)
			}
		}
	}
	t.Logf("events %d (poison %d), member SIGKILLs %d, rolling-deploy steps %d, ClickHouse SIGKILLs %d, Kafka SIGKILLs %d; rows %d, dead letters %d, duplicates %d, duplicate dead letters %d, lost %d",
		produced.Load(), poison.Load(), kills, rolls, chKills, kafkaKills, rows, len(letters), dups, dlqDups, lost)
	// The slow step did what it is for: INSERTs outlived their client
	// timeout and were waited for, not raced.
	waited, errs := 0, 0
	logs, _ := filepath.Glob(filepath.Join(f.dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		waited += strings.Count(string(b), "an earlier INSERT of the partition is still running")
		// Faults of every kind made errors: each carries where and what.
		bad, n := itest.UnlabelledErrors(string(b))
		errs += n
		if len(bad) > 0 {
			t.Errorf("%s: ERROR records without stage or error_type:\n%s", filepath.Base(l), strings.Join(bad, "\n"))
		}
	}
	t.Logf("INSERTs found still running and waited for: %d; ERROR records, each with stage and error_type: %d", waited, errs)
	if waited == 0 {
		t.Errorf("no member ever waited for an INSERT that outlived its timeout: the slow step injected nothing")
	}
	// The user's proof agrees with the test's own count.
	if code, rep, stderr := runAudit(t, cfgPath); code != 0 {
		t.Errorf("sluice audit exit %d after the chaos run; report %+v\nstderr: %s", code, rep, stderr)
	}
	if dups != 0 || lost != 0 || dlqDups != 0 {
		t.Fatalf("duplicates %d, duplicate dead letters %d, lost %d: want 0, 0, 0", dups, dlqDups, lost)
	}
	if int64(len(letters)) != poison.Load() {
		t.Fatalf("%d dead letters for %d poison records", len(letters), poison.Load())
	}
	if rows+int64(len(letters)) != produced.Load() {
		t.Fatalf("rows %d + dead letters %d != produced %d", rows, len(letters), produced.Load())
	}
}

// readAll reads a topic from the start to its current end.
func readAll(t *testing.T, w *world, topic string) []*kgo.Record {
	t.Helper()
	ends := w.endOffsets(topic)
	want := int64(0)
	for _, o := range ends {
		want += o
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < want && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	if int64(len(out)) != want {
		t.Fatalf("read %d records of %s, want %d", len(out), topic, want)
	}
	return out
}
