package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-etl/sluice/pkg/pipeline"
)

type fakeEngine struct {
	infos []pipeline.PipelineInfo
	parts []pipeline.PartitionStats
}

func (f *fakeEngine) Stats() []pipeline.PartitionStats       { return f.parts }
func (f *fakeEngine) PipelineInfos() []pipeline.PipelineInfo { return f.infos }

// fakeKPI counts its reads; block makes a read wait for its context.
type fakeKPI struct {
	calls      atomic.Int32
	ordersErr  error
	paymentErr error
	block      bool
	sawCtxErr  atomic.Bool
	lastN      atomic.Int32 // the n of the last OrdersPerMinute
}

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func (f *fakeKPI) OrdersPerMinute(ctx context.Context, n int) ([]OrdersMinute, error) {
	f.calls.Add(1)
	f.lastN.Store(int32(n))
	if ctx.Err() != nil {
		f.sawCtxErr.Store(true)
	}
	if f.block {
		<-ctx.Done()
		return nil, fmt.Errorf("admin: kpi sluice.orders_per_minute: %w", ctx.Err())
	}
	if f.ordersErr != nil {
		return nil, f.ordersErr
	}
	return []OrdersMinute{
		{Minute: t0, Orders: 1200, Cancelled: 60, RevenueBase: "1301899.00"},
		{Minute: t0.Add(time.Minute), Orders: 580, Cancelled: 45, RevenueBase: "649991.93"},
	}, nil
}

func (f *fakeKPI) PaymentSuccessRate(ctx context.Context, n int) ([]PaymentsMinute, error) {
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.paymentErr != nil {
		return nil, f.paymentErr
	}
	return []PaymentsMinute{{Minute: t0, Attempts: 17, Successes: 14, Refunds: 3, SuccessRate: 14.0 / 17}}, nil
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	d     *Dashboard
	m     *pipeline.Metrics
	eng   *fakeEngine
	kpi   *fakeKPI
	clock *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := pipeline.NewMetrics(reg)
	last := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	eng := &fakeEngine{
		infos: []pipeline.PipelineInfo{{Name: "orders", Topic: "orders"}, {Name: "payments", Topic: "payments"}, {Name: "idle", Topic: "idle-topic"}},
		parts: []pipeline.PartitionStats{
			{Pipeline: "orders", Topic: "orders", Partition: 0, Committed: 100, HighWatermark: 150, Lag: 50, Loaded: 98, DeadLetters: 2, Batches: 3,
				LastBatchDuration: 250 * time.Millisecond, LastBatchAt: last},
			{Pipeline: "orders", Topic: "orders", Partition: 1, Committed: -1, HighWatermark: -1, Lag: -1, Paused: true},
			{Pipeline: "payments", Topic: "payments", Partition: 0, Committed: 7, HighWatermark: 7, Lag: 0, Loaded: 7, Batches: 1,
				LastBatchDuration: 40 * time.Millisecond, LastBatchAt: last.Add(-time.Second), Failing: true},
		},
	}
	m.Loaded.WithLabelValues("orders").Add(1000)
	m.Consumed.WithLabelValues("orders").Add(1003)
	m.Batches.WithLabelValues("orders").Add(10)
	m.DeadLetters.WithLabelValues("orders", "decode").Add(2)
	m.DeadLetters.WithLabelValues("orders", "load").Add(1)
	m.InsertErrors.WithLabelValues("orders").Add(4)
	for range 9 {
		m.BatchSeconds.WithLabelValues("orders").Observe(0.1)
	}
	m.BatchSeconds.WithLabelValues("orders").Observe(3)
	m.Loaded.WithLabelValues("payments").Add(7)
	c := &clock{now: t0.Add(time.Hour)}
	k := &fakeKPI{}
	d := NewDashboard(DashboardOptions{Engine: eng, Metrics: reg, Ready: func() bool { return true }, KPI: k, now: c.Now,
		Log: slog.New(slog.DiscardHandler)})
	return &env{d: d, m: m, eng: eng, kpi: k, clock: c}
}

