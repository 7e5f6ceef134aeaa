//go:build cluster

package cluster

// Chaos on the cluster bed (issue 10, point 6): three Sluice processes in
// one group load a 12-partition topic into the sharded, replicated tables
// while, one after the other, a member is killed with SIGKILL, a rolling
// deploy step replaces one, the replica that takes a shard's writes is
// killed, and a broker is killed — each restarted. Poison records go to
// the dead-letter topic. At the end every offset is a row exactly once or
// a dead letter exactly once, and `sluice audit` is clean. Up to three
// partitions' batches of a shard share an INSERT (batch.combine).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// process is one `sluice run` member.
type process struct {
	name    string
	cmd     *exec.Cmd
	out     *bytes.Buffer
	started time.Time
	done    chan error
}

// fleet runs `sluice run` processes of one config.
type fleet struct {
	t       *testing.T
	cfgPath string
	mu      sync.Mutex
	members []*process
	n       int
	all     []*process // every member ever spawned, for their logs
}

func (w *loadWorld) fleet(size int) *fleet {
	w.t.Helper()
	w.buildSluice()
	f := &fleet{t: w.t, cfgPath: w.cfgPath}
	for range size {
		f.members = append(f.members, f.spawn())
	}
	w.t.Cleanup(func() {
		for _, m := range f.members {
			if m.cmd.ProcessState == nil {
				_ = m.cmd.Process.Kill()
				<-m.done
			}
		}
		// Every member has ended: each log is whole. Kills of members,
		// replicas and a broker made errors; each carries where and what.
		errs := 0
		for _, m := range f.all {
			bad, n := itest.UnlabelledErrors(m.out.String())
			errs += n
			if len(bad) > 0 {
				w.t.Errorf("%s: ERROR records without stage or error_type:\n%s", m.name, strings.Join(bad, "\n"))
			}
		}
		w.t.Logf("%d members' logs: %d ERROR records, each checked for stage and error_type", len(f.all), errs)
	})
	return f
}

func (f *fleet) spawn() *process {
	f.t.Helper()
	f.n++
	m := &process{name: fmt.Sprintf("sluice-%d", f.n), out: &bytes.Buffer{}, done: make(chan error, 1)}
	m.cmd = exec.Command(binary, "run", "-c", f.cfgPath)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	m.started = time.Now()
	go func() { m.done <- m.cmd.Wait() }()
	f.all = append(f.all, m)
	return m
}

// kill9 kills member i with SIGKILL and starts a new one in its place.
func (f *fleet) kill9(i int) {
	f.t.Helper()
	m := f.members[i]
	_ = m.cmd.Process.Kill()
	<-m.done
	f.members[i] = f.spawn()
}

// replace is a rolling-deploy step: SIGTERM to member i (which must exit
// 0 after its flush), its replacement started at once.
func (f *fleet) replace(i int) {
	f.t.Helper()
	m := f.members[i]
	f.members[i] = f.spawn()
	f.stopOne(m)
}

func (f *fleet) stopOne(m *process) {
	f.t.Helper()
	// A process signalled within its runtime's start has no handler yet.
	if d := time.Second - time.Since(m.started); d > 0 {
		time.Sleep(d)
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		if err != nil {
			f.t.Errorf("%s: %v after SIGTERM\n%s", m.name, err, tail(m.out.String(), 30))
		}
	case <-time.After(90 * time.Second):
		_ = m.cmd.Process.Kill()
		f.t.Errorf("%s did not stop within 90 s of SIGTERM\n%s", m.name, tail(m.out.String(), 30))
	}
}

func (f *fleet) stop() {
	f.t.Helper()
	for _, m := range f.members {
		f.stopOne(m)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildSluice builds bin/sluice for the processes (once per test binary).
func (w *loadWorld) buildSluice() {
	w.t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-cluster-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "sluice")
		out, err := exec.Command("go", "build", "-o", binary, "../../cmd/sluice").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		w.t.Fatal(buildErr)
	}
}

