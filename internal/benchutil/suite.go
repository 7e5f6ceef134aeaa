package benchutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// This file is the report of the side-by-side suite (bench/sidebyside_*,
// `make bench`): the figures of every case of one run, the targets of
// issue 8 computed from them, the table printed at the end of the run and
// bin/bench.json. It knows nothing about how a figure was measured; the
// bench fills a Report and calls Evaluate and Format.

// Case keys, as issue 8 letters them.
const (
	CaseSluiceJSON = "a" // Sluice, JSON orders, [order_items]
	CaseSluiceAvro = "b" // Sluice, Avro orders, [order_items, currency, customer, fraud]
	CaseEngine     = "c" // ClickHouse's Kafka engine + materialized view, JSON
	CaseInsertOnly = "d" // prebuilt rows inserted with clickhouse-go
	CaseConsume    = "e" // franz-go group draining the JSON topic
	CaseLatency    = "f" // steady produce rate, produce→queryable
)

// Case is one loader's figures. A figure that does not apply is nil: the
// Kafka engine has no loader process, the consume-only case writes no
// parts. Per-row figures divide by Rows.
type Case struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	// Rows is how many rows the case loaded (consumed, for e).
	Rows int64 `json:"rows"`
	// Seconds runs from the loader's start (process start, CREATE TABLE
	// of the Kafka engine, the first INSERT, the first produce for f) to
	// the moment the last row was visible to a SELECT (consumed, for e).
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_s"`
	// LoaderCPUUsPerRow is the loader process's user+sys CPU over the
	// case, per row (/proc/<pid>/stat).
	LoaderCPUUsPerRow *float64 `json:"loader_cpu_us_per_row"`
	// ServerCPUUsPerRow is clickhouse-server's CPU from the start until the
	// merges the case's parts started have finished; ServerLoadCPUUsPerRow
	// stops when the last row is visible.
	ServerCPUUsPerRow     *float64 `json:"server_cpu_us_per_row"`
	ServerLoadCPUUsPerRow *float64 `json:"server_load_cpu_us_per_row"`
	// MergeSeconds is how long the merges took to settle after the load.
	MergeSeconds *float64 `json:"merge_settle_seconds"`
	// PeakRSSMB is the loader's VmHWM.
	PeakRSSMB *float64 `json:"peak_rss_mb"`
	// PartsCreated counts the parts INSERTs created in the target table
	// (system.parts, level 0, active or not, read right after the load);
	// PartsAfterMerges the active parts once merges settled.
	PartsCreated     *int64   `json:"parts_created"`
	PartsPerMillion  *float64 `json:"parts_per_million_rows"`
	PartsAfterMerges *int64   `json:"parts_after_merges"`
	// FirstVisibleSeconds runs from the same start as Seconds to the
	// first row visible to a SELECT (consumed, for e).
	FirstVisibleSeconds *float64 `json:"first_visible_seconds"`
	// OtherCores is the CPU that processes other than the loader, the
	// server, the broker and the bench used during the load, in cores:
	// other sessions on a shared machine, and the kernel's writeback.
	OtherCores *float64 `json:"other_processes_cores"`
	Latency    *Latency `json:"latency,omitempty"`
	// WallSeconds is the whole case: set-up, load, merges, checks.
	WallSeconds float64 `json:"wall_seconds"`
	Note        string  `json:"note,omitempty"`
	// Err is why the case has no figures; the run fails.
	Err string `json:"error,omitempty"`
}

// Latency is case f's produce→queryable distribution, in milliseconds.
type Latency struct {
	Samples int64   `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P95Ms   float64 `json:"p95_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	// ResolutionMs is the polling period: a row is counted visible at the
	// first poll that sees it, so a latency is late by at most this.
	ResolutionMs float64 `json:"resolution_ms"`
}

// Target is one of issue 8's targets evaluated on a run.
type Target struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	// Value is nil when a case it needs failed.
	Value *float64 `json:"value"`
	// Op is "<=" or ">="; empty for a figure without a target.
	Op    string  `json:"op,omitempty"`
	Limit float64 `json:"limit,omitempty"`
	// Verdict is PASS, MISS, "n/a" (a case failed) or "info".
	Verdict string `json:"verdict"`
}

