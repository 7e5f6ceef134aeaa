package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sluice-etl/sluice/pkg/gen"
)

// Progress is drawn by this small renderer rather than a library: it is
// one line, and a dependency would buy nothing but terminal-width tricks.
const (
	barWidth       = 28
	ttyInterval    = 200 * time.Millisecond // redraws per second on a terminal
	lineInterval   = 5 * time.Second        // progress lines in logs and pipes
	updateInterval = time.Second            // how often Produce reports when not on a terminal
)

// isTerminal reports whether f is a character device that is not "dumb",
// which is what progress bars need; it errs on the side of plain lines.
func isTerminal(f *os.File) bool {
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressUI renders gen.Progress on w: a bar redrawn in place on a
// terminal, otherwise a line every lineInterval. Its methods are called
// serially (gen.Produce guarantees it for update; finish runs after
// Produce returned).
type progressUI struct {
	w   io.Writer
	tty bool

	lastLine    time.Time
	eventsStart time.Duration // Elapsed when the events phase began
	drawn       bool
}

func newProgressUI(w io.Writer, tty bool) *progressUI {
	return &progressUI{w: w, tty: tty, lastLine: time.Now()}
}

// interval is how often update wants to be called.
func (u *progressUI) interval() time.Duration {
	if u.tty {
		return ttyInterval
	}
	return updateInterval
}

func (u *progressUI) update(p gen.Progress) {
	// The events phase began at about the last reference-phase report;
	// rates count from there so that reference data does not skew them.
	if p.Phase == gen.PhaseReference {
		u.eventsStart = p.Elapsed
	}
	if u.tty {
		fmt.Fprintf(u.w, "\r%s\x1b[K", u.render(p, true))
		u.drawn = true
		return
	}
	if p.Phase == gen.PhaseDone || time.Since(u.lastLine) < lineInterval {
		return // the summary follows
	}
	u.lastLine = time.Now()
	fmt.Fprintf(u.w, "sluice-gen: progress: %s\n", u.render(p, false))
}

// finish ends the bar's line so that what follows starts on its own.
func (u *progressUI) finish() {
	if u.tty && u.drawn {
		fmt.Fprintln(u.w)
	}
}

func (u *progressUI) render(p gen.Progress, bar bool) string {
	if p.Phase == gen.PhaseReference {
		return fmt.Sprintf("reference data: %d records sent, %d acked", p.Sent.Customers+p.Sent.FxRates, p.Acked.Customers+p.Acked.FxRates)
	}
	var b strings.Builder
	frac := 1.0
	if p.PlannedOrders > 0 {
		frac = float64(p.OrdersDone) / float64(p.PlannedOrders)
	}
	if bar {
		n := int(frac * barWidth)
		b.WriteString("[" + strings.Repeat("=", n))
		if n < barWidth {
			b.WriteString(">" + strings.Repeat(" ", barWidth-n-1))
		}
		b.WriteString("] ")
	}
	fmt.Fprintf(&b, "%3.0f%%  %d/%d orders  %d records", frac*100, p.OrdersDone, p.PlannedOrders, p.Acked.Events())
	if d := (p.Elapsed - u.eventsStart).Seconds(); d > 0 {
		rate := float64(p.Acked.Events()) / d
		fmt.Fprintf(&b, "  %s rec/s", humanRate(rate))
		if p.Phase != gen.PhaseDone && p.OrdersDone > 0 && p.OrdersDone < p.PlannedOrders {
			left := time.Duration(float64(p.PlannedOrders-p.OrdersDone) / float64(p.OrdersDone) * d * float64(time.Second))
			fmt.Fprintf(&b, "  ETA %v", left.Round(time.Second))
		}
	}
	if p.Failed > 0 {
		fmt.Fprintf(&b, "  %d FAILED", p.Failed)
	}
	return b.String()
}

func humanRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e4:
		return fmt.Sprintf("%.1fk", r/1e3)
	default:
		return fmt.Sprintf("%.0f", r)
	}
}
