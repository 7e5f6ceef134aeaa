package admin

import (
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-etl/sluice/pkg/pipeline"
)

// dashboardHTML is the whole page: inline CSS and script, no external
// assets (the admin port is often reached where there is no internet).
//
//go:embed dashboard.html
var dashboardHTML []byte

// DashboardOptions configure NewDashboard.
type DashboardOptions struct {
	// Engine gives the partitions and the configured pipelines.
	Engine EngineStats
	// Metrics is read for the per-pipeline counters and the batch latency
	// histogram (the series of pkg/pipeline's Metrics); nil falls back to
	// the assigned partitions' own counters.
	Metrics prometheus.Gatherer
	// Ready reports readiness, as /readyz does; nil: always ready.
	Ready func() bool
	// KPI is the business KPI source; nil leaves the charts empty with
	// kpi.error set.
	KPI KPISource
	// KPIMinutes is how many minutes of event time the charts span (30),
	// ending with the newest minute present (Window).
	KPIMinutes int
	// LaggingAfter is how far behind in time a partition may be before
	// it counts as lagging (DefaultLaggingAfter): behind is the age of
	// its oldest record fetched and not loaded yet
	// (pipeline.PartitionStats.Oldest), so a stream whose records wait
	// only for their batch (batch.max_wait) and its INSERT never lags,
	// however many records that is, and a backlog or a stuck INSERT does
	// within LaggingAfter of its oldest record's arrival in Kafka.
	LaggingAfter time.Duration
	// KPITTL is how long a KPI read is reused for every dashboard (5s):
	// many open pages cost ClickHouse one query pair per TTL.
	KPITTL time.Duration
	// KPITimeout bounds one KPI read (2s): a slow or down ClickHouse
	// delays /api/stats by at most this, once per TTL.
	KPITimeout time.Duration
	Log        *slog.Logger

	now func() time.Time // tests
}

// DefaultLaggingAfter is DashboardOptions.LaggingAfter's default, the
// admin.lagging_after of pkg/config: a record loads within batch.max_wait
// (1 s by default) plus an INSERT (well under a second here) of its
// arrival; 30 s behind is no batch's normal wait but a backlog, a slow
// or refusing ClickHouse, or a partition that stopped.
const DefaultLaggingAfter = 30 * time.Second

// Dashboard serves the live dashboard page at / and its data at
// /api/stats. Mount it on the admin server with pattern "GET /": the more
// specific /metrics, /healthz and /readyz keep their handlers, and paths
// the dashboard does not know get 404. Safe for concurrent use.
type Dashboard struct {
	o     DashboardOptions
	mux   *http.ServeMux
	kpi   *kpiCache
	rates sampler
}

// NewDashboard builds the dashboard handler.
func NewDashboard(o DashboardOptions) *Dashboard {
	if o.KPIMinutes <= 0 {
		o.KPIMinutes = 30
	}
	if o.LaggingAfter <= 0 {
		o.LaggingAfter = DefaultLaggingAfter
	}
	if o.KPITTL <= 0 {
		o.KPITTL = 5 * time.Second
	}
	if o.KPITimeout <= 0 {
		o.KPITimeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	d := &Dashboard{o: o, mux: http.NewServeMux()}
	if o.KPI != nil {
		d.kpi = &kpiCache{src: o.KPI, minutes: o.KPIMinutes, ttl: o.KPITTL, timeout: o.KPITimeout, now: o.now}
	}
	d.mux.HandleFunc("GET /{$}", d.page)
	d.mux.HandleFunc("GET /api/stats", d.stats)
	return d
}

func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

func (d *Dashboard) page(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// Everything is inline; nothing may be loaded from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(dashboardHTML)
}

func (d *Dashboard) stats(w http.ResponseWriter, r *http.Request) {
	st := d.Snapshot(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	if err := enc.Encode(st); err != nil {
		d.o.Log.Debug("writing /api/stats failed", "err", err)
	}
}

// Snapshot assembles the /api/stats body. The KPI part may come from the
// cache; its read is bounded by KPITimeout, is not cut short when ctx ends
// (other requests share it), and never fails the snapshot.
func (d *Dashboard) Snapshot(ctx context.Context) Stats {
	now := d.o.now()
	st := Stats{Ready: d.o.Ready == nil || d.o.Ready(), Time: now, LaggingAfterSec: d.o.LaggingAfter.Seconds()}
	var infos []pipeline.PipelineInfo
	var parts []pipeline.PartitionStats
	if d.o.Engine != nil {
		infos = d.o.Engine.PipelineInfos()
		parts = d.o.Engine.Stats()
	}
	cs, err := gather(d.o.Metrics)
	if err != nil {
		d.o.Log.Warn("gathering metrics for the dashboard failed", "err", err)
	}
	st.Pipelines, st.Partitions = build(now, d.o.LaggingAfter, infos, parts, cs, &d.rates)
	if d.kpi != nil {
		st.KPI = d.kpi.get(ctx)
		if st.KPI.Error != "" {
			d.o.Log.Debug("dashboard KPIs unavailable", "err", st.KPI.Error)
		}
	} else {
		st.KPI = KPI{OrdersPerMinute: []OrdersMinute{}, PaymentSuccessRate: []PaymentsMinute{}, Error: "no KPI source configured"}
	}
	return st
}