// produceSteady writes JSON orders at about rate per second until ctx
// ends, every 500th a poison record (not JSON); it returns how many of
// each it wrote.
func (w *loadWorld) produceSteady(ctx context.Context, rate int) (good, poison int) {
	g, err := gen.New(gen.Options{Seed: 23, SchemaDir: filepath.Join("..", "..", "schemas", "avro")})
	if err != nil {
		w.t.Error(err)
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return good, poison
		case <-tick.C:
		}
		recs := make([]*kgo.Record, 0, rate/10)
		for range rate / 10 {
			seq++
			if seq%500 == 0 {
				recs = append(recs, &kgo.Record{Topic: w.topic, Key: []byte(fmt.Sprintf("poison-%d", seq)), Value: []byte("{not json")})
				poison++
				continue
			}
			k, v, err := gen.EncodeOrderJSON(g.Order(seq))
			if err != nil {
				w.t.Error(err)
				return good, poison
			}
			recs = append(recs, &kgo.Record{Topic: w.topic, Key: k, Value: v})
			good++
		}
		// Produced records are counted only once acknowledged; a produce
		// that fails (a broker killed) is retried by the client.
		if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			w.t.Errorf("produce: %v", err)
			return good, poison
		}
	}
}

// fullISR waits until every partition of the topic has all its replicas
// in sync (after a broker's restart, before the next broker fault).
func (w *loadWorld) fullISR(d time.Duration) {
	w.t.Helper()
	if err := eventually(d, func() error {
		md, err := w.adm.Metadata(context.Background(), w.topic)
		if err != nil {
			return err
		}
		for _, p := range md.Topics[w.topic].Partitions {
			if len(p.ISR) != len(p.Replicas) {
				return fmt.Errorf("partition %d: in sync %v of %v", p.Partition, p.ISR, p.Replicas)
			}
		}
		return nil
	}); err != nil {
		w.t.Fatal(err)
	}
}

func TestClusterChaos(t *testing.T) {
	w := newLoadWorld(t, 12)
	w.produce(20000)
	// Shared INSERTs too: the partitions of a shard share one.
	w.combine = 3
	w.config([][]int{{0, 1}, {0, 1}}, 2000)
	f := w.fleet(3)
	ctx, stopProducing := context.WithCancel(context.Background())
	var good, poison int
	produced := make(chan struct{})
	go func() {
		good, poison = w.produceSteady(ctx, 2000)
		close(produced)
	}()
	defer stopProducing()

	step := func(what string, fault func()) {
		t.Helper()
		time.Sleep(5 * time.Second)
		t0 := time.Now()
		fault()
		t.Logf("%s (%v), committed %d", what, time.Since(t0).Round(time.Millisecond), w.committedTotal())
	}
	step("member 0 killed with SIGKILL and restarted", func() { f.kill9(0) })
	step("s1r1 (shard 1's writer) killed with SIGKILL, restarted 8 s later", func() {
		runScript(t, "kill9", "s1r1")
		time.Sleep(8 * time.Second)
		runScript(t, "restart", "s1r1")
	})
	step("member 1 replaced (SIGTERM, its replacement started at once)", func() { f.replace(1) })
	step("kafka2 killed with SIGKILL, restarted 10 s later", func() {
		runScript(t, "kill9", "kafka2")
		t.Cleanup(func() { runScript(t, "start", "kafka2") })
		time.Sleep(10 * time.Second)
		runScript(t, "restart", "kafka2")
		w.fullISR(2 * time.Minute)
	})
	step("s2r1 (shard 2's writer) killed with SIGKILL, restarted 8 s later", func() {
		runScript(t, "kill9", "s2r1")
		time.Sleep(8 * time.Second)
		runScript(t, "restart", "s2r1")
	})
	step("member 2 killed with SIGKILL and restarted", func() { f.kill9(2) })
	step("s1r2 killed with SIGKILL (not the writer), restarted 5 s later", func() {
		runScript(t, "kill9", "s1r2")
		time.Sleep(5 * time.Second)
		runScript(t, "restart", "s1r2")
	})
	stopProducing()
	<-produced
	if t.Failed() {
		t.FailNow()
	}
	w.waitCommitted(5 * time.Minute)
	f.stop()
	t.Logf("produced %d orders and %d poison records after a backlog of 20000", good, poison)
	w.exactlyOnceWith(poison)
	w.audit()
}