// Report is one run of the suite.
type Report struct {
	Date    string            `json:"date"`
	Commit  string            `json:"commit"`
	Machine string            `json:"machine"`
	Setup   map[string]string `json:"setup"`
	Cases   []Case            `json:"cases"`
	Targets []Target          `json:"targets"`
	Notes   []string          `json:"notes,omitempty"`
}

// Case returns the case with key k, or nil.
func (r *Report) Case(k string) *Case {
	if r == nil {
		return nil
	}
	for i := range r.Cases {
		if r.Cases[i].Key == k && r.Cases[i].Err == "" {
			return &r.Cases[i]
		}
	}
	return nil
}

// Failed lists the cases that have an error.
func (r *Report) Failed() []string {
	var out []string
	for _, c := range r.Cases {
		if c.Err != "" {
			out = append(out, fmt.Sprintf("(%s) %s: %s", c.Key, c.Name, c.Err))
		}
	}
	return out
}

// Evaluate computes issue 8's targets from the cases (replacing any);
// maxWaitMs is case f's batch max_wait.
func (r *Report) Evaluate(maxWaitMs float64) {
	a, b, c, d, f := r.Case(CaseSluiceJSON), r.Case(CaseSluiceAvro), r.Case(CaseEngine), r.Case(CaseInsertOnly), r.Case(CaseLatency)
	// Each figure needs its cases and their figures; nil otherwise.
	div := func(x, y *float64) *float64 {
		if x == nil || y == nil || *y == 0 {
			return nil
		}
		return ptr(*x / *y)
	}
	sum := func(x, y *float64) *float64 {
		if x == nil || y == nil {
			return nil
		}
		return ptr(*x + *y)
	}
	field := func(cs *Case, get func(*Case) *float64) *float64 {
		if cs == nil {
			return nil
		}
		return get(cs)
	}
	loader := func(cs *Case) *float64 { return cs.LoaderCPUUsPerRow }
	server := func(cs *Case) *float64 { return cs.ServerCPUUsPerRow }
	rate := func(cs *Case) *float64 { return ptr(cs.RowsPerSec) }
	parts := func(cs *Case) *float64 { return cs.PartsPerMillion }
	p99 := func(cs *Case) *float64 {
		if cs.Latency == nil {
			return nil
		}
		return ptr(cs.Latency.P99Ms)
	}
	r.Targets = []Target{
		target("a_loader_cpu", "(a) JSON: loader CPU µs/row", field(a, loader), "<=", 2.5),
		target("a_total_cpu_vs_engine", "(a) JSON: (loader + server) CPU/row ÷ (c) engine's server CPU/row",
			div(sum(field(a, loader), field(a, server)), field(c, server)), "<=", 2.0),
		target("a_rate_vs_engine", "(a) JSON: rows/s ÷ (c) engine's rows/s", div(field(a, rate), field(c, rate)), ">=", 2.0),
		target("a_server_cpu", "(a) JSON: server CPU µs/row (item 3)", field(a, server), "<=", 1.0),
		target("b_loader_cpu", "(b) Avro, all transforms: loader CPU µs/event", field(b, loader), "<=", 4.0),
		target("b_rate_vs_insert_only", "(b) Avro, all transforms: rows/s ÷ (d) insert-only rows/s", div(field(b, rate), field(d, rate)), ">=", 0.5),
		target("f_p99", fmt.Sprintf("(f) p99 produce→queryable ms (max_wait %.0f ms + 300)", maxWaitMs), field(f, p99), "<=", maxWaitMs+300),
		target("a_parts_per_million", "(a) JSON: parts per million rows", field(a, parts), "", 0),
		target("b_parts_per_million", "(b) Avro: parts per million rows", field(b, parts), "", 0),
		target("c_parts_per_million", "(c) Kafka engine: parts per million rows", field(c, parts), "", 0),
	}
}

func target(key, name string, v *float64, op string, limit float64) Target {
	t := Target{Key: key, Name: name, Value: v, Op: op, Limit: limit}
	switch {
	case op == "":
		t.Verdict = "info"
	case v == nil || math.IsNaN(*v):
		t.Verdict = "n/a"
	case op == "<=" && *v <= limit, op == ">=" && *v >= limit:
		t.Verdict = "PASS"
	default:
		t.Verdict = "MISS"
	}
	return t
}