func (e *env) get(t *testing.T, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	e.d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func (e *env) stats(t *testing.T) (Stats, map[string]any) {
	t.Helper()
	rec := e.get(t, "/api/stats")
	if rec.Code != http.StatusOK {
		t.Fatalf("/api/stats: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("/api/stats content type %q", ct)
	}
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("/api/stats is not JSON: %v\n%s", err, rec.Body)
	}
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	return st, raw
}

func TestPageIsServedSelfContained(t *testing.T) {
	e := newEnv(t)
	rec := e.get(t, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /: %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("content type %q, want text/html", ct)
	}
	body := rec.Body.String()
	for _, id := range []string{"ready", "updated", "conn-error", "summary", "pipelines", "partitions", "partitions-body",
		"kpi", "kpi-error", "chart-orders", "chart-revenue", "chart-payments"} {
		if !strings.Contains(body, `id="`+id+`"`) {
			t.Errorf("page has no element id %q", id)
		}
	}
	if !strings.Contains(body, `"api/stats"`) {
		t.Error("page does not poll api/stats")
	}
	// No external assets: the only absolute URL is the SVG namespace.
	for _, u := range regexp.MustCompile(`https?://[^"' )]+`).FindAllString(body, -1) {
		if u != "http://www.w3.org/2000/svg" {
			t.Errorf("page references %s", u)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if rec := e.get(t, "/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", rec.Code)
	}
}

func TestDashboardMountsBesideTheAdminEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	pipeline.NewMetrics(reg).Loaded.WithLabelValues("orders").Add(1)
	s, err := New("127.0.0.1:0", reg, func() error { return errors.New("reference data: fx-rates behind") }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("GET /", NewDashboard(DashboardOptions{Engine: &fakeEngine{}, Metrics: reg, Ready: func() bool { return false }}))
	go s.Serve()
	defer func() { _ = s.Shutdown(context.Background()) }()
	for path, want := range map[string]string{
		"/":          "chart-orders",
		"/api/stats": `"ready":false`,
		"/metrics":   "sluice_rows_loaded_total",
		"/healthz":   "ok",
		"/readyz":    "not ready: reference data: fx-rates behind",
	} {
		res, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, res.StatusCode, want)
		}
	}
}

