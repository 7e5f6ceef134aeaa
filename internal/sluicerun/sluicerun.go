// Package sluicerun runs a Sluice inside a test's process for the integration
// and cluster tests. It is apart from internal/itest because it imports
// pkg/service (and so pkg/sink), which itest's users in pkg/sink cannot.
package sluicerun

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/service"
)

// Sluice is one Sluice run in the test's process (service.New and Run),
// logging warnings and errors to stderr.
type Sluice struct {
	Svc    *service.Service
	cancel context.CancelFunc
	done   chan error
}

// Start starts cfg's Sluice; it is stopped when the test ends if
// Stop was not called. A start-up error fails the test.
func Start(tb testing.TB, cfg *config.Config, opts ...service.Option) *Sluice {
	tb.Helper()
	return StartLogging(tb, cfg, os.Stderr, slog.LevelWarn, opts...)
}

// StartLogging is Start with the log from level up written to out (slog's
// text form), for a test that reads it; out must be safe for concurrent
// writes.
func StartLogging(tb testing.TB, cfg *config.Config, out io.Writer, level slog.Level, opts ...service.Option) *Sluice {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := service.New(ctx, cfg, log, opts...)
	if err != nil {
		cancel()
		tb.Fatalf("start sluice: %v", err)
	}
	s := &Sluice{Svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- svc.Run(ctx)
		svc.Close()
	}()
	tb.Cleanup(func() {
		if tb.Failed() && s.done != nil {
			dumpGoroutines(tb)
		}
		s.Stop(tb)
	})
	return s
}

// dumpGoroutines writes the process's goroutines (grouped by stack) to a
// file under SLUICE_TEST_DUMP_DIR (else the system's temporary directory)
// when a test fails with its Sluice still running: where a stalled load
// waits.
func dumpGoroutines(tb testing.TB) {
	dir := cmp.Or(os.Getenv("SLUICE_TEST_DUMP_DIR"), os.TempDir())
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
	f, err := os.CreateTemp(dir, "sluice-"+name+"-*.goroutines")
	if err != nil {
		tb.Logf("goroutine dump: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("goroutine").WriteTo(f, 1); err != nil {
		tb.Logf("goroutine dump: %v", err)
		return
	}
	tb.Logf("the failed test's goroutines, Sluice still running: %s", f.Name())
	tb.Logf("where Sluice's goroutines wait: %s", waits())
}

// waits sums the goroutines up on one line (CI keeps only a test log's
// first line): each group is a goroutine state with the innermost Sluice
// function under it, and how many goroutines are there.
func waits() string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	count := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		state := lines[0]
		if i, j := strings.Index(state, "["), strings.Index(state, "]"); i >= 0 && j > i {
			state = state[i+1 : j]
		}
		state, _, _ = strings.Cut(state, ",") // "select, 3 minutes": one group whatever the wait
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "github.com/sluice-etl/sluice/") && !strings.Contains(l, "internal/sluicerun") {
				fn := strings.TrimPrefix(l, "github.com/sluice-etl/sluice/")
				if i := strings.LastIndex(fn, "("); i > 0 {
					fn = fn[:i]
				}
				count[state+" "+fn]++
				break
			}
		}
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&out, "%s ×%d | ", k, count[k])
	}
	return out.String()
}

// Stop cancels the run (as SIGTERM does) and waits up to 60 s for it to
// end; an error it returns fails the test. A second Stop does nothing.
func (s *Sluice) Stop(tb testing.TB) {
	if s.done == nil {
		return
	}
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			tb.Errorf("sluice returned %v", err)
		}
	case <-time.After(60 * time.Second):
		tb.Error("sluice did not stop within 60s")
	}
	s.done = nil
}
