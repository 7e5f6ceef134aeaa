package benchutil

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func sampleReport() *Report {
	return &Report{
		Date: "2026-12-01T00:00:00Z", Commit: "abc", Machine: "2 cores",
		Cases: []Case{
			{Key: CaseSluiceJSON, Name: "sluice json", Rows: 3_000_000, RowsPerSec: 400_000,
				LoaderCPUUsPerRow: F(2.0), ServerCPUUsPerRow: F(1.0), PartsPerMillion: F(50), PartsCreated: I(150)},
			{Key: CaseSluiceAvro, Name: "sluice avro", Rows: 3_000_000, RowsPerSec: 100_000, LoaderCPUUsPerRow: F(5.0)},
			{Key: CaseEngine, Name: "engine", Rows: 3_000_000, RowsPerSec: 160_000, ServerCPUUsPerRow: F(1.6), PartsPerMillion: F(15)},
			{Key: CaseInsertOnly, Name: "insert", Rows: 3_000_000, RowsPerSec: 250_000},
			{Key: CaseLatency, Name: "latency", Rows: 1_200_000, Latency: &Latency{P50Ms: 900, P95Ms: 1200, P99Ms: 1400, MaxMs: 2000}},
		},
	}
}

func TestEvaluate(t *testing.T) {
	r := sampleReport()
	r.Evaluate(1000)
	want := map[string]struct {
		value   float64
		verdict string
	}{
		"a_loader_cpu":          {2.0, "PASS"},
		"a_total_cpu_vs_engine": {3.0 / 1.6, "PASS"},
		"a_rate_vs_engine":      {2.5, "PASS"},
		"a_server_cpu":          {1.0, "PASS"},
		"b_loader_cpu":          {5.0, "MISS"},
		"b_rate_vs_insert_only": {0.4, "MISS"},
		"f_p99":                 {1400, "MISS"},
		"a_parts_per_million":   {50, "info"},
		"c_parts_per_million":   {15, "info"},
	}
	seen := 0
	for _, tg := range r.Targets {
		w, ok := want[tg.Key]
		if !ok {
			continue
		}
		seen++
		if tg.Value == nil || *tg.Value < w.value-1e-9 || *tg.Value > w.value+1e-9 || tg.Verdict != w.verdict {
			t.Errorf("%s: got %v %s, want %v %s", tg.Key, tg.Value, tg.Verdict, w.value, w.verdict)
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of %d targets", seen, len(want))
	}
}

func TestEvaluateFailedCaseIsNotApplicable(t *testing.T) {
	r := sampleReport()
	r.Cases[2].Err = "engine stuck" // (c)
	r.Evaluate(1000)
	for _, tg := range r.Targets {
		if strings.Contains(tg.Key, "engine") && (tg.Value != nil || tg.Verdict != "n/a") {
			t.Errorf("%s: got %v %s, want nil n/a", tg.Key, tg.Value, tg.Verdict)
		}
		if tg.Key == "a_loader_cpu" && tg.Verdict != "PASS" {
			t.Errorf("a_loader_cpu: %s, want PASS (needs only a)", tg.Verdict)
		}
	}
	if f := r.Failed(); len(f) != 1 || !strings.Contains(f[0], "engine stuck") {
		t.Errorf("Failed() = %q", f)
	}
}

func TestSaveLoadFormatWithPrevious(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin", "bench.json")
	if prev, err := LoadReport(path); prev != nil || err != nil {
		t.Fatalf("LoadReport of a missing file = %v, %v; want nil, nil", prev, err)
	}
	prev := sampleReport()
	prev.Evaluate(1000)
	if err := prev.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Case(CaseSluiceJSON).RowsPerSec != 400_000 || *got.Case(CaseLatency).Latency != *prev.Case(CaseLatency).Latency {
		t.Fatalf("round trip lost figures: %+v", got.Cases)
	}

	cur := sampleReport()
	cur.Date = "2026-12-02T00:00:00Z"
	cur.Cases[0].RowsPerSec = 500_000
	cur.Cases[0].LoaderCPUUsPerRow = F(1.5)
	cur.Evaluate(1000)
	var out bytes.Buffer
	cur.Format(&out, got)
	s := out.String()
	for _, want := range []string{
		"prev: the run of 2026-12-01T00:00:00Z",
		"| a sluice json ", "| 500k ", "|   prev ", "| 400k ",
		"| (a) JSON: loader CPU µs/row ", "| 1.50 ", "| 2.00 ", "| <= 2.50 ", "PASS",
		"| 900/1200/1400/2000 ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// Without a previous report: no prev rows.
	out.Reset()
	cur.Format(&out, nil)
	if strings.Contains(out.String(), "prev:") || strings.Contains(out.String(), "|   prev ") {
		t.Errorf("prev shown without a previous report:\n%s", out.String())
	}
}
