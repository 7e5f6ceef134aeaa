//go:build integration

package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-etl/sluice/internal/benchutil"
)

// Cases (d) and (e): the two limits a loader sits between, each run by
// bench/cmd/bench-limits as its own process (its CPU and VmHWM from
// /proc/<pid>, like Sluice's).
//
// (d) insert-only: the rows (b) loaded, read back into the process's
// memory before the clock starts (so the very rows (b) produced, enriched),
// inserted into a fresh orders table with clickhouse-go's columnar appends
// in INSERTs of Sluice's default batch size, one goroutine per Kafka
// partition. The clock runs from "go" to the last row visible; the loader
// CPU is counted from "go". Its RSS includes the rows held in memory.
//
// (e) consume-only: a new franz-go group draining the JSON topic from the
// log start and discarding; the clock runs from starting the process
// (group join included, as for Sluice) to the last record consumed.

func (s *suite) caseInsertOnly() benchutil.Case {
	c := benchutil.Case{Name: fmt.Sprintf("insert-only, %d-row INSERTs", s.blockRows)}
	if err := s.insertOnly(&c); err != nil {
		c.Err = err.Error()
	}
	return c
}

func (s *suite) insertOnly(c *benchutil.Case) error {
	ctx := context.Background()
	src, ok := s.dbs[benchutil.CaseSluiceAvro]
	if !ok || s.report.Case(benchutil.CaseSluiceAvro) == nil {
		return errors.New("needs the rows case (b) loaded, and (b) did not run or failed")
	}
	db, err := s.newDB(benchutil.CaseInsertOnly)
	if err != nil {
		return err
	}
	h, err := s.startLimits("insert", "-addr", clickHouseAddr(), "-src", src+".orders", "-dst", db+".orders",
		"-block", strconv.Itoa(s.blockRows))
	if err != nil {
		return err
	}
	defer h.kill()
	ready, err := h.expect("ready", 10*time.Minute)
	if err != nil {
		return err
	}
	want, _ := strconv.ParseUint(ready, 10, 64)
	cpu0, _, err := h.usage()
	if err != nil {
		return err
	}
	m := s.startMeter(db)
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		return err
	}
	n, err := m.waitRows(ctx, want, 10*time.Minute, func(uint64) (bool, error) { return false, h.alive() })
	if err != nil {
		return err
	}
	if _, err := h.expect("done", time.Minute); err != nil {
		return err
	}
	cpu1, hwm, err := h.usage()
	if err != nil {
		return err
	}
	if err := m.loaded(ctx, cpu1-cpu0); err != nil {
		return err
	}
	h.stop()
	c.Rows = int64(n)
	c.LoaderCPUUsPerRow = benchutil.F(float64((cpu1 - cpu0).Microseconds()) / float64(n))
	c.PeakRSSMB = benchutil.F(float64(hwm) / 1024)
	c.Note = "its peak RSS includes the rows held in memory"
	return m.settle(ctx, c)
}

func (s *suite) caseConsume() benchutil.Case {
	c := benchutil.Case{Name: "consume-only, franz-go group"}
	if err := s.consumeOnly(&c); err != nil {
		c.Err = err.Error()
	}
	return c
}

func (s *suite) consumeOnly(c *benchutil.Case) error {
	ctx := context.Background()
	m := s.startMeter("")
	h, err := s.startLimits("consume", "-brokers", strings.Join(brokers(), ","), "-topic", s.jsonTopic,
		"-group", s.w.name("sbs_e"), "-rows", strconv.Itoa(s.orders))
	if err != nil {
		return err
	}
	defer h.kill()
	if _, err := h.expect("first", 5*time.Minute); err != nil {
		return err
	}
	m.first = time.Since(m.start)
	if _, err := h.expect("done", 10*time.Minute); err != nil {
		return err
	}
	cpu, hwm, err := h.usage()
	if err != nil {
		return err
	}
	if err := m.loaded(ctx, cpu); err != nil {
		return err
	}
	h.stop()
	c.Rows = int64(s.orders)
	c.LoaderCPUUsPerRow = benchutil.F(float64(cpu.Microseconds()) / float64(s.orders))
	c.PeakRSSMB = benchutil.F(float64(hwm) / 1024)
	return m.settle(ctx, c)
}

// limitsProc is one bench-limits process and its event lines.
type limitsProc struct {
	cmd    *exec.Cmd
	pid    string
	stdin  io.WriteCloser
	lines  chan string
	exited chan error
	done   bool
	log    string
}

func (s *suite) startLimits(args ...string) (*limitsProc, error) {
	h := &limitsProc{cmd: exec.Command(s.limits, args...), lines: make(chan string, 16), exited: make(chan error, 1),
		log: filepath.Join(s.w.b.TempDir(), "bench-limits.log")}
	logf, err := os.Create(h.log)
	if err != nil {
		return nil, err
	}
	h.cmd.Stderr = logf
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	h.pid = strconv.Itoa(h.cmd.Process.Pid)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		h.exited <- h.cmd.Wait()
		logf.Close()
	}()
	return h, nil
}

// expect waits for the event line that starts with event and returns the
// rest of it.
func (h *limitsProc) expect(event string, timeout time.Duration) (string, error) {
	t := time.After(timeout)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				return "", fmt.Errorf("bench-limits exited before %q: %s", event, tail(h.log))
			}
			if rest, ok := strings.CutPrefix(l, event); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-t:
			return "", fmt.Errorf("bench-limits: no %q within %v: %s", event, timeout, tail(h.log))
		}
	}
}

// alive is nil while the process runs.
func (h *limitsProc) alive() error {
	select {
	case err := <-h.exited:
		h.done = true
		return fmt.Errorf("bench-limits exited (%v): %s", err, tail(h.log))
	default:
		return nil
	}
}

func (h *limitsProc) usage() (time.Duration, uint64, error) {
	cpu, ok := benchutil.ProcCPU(h.pid)
	hwm := benchutil.StatusKB("/proc/"+h.pid+"/status", "VmHWM:")
	if !ok || hwm == 0 {
		return 0, 0, fmt.Errorf("cannot read /proc/%s", h.pid)
	}
	return cpu, hwm, nil
}

// stop closes stdin, on which the process exits.
func (h *limitsProc) stop() {
	if h.done {
		return
	}
	_ = h.stdin.Close()
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
	h.done = true
}

func (h *limitsProc) kill() {
	if h.done {
		return
	}
	_ = h.cmd.Process.Kill()
	<-h.exited
	h.done = true
}