func TestStatsJSON(t *testing.T) {
	e := newEnv(t)
	st, raw := e.stats(t)
	if !st.Ready {
		t.Error("not ready")
	}
	// Field names are the API: check them on the raw JSON.
	p0 := raw["pipelines"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "topic", "loaded", "consumed", "batches", "dead_letters", "lag", "rows_per_sec", "batch_latency", "partitions", "paused", "failing"} {
		if _, ok := p0[k]; !ok {
			t.Errorf("pipeline JSON lacks %q: %v", k, p0)
		}
	}
	part1 := raw["partitions"].([]any)[1].(map[string]any)
	if part1["committed"] != nil || part1["lag"] != nil || part1["high_watermark"] != nil {
		t.Errorf("unknown offsets should be null: %v", part1)
	}
	kpi := raw["kpi"].(map[string]any)
	if _, ok := kpi["error"]; ok {
		t.Errorf("kpi.error set without an error: %v", kpi["error"])
	}
	opm := kpi["orders_per_minute"].([]any)[1].(map[string]any)
	if opm["minute"] != "2026-11-25T09:01:00Z" || opm["orders"] != 580.0 || opm["revenue_base"] != 649991.93 {
		t.Errorf("orders_per_minute row %v", opm)
	}
	if !strings.Contains(e.get(t, "/api/stats").Body.String(), `"revenue_base":649991.93`) {
		t.Error("revenue is not written as an exact JSON number")
	}
	psr := kpi["payment_success_rate"].([]any)[0].(map[string]any)
	for _, k := range []string{"minute", "attempts", "successes", "success_rate"} {
		if _, ok := psr[k]; !ok {
			t.Errorf("payment_success_rate row lacks %q", k)
		}
	}

	if len(st.Pipelines) != 3 {
		t.Fatalf("%d pipelines, want 3 (config order, idle one included)", len(st.Pipelines))
	}
	o, p, idle := st.Pipelines[0], st.Pipelines[1], st.Pipelines[2]
	if o.Name != "orders" || p.Name != "payments" || idle.Name != "idle" || idle.Topic != "idle-topic" {
		t.Fatalf("pipelines %s, %s, %s", o.Name, p.Name, idle.Name)
	}
	if o.Loaded != 1000 || o.Consumed != 1003 || o.Batches != 10 || o.InsertErrors != 4 {
		t.Errorf("orders counters %+v", o)
	}
	if o.DeadLetters["decode"] != 2 || o.DeadLetters["load"] != 1 || len(o.DeadLetters) != 2 {
		t.Errorf("orders dead letters %v", o.DeadLetters)
	}
	if o.Lag == nil || *o.Lag != 50 || o.LagUnknown != 1 || o.Partitions != 2 || o.Paused != 1 || o.Failing != 0 {
		t.Errorf("orders lag %v (unknown %d), partitions %d paused %d failing %d", o.Lag, o.LagUnknown, o.Partitions, o.Paused, o.Failing)
	}
	if o.Latency.LastMS == nil || *o.Latency.LastMS != 250 {
		t.Errorf("orders last batch %v ms, want 250", o.Latency.LastMS)
	}
	// 9 of 10 batches took 0.1 s: the median is in the 0.08..0.16 bucket.
	if o.Latency.P50MS == nil || *o.Latency.P50MS < 80 || *o.Latency.P50MS > 160 {
		t.Errorf("orders p50 %v ms", o.Latency.P50MS)
	}
	if o.Latency.MeanMS == nil || math.Abs(*o.Latency.MeanMS-390) > 0.1 {
		t.Errorf("orders mean %v ms, want 390", o.Latency.MeanMS)
	}
	if o.RowsPerSec != nil {
		t.Errorf("a rate from one sample: %v", *o.RowsPerSec)
	}
	if p.Failing != 1 || p.Lag == nil || *p.Lag != 0 {
		t.Errorf("payments failing %d lag %v", p.Failing, p.Lag)
	}
	if idle.Partitions != 0 || idle.Lag != nil || idle.Loaded != 0 || idle.DeadLetters == nil {
		t.Errorf("idle pipeline %+v", idle)
	}
	if len(st.Partitions) != 3 || st.Partitions[0].LastBatchAt == nil || *st.Partitions[0].LastBatchMS != 250 {
		t.Errorf("partitions %+v", st.Partitions)
	}
	if len(st.KPI.OrdersPerMinute) != 2 || len(st.KPI.PaymentSuccessRate) != 1 {
		t.Errorf("kpi %+v", st.KPI)
	}
}

func TestRowsPerSecondAndRecentLatency(t *testing.T) {
	e := newEnv(t)
	e.stats(t)
	e.clock.Add(2 * time.Second)
	e.m.Loaded.WithLabelValues("orders").Add(500)
	e.m.BatchSeconds.WithLabelValues("orders").Observe(1.0)
	st, _ := e.stats(t)
	o := st.Pipelines[0]
	if o.RowsPerSec == nil || *o.RowsPerSec != 250 || o.RateWindow != 2 {
		t.Fatalf("rows/s %v over %vs, want 250 over 2s", o.RowsPerSec, o.RateWindow)
	}
	// The window holds one batch of 1 s: the quantiles are from it alone.
	if o.Latency.WindowSec != 2 || o.Latency.P50MS == nil || *o.Latency.P50MS < 640 || *o.Latency.P50MS > 1280 {
		t.Errorf("window latency %+v (p50 %v)", o.Latency, o.Latency.P50MS)
	}
	if p := st.Pipelines[1]; p.RowsPerSec == nil || *p.RowsPerSec != 0 {
		t.Errorf("payments rows/s %v, want 0", p.RowsPerSec)
	}
	// Requests closer together than a second reuse the older sample.
	e.clock.Add(300 * time.Millisecond)
	st, _ = e.stats(t)
	if r := st.Pipelines[0].RowsPerSec; r == nil || math.Abs(*r-500/2.3) > 0.01 {
		t.Errorf("rows/s %v, want %v", r, 500/2.3)
	}
}

