package grafana

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-etl/sluice/internal/metricdoc"
)

const (
	root          = "../.."
	dashboardFile = "dashboards/sluice.json"
)

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func catalogue(t *testing.T) metricdoc.Catalogue {
	t.Helper()
	c, err := metricdoc.Parse(string(read(t, "README.md")))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// query is one PromQL expression of the dashboard and where it is.
type query struct {
	where string
	expr  string
}

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"` // a string, or {"query": "..."}
}

func (v variable) queryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

func parseDashboard(b []byte) (*dashboard, error) {
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (d *dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// queries returns every PromQL expression of the dashboard: the panels'
// targets and the query variables' label_values(expr, label).
func (d *dashboard) queries() ([]query, []string) {
	var out []query
	var problems []string
	for _, p := range d.allPanels() {
		for _, t := range p.Targets {
			out = append(out, query{fmt.Sprintf("panel %q target %s", p.Title, t.RefID), t.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.queryText()
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			problems = append(problems, fmt.Sprintf("variable %s: query %q is not label_values(<metric selector>, <label>)", v.Name, q))
			continue
		}
		// The label must be one of the selector's: make it a matcher.
		out = append(out, query{"variable " + v.Name, fmt.Sprintf("%s and on() (%s{%s!=\"\"})", m[1], strings.TrimSpace(m[1]), m[2])})
	}
	return out, problems
}

// checkQueries checks every query against the catalogue: each selects at
// least one metric, every metric is catalogued (a histogram by its
// _bucket, _sum or _count), every label a matcher tests is one of the
// metric's (or a target label), and every label a query groups by is one
// of its metrics' labels (or a target label, or le).
func checkQueries(d *dashboard, c metricdoc.Catalogue) []string {
	qs, problems := d.queries()
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(qs) == 0 {
		add("the dashboard has no queries")
	}
	for _, q := range qs {
		pq, err := metricdoc.ParseQuery(q.expr)
		if err != nil {
			add("%s: %v", q.where, err)
			continue
		}
		if len(pq.Selectors) == 0 {
			add("%s: %q selects no metric", q.where, q.expr)
		}
		known := slices.Clone(targetLabels)
		for _, s := range pq.Selectors {
			e, ok := c.Series(s.Metric)
			if !ok {
				add("%s: metric %s is not in the README's metrics catalogue", q.where, s.Metric)
				continue
			}
			own := append(slices.Clone(e.Labels), targetLabels...)
			if strings.HasSuffix(s.Metric, "_bucket") {
				own = append(own, "le")
			}
			if e.Wildcard {
				continue // a collector's family: its labels are not listed
			}
			for _, l := range s.Labels {
				if !slices.Contains(own, l) {
					add("%s: %s has no label %s (the catalogue lists %v)", q.where, s.Metric, l, e.Labels)
				}
			}
			known = append(known, own...)
		}
		for _, l := range pq.Grouping {
			if !slices.Contains(known, l) {
				add("%s: groups by %s, which none of its metrics has", q.where, l)
			}
		}
	}
	return problems
}

// coverage is what the dashboard must show: a metric, and the labels a
// query of it must keep apart.
var coverage = []struct {
	what    string
	metric  string
	groupBy []string
}{
	{"throughput", "sluice_rows_loaded_total", []string{"pipeline"}},
	{"consumer lag", "sluice_partition_lag", []string{"pipeline"}},
	{"batch latency", "sluice_batch_duration_seconds_bucket", []string{"le"}},
	{"dead letters by stage and reason class", "sluice_dead_letter_reasons_total", []string{"stage", "reason_class"}},
	{"retries by error class", "sluice_retries_total", []string{"error_type"}},
	{"paused partitions", "sluice_paused_partitions", nil},
	{"RSS", "process_resident_memory_bytes", nil},
}

func checkCoverage(d *dashboard) []string {
	qs, _ := d.queries()
	var problems []string
	for _, want := range coverage {
		found := false
		for _, q := range qs {
			pq, err := metricdoc.ParseQuery(q.expr)
			if err != nil || !slices.Contains(pq.Metrics(), want.metric) {
				continue
			}
			if !slices.ContainsFunc(want.groupBy, func(l string) bool { return !slices.Contains(pq.Grouping, l) }) {
				found = true
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("no panel shows %s: a query of %s grouped by %v", want.what, want.metric, want.groupBy))
		}
	}
	return problems
}

// checkStructure checks what Grafana needs to show the panels: unique
// panel ids, every query through the datasource variable, unique refIds
// per panel, panels inside the 24-column grid, a datasource variable for
// Prometheus.
func checkStructure(d *dashboard) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.UID == "" || d.Title == "" {
		add("the dashboard needs a uid and a title (provisioning keys on the uid)")
	}
	ids := map[int]bool{}
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			add("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			add("panel %q: gridPos %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			add("panel %q has no queries", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			add("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		for _, t := range p.Targets {
			if t.RefID == "" || refs[t.RefID] {
				add("panel %q: refId %q missing or repeated", p.Title, t.RefID)
			}
			refs[t.RefID] = true
			if t.Datasource != nil && t.Datasource.UID != "${datasource}" {
				add("panel %q target %s: datasource %+v, want the ${datasource} variable", p.Title, t.RefID, t.Datasource)
			}
		}
	}
	ds := slices.IndexFunc(d.Templating.List, func(v variable) bool { return v.Name == "datasource" })
	if ds < 0 || d.Templating.List[ds].Type != "datasource" || d.Templating.List[ds].queryText() != "prometheus" {
		add("no variable datasource of type datasource for prometheus")
	}
	return problems
}

func TestDashboard(t *testing.T) {
	d, err := parseDashboard(read(t, "deploy/grafana/"+dashboardFile))
	if err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	c := catalogue(t)
	for _, p := range append(append(checkQueries(d, c), checkCoverage(d)...), checkStructure(d)...) {
		t.Error(p)
	}
	if qs, _ := d.queries(); len(qs) < 20 {
		t.Errorf("only %d queries found: the walk over the panels is broken", len(qs))
	}
}

// TestDashboardChecksFail runs the checks on mutated copies of the
// dashboard: each mutation must be reported.
func TestDashboardChecksFail(t *testing.T) {
	orig := string(read(t, "deploy/grafana/"+dashboardFile))
	c := catalogue(t)
	for name, m := range map[string]struct {
		old, new string
		all      bool // replace every occurrence, not the first
		check    func(*dashboard, metricdoc.Catalogue) []string
		want     string
	}{
		"unknown metric":       {"sluice_rows_loaded_total{", "sluice_rows_load_total{", false, checkQueries, "sluice_rows_load_total is not in the README"},
		"unknown label":        {`sum by (stage, reason_class)`, `sum by (stage, reason_klass)`, false, checkQueries, "groups by reason_klass"},
		"matcher label":        {`sluice_partition_lag{pipeline=~`, `sluice_partition_lag{pipe=~`, false, checkQueries, "has no label pipe"},
		"histogram suffix":     {"sluice_batch_rows_sum", "sluice_batch_rows_total", false, checkQueries, "sluice_batch_rows_total is not in the README"},
		"function typo":        {"histogram_quantile(0.99", "histogram_quantil(0.99", false, checkQueries, "unknown function histogram_quantil"},
		"variable metric":      {"label_values(sluice_records_consumed_total, pipeline)", "label_values(sluice_records_consumed, pipeline)", false, checkQueries, "sluice_records_consumed is not in the README"},
		"no dead letter class": {`sum by (stage, reason_class) (rate(sluice_dead_letter_reasons_total`, `sum by (stage) (rate(sluice_dead_letter_reasons_total`, false, func(d *dashboard, _ metricdoc.Catalogue) []string { return checkCoverage(d) }, "dead letters by stage and reason class"},
		"datasource":           {`"uid": "${datasource}"`, `"uid": "abc"`, true, func(d *dashboard, _ metricdoc.Catalogue) []string { return checkStructure(d) }, "want the ${datasource} variable"},
	} {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(orig, m.old) {
				t.Fatalf("the dashboard has no %q to mutate", m.old)
			}
			n := 1
			if m.all {
				n = -1
			}
			d, err := parseDashboard([]byte(strings.Replace(orig, m.old, m.new, n)))
			if err != nil {
				t.Fatal(err)
			}
			problems := m.check(d, c)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, m.want) }) {
				t.Errorf("mutation not reported (want %q): %q", m.want, problems)
			}
		})
	}
}

