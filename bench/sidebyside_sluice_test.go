//go:build integration

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-etl/sluice/internal/benchutil"
	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/config"
)

// Cases (a) and (b): `sluice run` loading a topic produced beforehand. The
// clock runs from starting the process (start-up, the reference topics'
// bootstrap for b, and the group join included) to the last row visible to
// a SELECT. The loader's CPU and VmHWM are read from /proc/<pid> at that
// moment, before SIGTERM.

func (s *suite) caseSluiceJSON() benchutil.Case {
	return s.sluiceLoad(benchutil.CaseSluiceJSON, "Sluice, JSON, [order_items]", s.jsonTopic, "json", "[order_items]", "", s.orders)
}

func (s *suite) caseSluiceAvro() benchutil.Case {
	extra := fmt.Sprintf(`reference:
  customers_topic: %s
  fx_rates_topic: %s
  base_currency: USD
`, s.customersTopic, s.fxTopic)
	return s.sluiceLoad(benchutil.CaseSluiceAvro, "Sluice, Avro, all transforms", s.avroTopic, "avro",
		"[order_items, currency, customer, fraud]", extra, s.avro)
}

func (s *suite) sluiceLoad(key, name, topic, format, transforms, extra string, want int) benchutil.Case {
	c := benchutil.Case{Name: name}
	if err := s.sluiceLoadInto(&c, key, topic, format, transforms, extra, want); err != nil {
		c.Err = err.Error()
	}
	return c
}

func (s *suite) sluiceLoadInto(c *benchutil.Case, key, topic, format, transforms, extra string, want int) error {
	ctx := context.Background()
	db, err := s.newDB(key)
	if err != nil {
		return err
	}
	group := db + "_g"
	ends := s.w.endOffsets(topic)
	m := s.startMeter(db)
	p, err := s.startSluice(db, group, topic, format, transforms, extra)
	if err != nil {
		return err
	}
	defer p.kill()
	profiled := s.profile(p, key)
	// Everything committed but rows missing: the rest was dead-lettered.
	var lastCheck time.Time
	n, err := m.waitRows(ctx, uint64(want), 10*time.Minute, func(uint64) (bool, error) {
		if err := p.alive(); err != nil {
			return false, err
		}
		if time.Since(lastCheck) < time.Second {
			return false, nil
		}
		lastCheck = time.Now()
		return itest.EqualOffsets(s.w.committed(group, topic), ends), nil
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(p.log))
	}
	cpu, hwm, err := p.usage()
	if err != nil {
		return err
	}
	if err := m.loaded(ctx, cpu); err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		c.Note = "profile: " + err.Error()
	}
	if err := p.stop(); err != nil {
		return err
	}
	c.Rows = int64(n)
	c.LoaderCPUUsPerRow = benchutil.F(float64(cpu.Microseconds()) / float64(n))
	c.PeakRSSMB = benchutil.F(float64(hwm) / 1024)
	if int(n) < want {
		c.Note = fmt.Sprintf("%d of %d records loaded: the rest were dead-lettered (%s)", n, want, group+"_dlq")
	}
	if err := m.settle(ctx, c); err != nil {
		return err
	}
	return s.checkExactlyOnce(ctx, db, n)
}

// checkExactlyOnce fails a case whose table holds a record twice.
func (s *suite) checkExactlyOnce(ctx context.Context, db string, n uint64) error {
	var rows, distinct uint64
	if err := s.w.ch.QueryRow(ctx, fmt.Sprintf("SELECT count(), uniqExact(_topic, _partition, _offset) FROM `%s`.orders", db)).Scan(&rows, &distinct); err != nil {
		return err
	}
	if rows != n || distinct != n {
		return fmt.Errorf("%s.orders holds %d rows (%d distinct offsets), %d were visible at the end of the load", db, rows, distinct, n)
	}
	return nil
}

// sluiceProc is one `sluice run` subprocess.
type sluiceProc struct {
	cmd    *exec.Cmd
	pid    string
	exited chan error
	done   bool
	log    string
	logf   *os.File
	admin  string // the admin address, when profiled
}