func TestKPIErrorsDoNotFailTheRequest(t *testing.T) {
	e := newEnv(t)
	e.kpi.ordersErr = fmt.Errorf("admin: kpi sluice.orders_per_minute: %w", ErrNoKPIViews)
	st, raw := e.stats(t)
	if !strings.Contains(st.KPI.Error, "KPI views not found") {
		t.Errorf("kpi.error %q", st.KPI.Error)
	}
	if len(st.KPI.PaymentSuccessRate) != 1 || len(st.Pipelines) != 3 || len(st.Partitions) != 3 {
		t.Errorf("the rest of the answer is missing: %+v", st)
	}
	if _, ok := raw["kpi"].(map[string]any)["orders_per_minute"].([]any); !ok {
		t.Error("orders_per_minute should be an empty array, not null")
	}
}

func TestKPITimeout(t *testing.T) {
	k := &fakeKPI{block: true}
	d := NewDashboard(DashboardOptions{Engine: &fakeEngine{}, KPI: k, KPITimeout: 50 * time.Millisecond})
	start := time.Now()
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/stats", nil))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v with a 50ms KPI timeout", took)
	}
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %v", rec.Code, err)
	}
	if !strings.Contains(st.KPI.Error, "deadline exceeded") {
		t.Errorf("kpi.error %q", st.KPI.Error)
	}
}

func TestKPIReadIsNotCancelledByTheClient(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	e.d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/stats", nil).WithContext(ctx))
	if e.kpi.sawCtxErr.Load() {
		t.Fatal("a client that went away cancelled the shared KPI read")
	}
}

func TestKPIsAreCached(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			e.d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/stats", nil))
		}()
	}
	wg.Wait()
	e.clock.Add(4 * time.Second)
	e.stats(t)
	if n := e.kpi.calls.Load(); n != 1 {
		t.Fatalf("%d KPI reads within the TTL, want 1", n)
	}
	e.clock.Add(2 * time.Second)
	e.stats(t)
	if n := e.kpi.calls.Load(); n != 2 {
		t.Fatalf("%d KPI reads after the TTL, want 2", n)
	}

	// Errors are cached too: a down ClickHouse is asked once per TTL.
	e.kpi.ordersErr = errors.New("connection refused")
	e.clock.Add(6 * time.Second)
	for range 5 {
		if st, _ := e.stats(t); st.KPI.Error == "" {
			t.Fatal("no kpi.error")
		}
	}
	if n := e.kpi.calls.Load(); n != 3 {
		t.Fatalf("%d KPI reads, want 3", n)
	}
}