// TestProvisioning checks that docker-compose.yml's profile
// "observability" is wired: Grafana's datasource reaches the prometheus
// service, its dashboard provider reads the directory the dashboard is
// mounted at, its home dashboard exists there, and Prometheus reads the
// mounted prometheus.yml, which scrapes the sluice service's admin port.
func TestProvisioning(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Profiles    []string       `yaml:"profiles"`
			Command     []string       `yaml:"command"`
			Environment map[string]any `yaml:"environment"`
			Ports       []string       `yaml:"ports"`
			Volumes     []string       `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(read(t, "docker-compose.yml"), &compose); err != nil {
		t.Fatal(err)
	}
	// binds maps a service's container paths to the repository paths
	// mounted there.
	binds := func(name string) map[string]string {
		out := map[string]string{}
		for _, v := range compose.Services[name].Volumes {
			p := strings.SplitN(v, ":", 3)
			if len(p) >= 2 && strings.HasPrefix(p[0], "./") {
				out[p[1]] = path.Clean(p[0])
			}
		}
		return out
	}
	// host resolves a container path of a service to a repository file.
	host := func(name, p string) (string, bool) {
		for target, src := range binds(name) {
			if p == target || strings.HasPrefix(p, target+"/") {
				return src + strings.TrimPrefix(p, target), true
			}
		}
		return "", false
	}
	for _, name := range []string{"prometheus", "grafana"} {
		s, ok := compose.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
		if !slices.Equal(s.Profiles, []string{"observability"}) {
			t.Errorf("%s: profiles %v, want [observability]", name, s.Profiles)
		}
	}

	// Grafana: provisioning and the dashboard.
	prov, ok := host("grafana", "/etc/grafana/provisioning")
	if !ok {
		t.Fatal("grafana: nothing of the repository is mounted at /etc/grafana/provisioning")
	}
	var dsFile struct {
		Datasources []struct {
			Name, Type, UID, URL string
			IsDefault            bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(read(t, prov+"/datasources/prometheus.yml"), &dsFile); err != nil {
		t.Fatal(err)
	}
	if len(dsFile.Datasources) != 1 || dsFile.Datasources[0].Type != "prometheus" || !dsFile.Datasources[0].IsDefault {
		t.Fatalf("datasources %+v, want one default prometheus", dsFile.Datasources)
	}
	u, err := url.Parse(dsFile.Datasources[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	promPort := ""
	for _, a := range compose.Services["prometheus"].Command {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			_, promPort, _ = net.SplitHostPort(v)
		}
	}
	if u.Hostname() != "prometheus" || u.Port() != promPort || promPort == "" {
		t.Errorf("datasource URL %s, want http://prometheus:%s (the service and its --web.listen-address)", u, promPort)
	}
	var provider struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(read(t, prov+"/dashboards/sluice.yml"), &provider); err != nil {
		t.Fatal(err)
	}
	if len(provider.Providers) != 1 || provider.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers %+v, want one of type file", provider.Providers)
	}
	dir, ok := host("grafana", provider.Providers[0].Options.Path)
	if !ok || dir != "./deploy/grafana/dashboards" && dir != "deploy/grafana/dashboards" {
		t.Errorf("the dashboard provider reads %s, where grafana has %q mounted; want deploy/grafana/dashboards", provider.Providers[0].Options.Path, dir)
	}
	home := fmt.Sprint(compose.Services["grafana"].Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
	if f, ok := host("grafana", home); !ok || f != "deploy/grafana/"+dashboardFile {
		t.Errorf("grafana's home dashboard %s is %q on the host, want deploy/grafana/%s", home, f, dashboardFile)
	}

	// Prometheus: its config, and what it scrapes.
	cfgPath := ""
	for _, a := range compose.Services["prometheus"].Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			cfgPath = v
		}
	}
	f, ok := host("prometheus", cfgPath)
	if !ok || f != "deploy/prometheus/prometheus.yml" {
		t.Fatalf("prometheus reads %q, which is %q on the host; want deploy/prometheus/prometheus.yml", cfgPath, f)
	}
	var pcfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(read(t, f), &pcfg); err != nil {
		t.Fatal(err)
	}
	_, adminPort, err := net.SplitHostPort(fmt.Sprint(compose.Services["sluice"].Environment["SLUICE_ADMIN_LISTEN"]))
	if err != nil {
		t.Fatalf("sluice: SLUICE_ADMIN_LISTEN: %v", err)
	}
	want := net.JoinHostPort("sluice", adminPort)
	scraped := false
	for _, sc := range pcfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, want) && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") {
				scraped = true
			}
		}
	}
	if !scraped {
		t.Errorf("prometheus.yml scrapes no %s/metrics (the sluice service's admin.listen)", want)
	}
}