// profile saves a CPU profile of p's first SLUICE_BENCH_PROFILE_SECONDS
// (15) seconds of loading as <SLUICE_BENCH_PROFILE_DIR>/<case>.pprof and a
// heap profile taken right after it as <case>.heap.pprof, read
// from its admin server (admin.pprof), while the case runs. The channel
// gives the outcome once the profile is written (nil at once when not
// profiling). Profiling costs the loader a little CPU (the sampling and
// the profile's encoding), counted in its figures.
func (s *suite) profile(p *sluiceProc, key string) <-chan error {
	out := make(chan error, 1)
	if s.profileDir == "" || p.admin == "" {
		out <- nil
		return out
	}
	go func() {
		out <- func() error {
			// The admin server comes up once start-up reached ClickHouse.
			deadline := time.Now().Add(30 * time.Second)
			for {
				c, err := net.DialTimeout("tcp", p.admin, time.Second)
				if err == nil {
					c.Close()
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("admin server at %s never answered: %w", p.admin, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			cpu := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, s.profileSeconds)
			if err := s.saveProfile(cpu, key+".pprof"); err != nil {
				return err
			}
			// The heap profile's inuse figures are the live objects as
			// of the last collection: what the collector marks each cycle.
			if err := s.saveProfile(fmt.Sprintf("http://%s/debug/pprof/heap", p.admin), key+".heap.pprof"); err != nil {
				return err
			}
			fmt.Printf("(%s) CPU profile of the first %d s and a heap profile at its end: %s\n", key, s.profileSeconds,
				filepath.Join(s.profileDir, key+"{,.heap}.pprof"))
			return nil
		}()
	}()
	return out
}

// saveProfile writes the profile served at url to name in the profile
// directory.
func (s *suite) saveProfile(url, name string) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	if err := os.MkdirAll(s.profileDir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(s.profileDir, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startSluice writes a config for one pipeline and starts `sluice run`
// with it; its output goes to a log file, quoted when the case fails.
func (s *suite) startSluice(db, group, topic, format, transforms, extra string) (*sluiceProc, error) {
	dir := s.w.b.TempDir()
	path := s.writeConfig(dir, db, group, topic, format, transforms, extra, "")
	p := &sluiceProc{log: filepath.Join(dir, "sluice.log"), exited: make(chan error, 1)}
	if keep := os.Getenv("SLUICE_BENCH_LOG_DIR"); keep != "" {
		// Kept after the run (TempDir is removed), one file per case.
		p.log = filepath.Join(keep, db+".log")
	}
	if s.profileDir != "" {
		// The profile is fetched from the admin server, so it needs a
		// known port and admin.pprof.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p.admin = ln.Addr().String()
		ln.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		cfg := strings.Replace(string(b), "  listen: 127.0.0.1:0\n", "  listen: "+p.admin+"\n  pprof: true\n", 1)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
	}
	// Sluice creates the DLQ topic when it starts.
	s.w.b.Cleanup(func() { _, _ = s.w.adm.DeleteTopics(context.Background(), group+"_dlq") })
	if _, err := config.Load(path); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var err error
	if p.logf, err = os.Create(p.log); err != nil {
		return nil, err
	}
	p.cmd = exec.Command(s.sluice, "run", "-c", path)
	p.cmd.Stdout, p.cmd.Stderr = p.logf, p.logf
	if err := p.cmd.Start(); err != nil {
		p.logf.Close()
		return nil, err
	}
	p.pid = strconv.Itoa(p.cmd.Process.Pid)
	go func() { p.exited <- p.cmd.Wait() }()
	return p, nil
}

// alive is nil while the process runs.
func (p *sluiceProc) alive() error {
	if p.done {
		return errors.New("sluice exited")
	}
	select {
	case err := <-p.exited:
		p.done = true
		return fmt.Errorf("sluice exited early (%v):\n%s", err, tail(p.log))
	default:
		return nil
	}
}

// usage is the process's CPU so far and its peak RSS in kB.
func (p *sluiceProc) usage() (time.Duration, uint64, error) {
	cpu, ok := benchutil.ProcCPU(p.pid)
	hwm := benchutil.StatusKB("/proc/"+p.pid+"/status", "VmHWM:")
	if !ok || hwm == 0 {
		return 0, 0, fmt.Errorf("cannot read /proc/%s", p.pid)
	}
	return cpu, hwm, nil
}

// stop sends SIGTERM and waits for a clean exit (it flushes and commits).
func (p *sluiceProc) stop() error {
	if p.done {
		return nil
	}
	defer p.logf.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.done = true
		if err != nil {
			return fmt.Errorf("sluice exited with %v:\n%s", err, tail(p.log))
		}
		return nil
	case <-time.After(60 * time.Second):
		p.kill()
		return fmt.Errorf("sluice did not stop within 60s of SIGTERM")
	}
}

// kill ends a process the case gave up on; a no-op once it exited.
func (p *sluiceProc) kill() {
	if p.done {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.done = true
	p.logf.Close()
}