func TestNoKPISource(t *testing.T) {
	d := NewDashboard(DashboardOptions{Engine: &fakeEngine{}})
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/stats", nil))
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Ready || st.KPI.Error == "" || st.Pipelines == nil || st.Partitions == nil {
		t.Fatalf("%s", rec.Body)
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := histogram{upper: []float64{1, 2, 4}, cum: []uint64{0, 10, 20}, count: 20}
	for _, c := range []struct {
		q, want float64
	}{
		{0.5, 2},    // the 10th of 20 is the top of the (1,2] bucket
		{0.25, 1.5}, // halfway through (1,2]
		{0.75, 3},   // halfway through (2,4]
		{1, 4},
	} {
		if got, ok := h.quantile(c.q); !ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	over := histogram{upper: []float64{1}, cum: []uint64{1}, count: 4}
	if got, _ := over.quantile(0.9); got != 1 {
		t.Errorf("above the last bound: %v, want the bound", got)
	}
	if _, ok := (histogram{}).quantile(0.5); ok {
		t.Error("quantile of an empty histogram")
	}
}

func TestClickHouseKPIErrors(t *testing.T) {
	k := NewClickHouseKPI(nil, "sl`uice")
	if got := quoteIdent(k.db); got != "`sl\\`uice`" {
		t.Errorf("quoteIdent = %s", got)
	}
	err := k.wrap("orders_per_minute", &clickhouse.Exception{Code: 60, Message: "Table sluice.orders_per_minute doesn't exist."})
	if !errors.Is(err, ErrNoKPIViews) {
		t.Errorf("unknown table: %v", err)
	}
	err = k.wrap("orders_per_minute", errors.New("dial tcp: connection refused"))
	if errors.Is(err, ErrNoKPIViews) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("other error: %v", err)
	}
}

// TestKPIWindow: a series is charted over the n minutes ending with its
// newest minute; rows before that are left out (the newest of them named
// as Earlier), and minutes of the window without rows stay absent, to be
// drawn as gaps, not closed up.
func TestKPIWindow(t *testing.T) {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	cases := []struct {
		name    string
		minutes []int // of the rows, ascending
		n       int
		kept    []int
		from    int
		earlier *int
	}{
		{name: "none", n: 30},
		{name: "one", minutes: []int{5}, n: 30, kept: []int{5}, from: 5 - 29},
		{name: "adjacent", minutes: []int{0, 1, 2}, n: 3, kept: []int{0, 1, 2}, from: 0},
		// Two runs of minutes 10 apart: both in a 30-minute window, the
		// gap between them kept.
		{name: "gap inside", minutes: []int{0, 1, 2, 12, 13}, n: 30, kept: []int{0, 1, 2, 12, 13}, from: 13 - 29},
		// Yesterday's minutes are not drawn beside today's.
		{name: "days apart", minutes: []int{-1440, -1439, 0, 1}, n: 30, kept: []int{0, 1}, from: 1 - 29, earlier: ptr(-1439)},
		{name: "edge", minutes: []int{-30, -29, 0}, n: 30, kept: []int{-29, 0}, from: -29, earlier: ptr(-30)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rows []OrdersMinute
			for _, m := range c.minutes {
				rows = append(rows, OrdersMinute{Minute: at(m).In(time.FixedZone("CET", 3600)), Orders: uint64(m + 2000)})
			}
			kept, w := window(rows, func(r *OrdersMinute) *time.Time { return &r.Minute }, c.n)
			if len(c.minutes) == 0 {
				if w != nil || len(kept) != 0 {
					t.Fatalf("no rows: window %+v, rows %v", w, kept)
				}
				return
			}
			var got []int
			for _, r := range kept {
				if r.Minute.Location() != time.UTC {
					t.Errorf("minute %v not in UTC", r.Minute)
				}
				got = append(got, int(r.Minute.Sub(t0)/time.Minute))
				if r.Orders != uint64(got[len(got)-1]+2000) {
					t.Errorf("row of minute %d carries %d orders", got[len(got)-1], r.Orders)
				}
			}
			if !slices.Equal(got, c.kept) {
				t.Errorf("kept minutes %v, want %v", got, c.kept)
			}
			last := c.minutes[len(c.minutes)-1]
			if !w.From.Equal(at(c.from)) || !w.To.Equal(at(last)) || w.Minutes != c.n || w.Present != len(c.kept) {
				t.Errorf("window %+v, want %v..%v, %d minutes, %d present", w, at(c.from), at(last), c.n, len(c.kept))
			}
			switch {
			case c.earlier == nil && w.Earlier != nil:
				t.Errorf("earlier %v, want none", *w.Earlier)
			case c.earlier != nil && (w.Earlier == nil || !w.Earlier.Equal(at(*c.earlier))):
				t.Errorf("earlier %v, want %v", w.Earlier, at(*c.earlier))
			}
		})
	}
}