func ptr[T any](v T) *T { return &v }

// F and I make the optional figures of a Case.
func F(v float64) *float64 { return &v }
func I(v int64) *int64     { return &v }

// LoadReport reads a report written by Save; (nil, nil) when there is none.
func LoadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("benchutil: %s: %w", path, err)
	}
	return &r, nil
}

// Save writes the report as indented JSON (through a temporary file, so a
// crash never leaves half a report for the next run to compare with).
func (r *Report) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Format prints the run as one table of cases, then the targets; with a
// previous report, each case is followed by a "prev" row of its figures
// and each target by its previous value.
func (r *Report) Format(w io.Writer, prev *Report) {
	fmt.Fprintf(w, "side-by-side bench, %s, commit %s\n%s\n", r.Date, r.Commit, r.Machine)
	if len(r.Setup) > 0 {
		keys := make([]string, 0, len(r.Setup))
		for k := range r.Setup {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+r.Setup[k])
		}
		fmt.Fprintf(w, "setup: %s\n", strings.Join(parts, " "))
	}
	if prev != nil {
		fmt.Fprintf(w, "prev: the run of %s, commit %s (bin/bench.json before this run)\n", prev.Date, prev.Commit)
	}
	header := []string{"case", "rows", "rows/s", "loader µs/row", "server µs/row", "(load only)", "peak RSS MB",
		"parts", "parts/M rows", "first rows s", "latency p50/p95/p99/max ms", "others (cores)"}
	var rows [][]string
	for _, c := range r.Cases {
		rows = append(rows, caseCells(c.Key+" "+c.Name, &c))
		if pc := prev.Case(c.Key); pc != nil {
			rows = append(rows, caseCells("  prev", pc))
		}
	}
	writeTable(w, header, rows)
	fmt.Fprintln(w)
	header = []string{"target", "value", "prev", "target", "verdict"}
	rows = rows[:0]
	for _, t := range r.Targets {
		lim := "no target"
		if t.Op != "" {
			lim = t.Op + " " + num(t.Limit)
		}
		p := ""
		if prev != nil {
			for _, pt := range prev.Targets {
				if pt.Key == t.Key {
					p = optNum(pt.Value)
				}
			}
		}
		rows = append(rows, []string{t.Name, optNum(t.Value), p, lim, t.Verdict})
	}
	writeTable(w, header, rows)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, c := range r.Cases {
		if c.Note != "" {
			fmt.Fprintf(w, "(%s): %s\n", c.Key, c.Note)
		}
		if c.Err != "" {
			fmt.Fprintf(w, "(%s) FAILED: %s\n", c.Key, c.Err)
		}
	}
}

func caseCells(label string, c *Case) []string {
	if c.Err != "" {
		return []string{label, "failed", "", "", "", "", "", "", "", "", "", ""}
	}
	lat := ""
	if l := c.Latency; l != nil {
		lat = fmt.Sprintf("%.0f/%.0f/%.0f/%.0f", l.P50Ms, l.P95Ms, l.P99Ms, l.MaxMs)
	}
	parts := "—"
	if c.PartsCreated != nil {
		parts = fmt.Sprint(*c.PartsCreated)
	}
	return []string{label, fmt.Sprint(c.Rows), rate(c.RowsPerSec), optNum(c.LoaderCPUUsPerRow), optNum(c.ServerCPUUsPerRow),
		optNum(c.ServerLoadCPUUsPerRow), optNum(c.PeakRSSMB), parts, optNum(c.PartsPerMillion), optNum(c.FirstVisibleSeconds), lat,
		optNum(c.OtherCores)}
}

func rate(v float64) string {
	if v >= 10_000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func optNum(v *float64) string {
	if v == nil {
		return "—"
	}
	return num(*v)
}

// num prints three significant digits, more for large values.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func writeTable(w io.Writer, header []string, rows [][]string) {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var sb strings.Builder
		sb.WriteString("|")
		for i, c := range cells {
			sb.WriteString(" ")
			sb.WriteString(c)
			sb.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))))
			sb.WriteString(" |")
		}
		fmt.Fprintln(w, sb.String())
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}
