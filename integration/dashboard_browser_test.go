//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/admin"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// The dashboard, tested as a person sees it: in Debian's Chromium
// (`make deps` installs it), headless, driven by chromedp.

// chromium is the browser the test drives; a machine without it fails the
// test (it is part of make test), it does not skip.
func chromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatal("chromium is not installed: `make deps` installs Debian's chromium package")
	return ""
}

// browser starts a headless Chromium with a fresh profile and returns a
// context for its one tab. The flags keep it off the network: without
// the background-networking ones it tries Google's hosts, is refused
// here, and stalls.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1200),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser, for as long as ctx lives.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// pageView is what the page shows, read from its DOM.
type pageView struct {
	Updated string `json:"updated"`
	// StatsTime and KPIFetched are the times of the /api/stats answer
	// shown and of its KPI read.
	StatsTime      time.Time  `json:"statsTime"`
	KPIFetched     time.Time  `json:"kpiFetched"`
	Orders         chartView  `json:"orders"`
	Revenue        chartView  `json:"revenue"`
	Payments       chartView  `json:"payments"`
	OrdersLatest   string     `json:"ordersLatest"`
	RevenueLatest  string     `json:"revenueLatest"`
	PaymentsLatest string     `json:"paymentsLatest"`
	OrdersCaption  string     `json:"ordersCaption"`
	Behind         string     `json:"behind"`
	LagNote        string     `json:"lagNote"`
	SumLagging     int        `json:"sumLagging"`
	KPIError       string     `json:"kpiError"`
	Pipelines      []cardView `json:"pipelines"`
	Partitions     [][]string `json:"partitions"`
	Columns        []string   `json:"columns"`
}

type chartView struct {
	Marks  []markView `json:"marks"`  // bars or line points, left to right
	Series int        `json:"series"` // line segments
	Gaps   []gapView  `json:"gaps"`
}

type markView struct {
	Minute string  `json:"minute"`
	Value  float64 `json:"value"`
	X      float64 `json:"x"`
}

type gapView struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type cardView struct {
	Name  string            `json:"name"`
	State string            `json:"state"`
	Pill  string            `json:"pill"`
	KV    map[string]string `json:"kv"`
}

// readPage is evaluated in the page: everything the checks read, as the
// DOM holds it (texts as displayed, marks as drawn).
const readPage = `(() => {
  const q = (s, r) => Array.from((r || document).querySelectorAll(s));
  const txt = id => document.getElementById(id).textContent;
  const chart = id => {
    const svg = document.getElementById(id);
    const marks = q("rect.bar", svg).map(e => ({minute: e.dataset.minute, value: +e.dataset.value, x: +e.getAttribute("x")}))
      .concat(q("circle.point", svg).map(e => ({minute: e.dataset.minute, value: +e.dataset.value, x: +e.getAttribute("cx")})));
    marks.sort((a, b) => a.x - b.x);
    return {marks: marks, series: q("path.series", svg).length,
      gaps: q("rect.gap", svg).map(e => ({from: e.dataset.from, to: e.dataset.to}))};
  };
  return {
    updated: txt("updated"),
    statsTime: document.body.dataset.statsTime || "0001-01-01T00:00:00Z",
    kpiFetched: document.body.dataset.kpiFetched || "0001-01-01T00:00:00Z",
    orders: chart("chart-orders"), revenue: chart("chart-revenue"), payments: chart("chart-payments"),
    ordersLatest: txt("orders-latest"), revenueLatest: txt("revenue-latest"), paymentsLatest: txt("payments-latest"),
    ordersCaption: txt("orders-caption"),
    behind: txt("sum-behind"), lagNote: txt("sum-lag"), sumLagging: +(document.getElementById("sum-behind").dataset.lagging || 0),
    kpiError: txt("kpi-error"),
    pipelines: q("#pipelines .pipe").map(c => {
      const pill = c.querySelector(".pill");
      return {name: c.dataset.pipeline, state: pill.dataset.state, pill: pill.textContent,
        kv: Object.fromEntries(q(".kv div", c).map(d => [d.querySelector("span").textContent, d.querySelector("b").textContent]))};
    }),
    columns: q("#partitions thead th").map(th => th.textContent),
    partitions: q("#partitions-body tr").map(r => q("td", r).map(td => td.textContent)),
  };
})()`