// TestKPIWindowInStats: /api/stats carries each series' window, and the
// cache asks the source for one minute more than the window holds.
func TestKPIWindowInStats(t *testing.T) {
	e := newEnv(t)
	_, raw := e.stats(t)
	kpi := raw["kpi"].(map[string]any)
	ow, ok := kpi["orders_window"].(map[string]any)
	if !ok {
		t.Fatalf("no orders_window: %v", kpi)
	}
	if ow["from"] != "2026-11-25T08:32:00Z" || ow["to"] != "2026-11-25T09:01:00Z" || ow["minutes"] != 30.0 || ow["present"] != 2.0 || ow["earlier"] != nil {
		t.Errorf("orders_window %v", ow)
	}
	if pw, ok := kpi["payments_window"].(map[string]any); !ok || pw["to"] != "2026-11-25T09:00:00Z" {
		t.Errorf("payments_window %v", kpi["payments_window"])
	}
	if n := e.kpi.lastN.Load(); n != 31 {
		t.Errorf("source asked for %d minutes, want 31", n)
	}
}

// TestLaggingIsTimeBehind: a partition lags when its oldest record not
// loaded yet is older than LaggingAfter, whatever its lag in records: 37
// records waiting for a batch cut a second ago are not lagging, 5 records
// waiting 45 s are, and a lag in records with nothing fetched waiting is
// 0 s behind.
func TestLaggingIsTimeBehind(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	e.eng.infos = []pipeline.PipelineInfo{{Name: "orders", Topic: "orders"}, {Name: "payments", Topic: "payments"}}
	e.eng.parts = []pipeline.PartitionStats{
		{Pipeline: "orders", Topic: "orders", Partition: 0, Committed: 1000, HighWatermark: 1037, Lag: 37, Oldest: now.Add(-1200 * time.Millisecond)},
		{Pipeline: "orders", Topic: "orders", Partition: 1, Committed: 990, HighWatermark: 992, Lag: 2},
		{Pipeline: "payments", Topic: "payments", Partition: 0, Committed: 70, HighWatermark: 75, Lag: 5, Oldest: now.Add(-45 * time.Second)},
		// A producer clock ahead of ours: not behind.
		{Pipeline: "payments", Topic: "payments", Partition: 1, Committed: 7, HighWatermark: 8, Lag: 1, Oldest: now.Add(3 * time.Second)},
	}
	st, raw := e.stats(t)
	if st.LaggingAfterSec != 30 {
		t.Errorf("lagging_after_s %v, want the default 30", st.LaggingAfterSec)
	}
	for _, k := range []string{"behind_s", "lagging"} {
		if _, ok := raw["partitions"].([]any)[1].(map[string]any)[k]; !ok {
			t.Errorf("partition JSON lacks %q", k)
		}
		if _, ok := raw["pipelines"].([]any)[0].(map[string]any)[k]; !ok {
			t.Errorf("pipeline JSON lacks %q", k)
		}
	}
	want := []struct {
		behind  float64
		lagging bool
	}{{1.2, false}, {0, false}, {45, true}, {0, false}}
	for i, w := range want {
		if p := st.Partitions[i]; p.BehindSec != w.behind || p.Lagging != w.lagging {
			t.Errorf("partition %s/%d: behind %v s lagging %v, want %v s %v", p.Pipeline, p.Partition, p.BehindSec, p.Lagging, w.behind, w.lagging)
		}
	}
	o, p := st.Pipelines[0], st.Pipelines[1]
	if o.BehindSec != 1.2 || o.Lagging != 0 || p.BehindSec != 45 || p.Lagging != 1 {
		t.Errorf("orders behind %v s lagging %d, payments %v s %d; want 1.2 0, 45 1", o.BehindSec, o.Lagging, p.BehindSec, p.Lagging)
	}

	// The threshold is configurable.
	d := NewDashboard(DashboardOptions{Engine: e.eng, LaggingAfter: time.Second, now: e.clock.Now})
	st = d.Snapshot(context.Background())
	if st.LaggingAfterSec != 1 || st.Pipelines[0].Lagging != 1 || !st.Partitions[0].Lagging {
		t.Errorf("LaggingAfter 1s: lagging_after_s %v, orders lagging %d", st.LaggingAfterSec, st.Pipelines[0].Lagging)
	}
}
