//go:build integration

package integration

// Start-up against services that are not there yet (issue 7, item 9): the
// real `sluice` binary, with Kafka or ClickHouse at a loopback port nothing
// listens on, which a forwarding proxy to the real service opens later. An
// outage waits (WARN per attempt) up to startup_timeout and then exits 1; a
// signal while waiting exits 0; a config the services refuse exits 2.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/internal/itest"
)

// freePort is a loopback address nothing listens on: a port the kernel
// just handed out and we closed again.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// forward starts listening on addr and copies every connection both ways
// to upstream, until the test ends.
func forward(t *testing.T, addr, upstream string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy listen %s: %v", addr, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(up, down)
			go pipe(down, up)
		}
	}()
}

// startupConfig writes a config with the given Kafka and ClickHouse
// addresses and one pipeline (orders, Avro, order_items) into w's database.
func (w *world) startupConfig(kafka, ch, extra string) string {
	w.t.Helper()
	yaml := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  dlq_topic: %s
  session_timeout: 6s
  rebalance_timeout: 10s
clickhouse:
  addr: [%s]
  database: %s
  dial_timeout: 2s
admin:
  listen: ""
log:
  level: info
batch:
  max_wait: 200ms
shutdown_timeout: 10s
%s
pipelines:
  - {name: orders, topic: %s, schema: %s, table: orders, transforms: [order_items]}
`, kafka, w.name("g"), w.name("dlq"), ch, w.db, extra, w.name("orders"),
		filepath.Join(repoRoot(), "schemas", "avro", "order.avsc"))
	path := filepath.Join(w.t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// sluiceProc is one run of the binary, its output in a file.
type sluiceProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  string
	done chan struct{}
	err  error
}

func startSluiceBinary(t *testing.T, args ...string) *sluiceProc {
	t.Helper()
	return startSluiceBinaryEnv(t, nil, args...)
}

// startSluiceBinaryEnv is startSluiceBinary with env (KEY=value) added to
// the process's environment.
func startSluiceBinaryEnv(t *testing.T, env []string, args ...string) *sluiceProc {
	t.Helper()
	p := &sluiceProc{t: t, out: filepath.Join(t.TempDir(), "sluice.log"), done: make(chan struct{})}
	f, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(sluiceBinary(t), args...)
	// The test's addresses, not the developer's overrides.
	p.cmd.Env = append(append(os.Environ(), "SLUICE_KAFKA_BROKERS=", "SLUICE_CLICKHOUSE_ADDR="), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if bad, _ := itest.UnlabelledErrors(p.log()); len(bad) > 0 {
			t.Errorf("ERROR records without stage or error_type:\n%s", strings.Join(bad, "\n"))
		}
	})
	return p
}

func (p *sluiceProc) log() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// exited reports whether the process has ended.
func (p *sluiceProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns the exit code within d, failing the test otherwise.
func (p *sluiceProc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("sluice still running after %v; log:\n%s", d, p.log())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode() // -1 when a signal killed it
	default:
		p.t.Fatal(p.err)
		return -1
	}
}

// waitLog waits until the output holds s.
func (p *sluiceProc) waitLog(s string, d time.Duration) {
	p.t.Helper()
	waitUntil(p.t, fmt.Sprintf("%q in the log", s), d, func() bool {
		if p.exited() && !strings.Contains(p.log(), s) {
			p.t.Fatalf("sluice exited (%v) before logging %q; log:\n%s", p.err, s, p.log())
		}
		return strings.Contains(p.log(), s)
	})
}

// TestStartupWaitsForServices starts `sluice run` while ClickHouse (then,
// in a second run, the Kafka seed broker) is unreachable: a port nothing
// listens on, opened ~3 s later by a proxy to the real service. Sluice must
// keep retrying (one WARN per attempt, no exit), come up once the port
// answers, load every record, and stop with exit 0 on SIGTERM.
//
// Kafka: only the seed connection goes through the proxy. The broker
// advertises 127.0.0.1:9092 in its metadata, so once the seed answered,
// the clients talk to the real broker directly. What is tested is what
// happens when a broker restarts or a pod starts first: the seed is
// refused at start-up and later accepts.
func TestStartupWaitsForServices(t *testing.T) {
	for _, svc := range []string{"ClickHouse", "Kafka"} {
		t.Run(svc, func(t *testing.T) {
			w := newWorld(t)
			w.createTopic(w.name("orders"), 2)
			const n = 500
			w.produceOrders(w.name("orders"), 3, n)

			late := freePort(t)
			kafka, ch, upstream := brokers[0], clickhouse, clickhouse
			if svc == "Kafka" {
				kafka, upstream = late, brokers[0]
			} else {
				ch = late
			}
			started := time.Now()
			p := startSluiceBinary(t, "run", "-c", w.startupConfig(kafka, ch, "startup_timeout: 30s"))

			p.waitLog("attempt=2", 10*time.Second) // retrying, not exited
			time.Sleep(time.Until(started.Add(3 * time.Second)))
			if p.exited() {
				t.Fatalf("sluice exited (%v) while %s was unreachable; log:\n%s", p.err, svc, p.log())
			}
			forward(t, late, upstream)

			waitUntil(t, "all orders loaded", 60*time.Second, func() bool {
				if p.exited() {
					t.Fatalf("sluice exited (%v); log:\n%s", p.err, p.log())
				}
				return w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db)) == n
			})
			log := p.log()
			for _, want := range []string{
				`level=WARN msg="start-up: service unreachable, retrying" stage=startup service=` + svc + ` addr=` + late + ` attempt=1`,
				"connection refused",
				`msg="start-up: service reachable" stage=startup service=` + svc,
			} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(20 * time.Second); code != 0 {
				t.Fatalf("exit %d after SIGTERM, want 0; log:\n%s", code, p.log())
			}
		})
	}
}

// TestStartupTimeoutExitsOne: a service unreachable for longer than
// startup_timeout (3 s) ends `run` and `check` with exit 1 and a message
// naming the service and its address, not "invalid config" and not 2.
func TestStartupTimeoutExitsOne(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct{ svc, cmd string }{{"ClickHouse", "run"}, {"Kafka", "run"}, {"ClickHouse", "check"}} {
		t.Run(c.svc+"/"+c.cmd, func(t *testing.T) {
			dead := freePort(t)
			kafka, ch, key := brokers[0], dead, "clickhouse.addr"
			if c.svc == "Kafka" {
				kafka, ch, key = dead, clickhouse, "kafka.brokers"
			}
			start := time.Now()
			p := startSluiceBinary(t, c.cmd, "-c", w.startupConfig(kafka, ch, "startup_timeout: 3s"))
			code := p.wait(20 * time.Second)
			took := time.Since(start)
			log := p.log()
			want := fmt.Sprintf("sluice: %s at %s (%s) not reachable within startup_timeout 3s", c.svc, dead, key)
			if code != 1 || !strings.Contains(log, want) || strings.Contains(log, "invalid config") {
				t.Fatalf("exit %d, want 1 with %q; log:\n%s", code, want, log)
			}
			if strings.Count(log, "start-up: service unreachable, retrying") < 2 {
				t.Errorf("fewer than 2 retries logged in 3 s:\n%s", log)
			}
			if took < 3*time.Second || took > 10*time.Second {
				t.Errorf("exited after %v, want just after startup_timeout (3s)", took)
			}
		})
	}
}

// TestStartupSignalExitsZero sends SIGTERM while `sluice run` waits for an
// unreachable ClickHouse (then Kafka, with ClickHouse up): it exits 0 at
// once and logs "interrupted during start-up". `sluice check` interrupted
// the same way exits 1: it checked nothing, and 0 would say it had.
func TestStartupSignalExitsZero(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		svc, cmd string
		code     int
	}{{"ClickHouse", "run", 0}, {"Kafka", "run", 0}, {"ClickHouse", "check", 1}} {
		t.Run(c.svc+"/"+c.cmd, func(t *testing.T) {
			dead := freePort(t)
			kafka, ch := brokers[0], dead
			if c.svc == "Kafka" {
				kafka, ch = dead, clickhouse
			}
			p := startSluiceBinary(t, c.cmd, "-c", w.startupConfig(kafka, ch, "startup_timeout: 60s"))
			p.waitLog("service="+c.svc+" addr="+dead+" attempt=2", 15*time.Second)
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			code := p.wait(10 * time.Second)
			if took := time.Since(sent); took > 2*time.Second {
				t.Errorf("exited %v after SIGTERM, want at once", took)
			}
			log := p.log()
			if code != c.code || !strings.Contains(log, `level=INFO msg="interrupted during start-up"`) || strings.Contains(log, "invalid config") {
				t.Fatalf("exit %d, want %d with an INFO \"interrupted during start-up\"; log:\n%s", code, c.code, log)
			}
		})
	}
}

// TestStartupConfigErrorExitsTwo: what the services answer about the config
// itself is not waited for, even with a long startup_timeout: an unknown
// database exits 2 naming clickhouse.database, and a port that does not
// speak Kafka (ClickHouse's HTTP port) exits 2 naming kafka.brokers.
func TestStartupConfigErrorExitsTwo(t *testing.T) {
	w := newWorld(t)
	httpPort := itestClickHouseHTTP()
	for _, c := range []struct {
		name, kafka, ch, db, key, fragment string
	}{
		{"unknown database", brokers[0], clickhouse, "no_such_db_" + w.suffix, "clickhouse.database", "does not exist: run `sluice migrate` first"},
		{"not Kafka at that port", httpPort, clickhouse, w.db, "kafka.brokers", "is your broker port correct?"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := w.startupConfig(c.kafka, c.ch, "startup_timeout: 60s")
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), "database: "+w.db, "database: "+c.db, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"run", "check"} {
				start := time.Now()
				p := startSluiceBinary(t, cmd, "-c", cfg)
				code := p.wait(15 * time.Second)
				log := p.log()
				if code != 2 || !strings.Contains(log, "sluice: invalid config:") || !strings.Contains(log, "  "+c.key+": ") || !strings.Contains(log, c.fragment) {
					t.Fatalf("%s: exit %d, want 2 naming %s with %q; log:\n%s", cmd, code, c.key, c.fragment, log)
				}
				if strings.Contains(log, "retrying") || time.Since(start) > 10*time.Second {
					t.Errorf("%s: a config error was retried (%v); log:\n%s", cmd, time.Since(start), log)
				}
			}
		})
	}
}

// itestClickHouseHTTP is ClickHouse's HTTP address: same host as the
// native one, port 8123 (integration/clickhouse.sh).
func itestClickHouseHTTP() string {
	host, _, err := net.SplitHostPort(clickhouse)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, "8123")
}