func (v pageView) card(t *testing.T, name string) cardView {
	t.Helper()
	for _, c := range v.Pipelines {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("the page shows no pipeline %q (it shows %+v)", name, v.Pipelines)
	return cardView{}
}

// cell is the text of column col (by its header) of the partitions
// table's row for pipeline/partition.
func (v pageView) cell(t *testing.T, pipeline string, partition int32, col string) string {
	t.Helper()
	c := slices.Index(v.Columns, col)
	if c < 0 {
		t.Fatalf("the partitions table has no column %q: %v", col, v.Columns)
	}
	for _, r := range v.Partitions {
		if len(r) > c && r[0] == pipeline && r[1] == strconv.Itoa(int(partition)) {
			return r[c]
		}
	}
	t.Fatalf("the partitions table has no row %s/%d: %v", pipeline, partition, v.Partitions)
	return ""
}

// number reads a count as the page writes it ("1,234").
func number(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(s), ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("%q is not a number as the page writes counts", s)
	}
	return n
}

// thousands writes digits with comma separators, as the page's en-US
// formats do: "1234567.89" -> "1,234,567.89".
func thousands(s string) string {
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		b.WriteString("." + frac)
	}
	return b.String()
}

// kpiMinute is one row of a KPI view as ClickHouse answers it.
type kpiMinute struct {
	minute  time.Time
	value   float64 // orders, or the success rate in percent
	revenue decimal.Decimal
}

