//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGrafanaDashboardQueriesOnARealPrometheus: Debian's Prometheus (make
// deps installs it) scrapes a Sluice that loads orders, and every query of
// the Grafana dashboard (deploy/grafana/dashboards/sluice.json), with its
// variables filled as Grafana would, is evaluated by it: each must be
// valid PromQL there, the variables' label_values queries must list the
// pipeline and the job, and the panels that show the load must show it —
// rows loaded per second and records consumed above zero, the batch
// latency a positive duration, the assigned partitions the topic's, the
// dead letters counted, the resident memory reported.
func TestGrafanaDashboardQueriesOnARealPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (make deps installs Debian's package): %v", err)
	}
	w := newWorld(t)
	topic := w.name("orders")
	w.createTopic(topic, 3)
	r := w.startSluice(w.sluiceConfig(w.name("g"), ordersPipelineAs("json", topic)))
	target := r.svc.AdminAddr()

	dir := t.TempDir()
	listen := freePort(t)
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sluice
    static_configs:
      - targets: ["%s"]
`, target)), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	out, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	prom.Stdout, prom.Stderr = out, out
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	api := "http://" + listen

	seed := int64(100)
	load := func() { // a steady trickle of orders while Prometheus watches
		seed++
		w.produceOrdersAs("json", topic, seed, 300)
	}
	// Scraped, and the load seen.
	waitProm(t, "Prometheus scraping Sluice's rows loaded", load, func() bool {
		v, ok := scalar(t, api, `sum(sluice_rows_loaded_total{job="sluice"})`)
		return ok && v > 0
	})
	// Dead letters after the first scrapes, so that increase() sees them.
	poison := []*kgo.Record{}
	for i := range 3 {
		poison = append(poison, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("p%d", i)), Value: []byte("{not json")})
	}
	if err := w.kcl.ProduceSync(context.Background(), poison...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Enough samples for the rate windows (Grafana's $__rate_interval is
	// at least four scrape intervals; 15 s here).
	t0 := time.Now()
	waitProm(t, "15 s of samples and the dead letters counted", load, func() bool {
		v, ok := scalar(t, api, `sum(sluice_dead_letters_total{job="sluice"})`)
		return ok && v >= 3 && time.Since(t0) > 15*time.Second
	})

	exprs := dashboardExprs(t)
	if len(exprs) < 20 {
		t.Fatalf("found %d queries in the dashboard, expected its ~40", len(exprs))
	}
	fill := strings.NewReplacer(`$pipeline`, `.+`, `$job`, `.+`, `$__rate_interval`, `15s`)
	results := map[string][]float64{}
	for _, e := range exprs {
		q := fill.Replace(e.expr)
		vals, err := query(api, q)
		if err != nil {
			t.Errorf("panel %q: %s: %v", e.panel, q, err)
			continue
		}
		results[e.panel+" | "+e.expr] = append(results[e.panel+" | "+e.expr], vals...)
	}
	// The panels that show this load.
	want := []struct {
		panel, contains string
		ok              func(v float64) bool
		what            string
	}{
		{"Rows loaded / s", "sluice_rows_loaded_total", func(v float64) bool { return v > 0 }, "> 0"},
		{"Throughput", "sluice_records_consumed_total", func(v float64) bool { return v > 0 }, "> 0"},
		{"Batch latency p99", "sluice_batch_duration_seconds_bucket", func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }, "a positive duration"},
		{"Dead letters (1h)", "sluice_dead_letters_total", func(v float64) bool { return v >= 2.5 }, ">= 3 (increase extrapolates)"},
		{"Partitions", "sluice_assigned_partitions", func(v float64) bool { return v == 3 }, "= 3"},
		{"Resident memory", "process_resident_memory_bytes", func(v float64) bool { return v > 1<<20 }, "> 1 MiB"},
	}
	for _, c := range want {
		found := false
		for k, vals := range results {
			if !strings.HasPrefix(k, c.panel+" | ") || !strings.Contains(k, c.contains) {
				continue
			}
			found = true
			if len(vals) == 0 || !slices.ContainsFunc(vals, c.ok) {
				t.Errorf("%s: got %v, want a series %s", k, vals, c.what)
			}
		}
		if !found {
			t.Errorf("no query of panel %q reads %s", c.panel, c.contains)
		}
	}
	// The dashboard's variables.
	for label, metric := range map[string]string{"pipeline": "sluice_records_consumed_total", "job": "sluice_inflight_bytes"} {
		vals := labelValues(t, api, label, metric)
		want := map[string]string{"pipeline": "orders", "job": "sluice"}[label]
		if !slices.Contains(vals, want) {
			t.Errorf("label_values(%s, %s) = %v, want it to hold %s", metric, label, vals, want)
		}
	}
}

type panelExpr struct{ panel, expr string }

// dashboardExprs lists every target expression of the dashboard, also of
// panels nested in rows.
func dashboardExprs(t *testing.T) []panelExpr {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "grafana", "dashboards", "sluice.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out []panelExpr
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					out = append(out, panelExpr{p.Title, tg.Expr})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

func waitProm(t *testing.T, what string, each func(), cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		each()
		time.Sleep(time.Second)
	}
}

// query evaluates an instant query and returns the values of its series
// (a scalar result is one value). A PromQL error is an error.
func query(api, q string) ([]float64, error) {
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	parse := func(v []any) (float64, error) {
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	var out []float64
	switch r.Data.ResultType {
	case "vector":
		var series []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &series); err != nil {
			return nil, err
		}
		for _, s := range series {
			f, err := parse(s.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
	case "scalar":
		var v []any
		if err := json.Unmarshal(r.Data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	default:
		return nil, fmt.Errorf("result type %s", r.Data.ResultType)
	}
	return out, nil
}

func scalar(t *testing.T, api, q string) (float64, bool) {
	t.Helper()
	vals, err := query(api, q)
	if err != nil || len(vals) == 0 {
		return 0, false
	}
	return vals[0], true
}

func labelValues(t *testing.T, api, label, metric string) []string {
	t.Helper()
	resp, err := http.Get(api + "/api/v1/label/" + label + "/values?match[]=" + url.QueryEscape(metric))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string   `json:"status"`
		Data   []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("label values of %s: %v (%s)", label, err, r.Status)
	}
	return r.Data
}