// kpiRows reads a KPI view whole, oldest minute first.
func (w *world) kpiRows(q string) []kpiMinute {
	w.t.Helper()
	rows, err := w.ch.Query(context.Background(), q)
	if err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []kpiMinute
	for rows.Next() {
		var r kpiMinute
		var rev string
		if err := rows.Scan(&r.minute, &r.value, &rev); err != nil {
			w.t.Fatal(err)
		}
		r.minute = r.minute.UTC()
		r.revenue = decimal.RequireFromString(rev)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return out
}

// inWindow keeps the rows of the n minutes ending with the newest (what
// the charts span) and lists the runs of minutes of that window without
// a row, as the gaps the page must draw.
func inWindow(rows []kpiMinute, n int) ([]kpiMinute, []gapView) {
	if len(rows) == 0 {
		return nil, nil
	}
	to := rows[len(rows)-1].minute
	from := to.Add(-time.Duration(n-1) * time.Minute)
	var kept []kpiMinute
	have := map[time.Time]bool{}
	for _, r := range rows {
		if !r.minute.Before(from) {
			kept = append(kept, r)
			have[r.minute] = true
		}
	}
	var gaps []gapView
	for m := from; !m.After(to); m = m.Add(time.Minute) {
		if have[m] {
			continue
		}
		end := m
		for !have[end.Add(time.Minute)] && end.Add(time.Minute).Before(to) {
			end = end.Add(time.Minute)
		}
		gaps = append(gaps, gapView{From: iso(m), To: iso(end)})
		m = end
	}
	return kept, gaps
}

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// runs counts the runs of consecutive minutes among rows.
func runs(rows []kpiMinute) int {
	n := 0
	for i, r := range rows {
		if i == 0 || !r.minute.Equal(rows[i-1].minute.Add(time.Minute)) {
			n++
		}
	}
	return n
}

// checkChart compares a chart's marks and gaps with the rows ClickHouse
// holds for its window; value converts a row to the mark's value.
func checkChart(t *testing.T, name string, c chartView, rows []kpiMinute, gaps []gapView, line bool, value func(kpiMinute) float64) {
	t.Helper()
	if len(c.Marks) != len(rows) {
		t.Fatalf("%s chart: %d marks drawn, ClickHouse has %d minutes in its window\nmarks %+v", name, len(c.Marks), len(rows), c.Marks)
	}
	for i, m := range c.Marks {
		want := value(rows[i])
		if m.Minute != iso(rows[i].minute) || math.Abs(m.Value-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s chart, mark %d: %s = %v; ClickHouse: %s = %v", name, i, m.Minute, m.Value, iso(rows[i].minute), want)
		}
	}
	if !slices.Equal(c.Gaps, gaps) {
		t.Errorf("%s chart: gaps drawn %v, ClickHouse's minutes leave %v", name, c.Gaps, gaps)
	}
	if line && c.Series != runs(rows) {
		t.Errorf("%s chart: the line has %d segments, the minutes present make %d runs (a gap is joined)", name, c.Series, runs(rows))
	}
	// A time axis: marks are as far apart as their minutes.
	if len(c.Marks) > 1 {
		slot := math.Inf(1)
		for i := 1; i < len(c.Marks); i++ {
			d := (c.Marks[i].X - c.Marks[i-1].X) / rows[i].minute.Sub(rows[i-1].minute).Minutes()
			slot = math.Min(slot, d)
		}
		for i := 1; i < len(c.Marks); i++ {
			want := slot * rows[i].minute.Sub(rows[i-1].minute).Minutes()
			if got := c.Marks[i].X - c.Marks[i-1].X; math.Abs(got-want) > 0.01 {
				t.Errorf("%s chart: %s and %s are %v apart on the axis, want %v (%v minutes)", name, c.Marks[i-1].Minute, c.Marks[i].Minute,
					got, want, rows[i].minute.Sub(rows[i-1].minute).Minutes())
			}
		}
	}
}

// TestDashboardInBrowser: Sluice loads orders whose event times lie in two
// ranges ten minutes apart, with their payments, through a proxy to
// ClickHouse; headless Chromium opens the dashboard. Checked on what the
// page shows: each chart's bars or points are ClickHouse's KPI rows of the
// 30-minute window (minute and value), drawn on a time axis (marks as far
// apart as their minutes), with the minutes without rows drawn as gaps and
// the line broken there; the newest minute's orders, revenue and payment
// success rate as written in the chart heads; each pipeline's loaded
// count against ClickHouse's rows and /api/stats; each partition's
// committed offset against Kafka and /api/stats. Then lagging, by time:
// while shipments flow with dozens of records waiting for their batch the
// page never says lagging; with ClickHouse answering 2 s late it does
// (past admin.lagging_after, 3 s here), in /api/stats and on the page,
// and stops once the link is healed. Screenshots go to bin/.
func TestDashboardInBrowser(t *testing.T) {
	start := time.Now()
	ctx := browser(t)
	w := newWorld(t)
	tp := map[string]string{}
	for _, n := range []string{"orders", "payments", "shipments", "customers", "fx"} {
		tp[n] = w.name("dash_" + n)
	}
	w.createTopic(tp["orders"], 2)
	w.createTopic(tp["payments"], 2)
	w.createTopic(tp["shipments"], 1)
	w.createTopic(tp["customers"], 1)
	w.createTopic(tp["fx"], 1)
	w.createTopic(w.name("dlq"), 1)

	// Two ranges of event time, 10:00-10:09 and 10:20-10:29, one order a
	// second: the minutes between have no orders.
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	g, err := gen.New(gen.Options{Seed: 9, Start: t0, Step: time.Second, SchemaDir: filepath.Join(repoRoot(), "schemas", "avro")})
	if err != nil {
		t.Fatal(err)
	}
	c := g.Codecs()
	var recs []*kgo.Record
	add := func(topic string, k, v []byte, err error) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: k, Value: v})
	}
	for _, cu := range g.Customers() {
		k, v, err := c.EncodeCustomer(cu)
		add(tp["customers"], k, v, err)
	}
	for _, r := range g.FxRates() {
		k, v, err := c.EncodeFxRate(r)
		add(tp["fx"], k, v, err)
	}
	var orders []gen.Order
	for _, seqs := range [][2]int{{0, 600}, {1200, 1800}} {
		orders = append(orders, g.Orders(seqs[0], seqs[1])...)
	}
	for _, o := range orders {
		k, v, err := c.EncodeOrder(o)
		add(tp["orders"], k, v, err)
		for _, p := range g.Payments(o) {
			k, v, err := c.EncodePayment(p)
			add(tp["payments"], k, v, err)
		}
	}
	if err := w.kcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	group := w.name("g_dash")
	schema := func(f string) string { return filepath.Join(repoRoot(), "schemas", "avro", f) }
	cfg := w.sluiceConfig(group, fmt.Sprintf(`  - name: orders
    topic: %s
    schema: %s
    table: orders
    transforms: [order_items, currency]
  - name: payments
    topic: %s
    schema: %s
    table: payments
    transforms: [payment_status, currency]
  - name: shipments
    topic: %s
    schema: %s
    table: shipments
`, tp["orders"], schema("order.avsc"), tp["payments"], schema("payment.avsc"), tp["shipments"], schema("shipment.avsc")))
	cfg.Reference.CustomersTopic = tp["customers"]
	cfg.Reference.FxRatesTopic = tp["fx"]
	// Lagging after 3 s behind (max_wait is 300 ms here), so the slow
	// link below makes it within seconds.
	const laggingAfter = 3 * time.Second
	cfg.Admin.LaggingAfter = laggingAfter
	px := newProxy(t, clickhouse)
	cfg.ClickHouse.Addr = []string{px.Listen}
	s := w.startSluice(cfg)
	base := "http://" + s.svc.AdminAddr()

	for _, n := range []string{"orders", "payments"} {
		w.waitCommitted(group, tp[n], 2*time.Minute)
	}
	loaded := time.Now()
	ordersRows := w.kpiRows(fmt.Sprintf("SELECT minute, toFloat64(orders), toString(revenue_base) FROM %s.orders_per_minute ORDER BY minute", w.db))
	payRows := w.kpiRows(fmt.Sprintf("SELECT minute, toFloat64(success_rate) * 100, '0' FROM %s.payment_success_rate ORDER BY minute", w.db))
	const windowMinutes = 30 // admin.DashboardOptions.KPIMinutes' default
	ordersWin, ordersGaps := inWindow(ordersRows, windowMinutes)
	payWin, payGaps := inWindow(payRows, windowMinutes)
	// The data has the gap it was made with: 10:10-10:19 has no orders.
	if !slices.Contains(ordersGaps, gapView{From: "2026-03-02T10:10:00Z", To: "2026-03-02T10:19:00Z"}) || len(ordersWin) != 20 {
		t.Fatalf("ClickHouse's orders_per_minute has %d minutes in the window, gaps %v; the test data should give 20 and 10:10-10:19", len(ordersWin), ordersGaps)
	}
	tableRows := map[string]int64{
		"orders":   int64(w.count(fmt.Sprintf("SELECT count() FROM %s.orders", w.db))),
		"payments": int64(w.count(fmt.Sprintf("SELECT count() FROM %s.payments", w.db))),
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("open %s: %v", base, err)
	}
	read := func() pageView {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(rctx, chromedp.Evaluate[pageView](readPage))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return v
	}
	// Rendered from figures and KPIs read after everything was loaded
	// (the KPIs are cached for 5 s, the page refreshes every 2 s).
	var v pageView
	waitUntil(t, "the page showing figures read after the load", 90*time.Second, func() bool {
		v = read()
		return v.StatsTime.After(loaded) && v.KPIFetched.After(loaded)
	})
	shot(t, ctx, "dashboard.png")

	// The charts, mark by mark, against ClickHouse.
	checkChart(t, "orders", v.Orders, ordersWin, ordersGaps, false, func(r kpiMinute) float64 { return r.value })
	checkChart(t, "revenue", v.Revenue, ordersWin, ordersGaps, true, func(r kpiMinute) float64 { return r.revenue.InexactFloat64() })
	checkChart(t, "payment success rate", v.Payments, payWin, payGaps, true, func(r kpiMinute) float64 { return r.value })
	newest, newestPay := ordersWin[len(ordersWin)-1], payWin[len(payWin)-1]
	if want := thousands(strconv.Itoa(int(newest.value))); v.OrdersLatest != want {
		t.Errorf("orders head shows %q, ClickHouse's newest minute has %s orders", v.OrdersLatest, want)
	}
	if want := thousands(newest.revenue.StringFixed(2)); v.RevenueLatest != want {
		t.Errorf("revenue head shows %q, ClickHouse's newest minute has %s", v.RevenueLatest, want)
	}
	if want := strconv.FormatFloat(math.Round(newestPay.value*10)/10, 'f', -1, 64) + "%"; v.PaymentsLatest != want {
		t.Errorf("payment success head shows %q, ClickHouse's newest minute has %s", v.PaymentsLatest, want)
	}
	if !strings.Contains(v.OrdersCaption, "20 of 30 min with data") {
		t.Errorf("orders caption %q does not say 20 of 30 minutes have data", v.OrdersCaption)
	}

	// The pipelines and partitions against /api/stats and Kafka.
	st := apiStats(t, base)
	for _, n := range []string{"orders", "payments"} {
		p := pipelineOf(t, st, n)
		if shown := number(t, v.card(t, n).KV["Loaded"]); shown != p.Loaded || shown != tableRows[n] {
			t.Errorf("%s: the page shows %d loaded, /api/stats %d, ClickHouse holds %d rows", n, shown, p.Loaded, tableRows[n])
		}
		if state := v.card(t, n).State; state != "loading" && state != "caught-up" {
			t.Errorf("%s at rest shows %q (%s)", n, state, v.card(t, n).Pill)
		}
		committed := w.committed(group, tp[n])
		for _, pj := range st.Partitions {
			if pj.Pipeline != n {
				continue
			}
			shown := number(t, v.cell(t, n, pj.Partition, "Committed"))
			if pj.Committed == nil || shown != *pj.Committed || shown != committed[pj.Partition] {
				t.Errorf("%s/%d: the page shows committed %d, /api/stats %v, Kafka %d", n, pj.Partition, shown, pj.Committed, committed[pj.Partition])
			}
		}
	}
	if len(st.KPI.OrdersPerMinute) != len(ordersWin) || st.KPI.OrdersWindow == nil || st.KPI.OrdersWindow.Present != len(ordersWin) {
		t.Errorf("/api/stats has %d order minutes (window %+v), ClickHouse %d", len(st.KPI.OrdersPerMinute), st.KPI.OrdersWindow, len(ordersWin))
	}
	if t.Failed() {
		t.FailNow()
	}

	// Data flowing: shipments keep coming, dozens of records wait for
	// their batch at any time; the page must not call that lagging.
	flow := newShipments(t, w, g, orders, tp["shipments"])
	flow.start(30, 100*time.Millisecond)
	seen := map[string]bool{} // refreshes (by the "updated" text) with a lag in records
	waitUntil(t, "three refreshes showing shipments with records waiting", time.Minute, func() bool {
		v := read()
		card := v.card(t, "shipments")
		lag, _, _ := strings.Cut(card.KV["Lag \u00b7 behind"], " \u00b7 ")
		if lag == "unknown" || number(t, lag) == 0 {
			return false
		}
		if card.State == "lagging" || v.SumLagging != 0 {
			t.Fatalf("while data flows the page says %q (summary: %d lagging) for a lag of %s records: %+v", card.Pill, v.SumLagging, lag, card)
		}
		if p := pipelineOf(t, apiStats(t, base), "shipments"); p.Lagging != 0 || p.BehindSec > laggingAfter.Seconds() {
			t.Fatalf("while data flows /api/stats has shipments %v s behind, %d partitions lagging", p.BehindSec, p.Lagging)
		}
		seen[v.Updated] = true
		return len(seen) >= 3
	})

	// ClickHouse answering 2 s late: every step of a load takes seconds,
	// the oldest waiting shipment ages past lagging_after.
	px.toxic(t, `{"name":"dash_slow","type":"latency","stream":"downstream","attributes":{"latency":2000}}`)
	flow.rate(5, 500*time.Millisecond)
	waitUntil(t, "the page showing shipments lagging", 2*time.Minute, func() bool {
		v := read()
		if v.card(t, "shipments").State != "lagging" || v.cell(t, "shipments", 0, "State") != "lagging" || v.SumLagging != 1 {
			return false
		}
		p := pipelineOf(t, apiStats(t, base), "shipments")
		return p.Lagging == 1 && p.BehindSec > laggingAfter.Seconds()
	})
	v = read()
	if pill := v.card(t, "shipments").Pill; !strings.HasPrefix(pill, "lagging: ") || !strings.HasSuffix(pill, " behind") {
		t.Errorf("the lagging pill reads %q", pill)
	}
	for _, n := range []string{"orders", "payments"} { // nothing waits there
		if state := v.card(t, n).State; state == "lagging" {
			t.Errorf("%s shows lagging with nothing to load", n)
		}
	}
	shot(t, ctx, "dashboard-lagging.png")
	px.heal(t, "dash_slow")
	flow.stop()
	waitUntil(t, "the page showing shipments caught up", 2*time.Minute, func() bool {
		v := read()
		state := v.card(t, "shipments").State
		return (state == "loading" || state == "caught-up") && v.SumLagging == 0 && pipelineOf(t, apiStats(t, base), "shipments").Lagging == 0
	})
	w.waitCommitted(group, tp["shipments"], time.Minute)
	t.Logf("dashboard checked in Chromium in %v", time.Since(start).Round(time.Second))
}

// shot saves a full-page screenshot under bin/ (an artifact of the run).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := filepath.Join(repoRoot(), "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func apiStats(t *testing.T, base string) admin.Stats {
	t.Helper()
	resp, err := http.Get(base + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("/api/stats: %v", err)
	}
	return st
}

func pipelineOf(t *testing.T, st admin.Stats, name string) admin.PipelineStats {
	t.Helper()
	for _, p := range st.Pipelines {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("/api/stats has no pipeline %q", name)
	return admin.PipelineStats{}
}

// shipments produces the shipments of orders, round after round, at a
// rate that can change, until stopped.
type shipments struct {
	t      *testing.T
	cl     *kgo.Client
	codecs *gen.Codecs
	topic  string
	all    []gen.Shipment
	mu     sync.Mutex
	n      int
	every  time.Duration
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func newShipments(t *testing.T, w *world, g *gen.Generator, orders []gen.Order, topic string) *shipments {
	s := &shipments{t: t, cl: w.kcl, codecs: g.Codecs(), topic: topic, quit: make(chan struct{}), done: make(chan struct{})}
	for _, o := range orders {
		s.all = append(s.all, g.Shipments(o)...)
	}
	if len(s.all) == 0 {
		t.Fatal("the generator made no shipments")
	}
	t.Cleanup(s.stop)
	return s
}

func (s *shipments) rate(n int, every time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n, s.every = n, every
}

func (s *shipments) start(n int, every time.Duration) {
	s.rate(n, every)
	go func() {
		defer close(s.done)
		next := 0
		for {
			s.mu.Lock()
			n, every := s.n, s.every
			s.mu.Unlock()
			recs := make([]*kgo.Record, 0, n)
			for range n {
				sh := s.all[next%len(s.all)]
				next++
				k, v, err := s.codecs.EncodeShipment(sh)
				if err != nil {
					s.t.Error(err)
					return
				}
				recs = append(recs, &kgo.Record{Topic: s.topic, Key: k, Value: v})
			}
			if err := s.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				s.t.Errorf("produce shipments: %v", err)
				return
			}
			select {
			case <-s.quit:
				return
			case <-time.After(every):
			}
		}
	}()
}

// stop ends the producing; the test's cleanup calls it too. Only once
// start ran.
func (s *shipments) stop() {
	s.once.Do(func() {
		close(s.quit)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.t.Error("the shipments producer did not stop")
		}
	})
}
