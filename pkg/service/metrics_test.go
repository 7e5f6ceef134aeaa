package service

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	iofs "io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-etl/sluice/internal/metricdoc"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/logx"
	"github.com/sluice-etl/sluice/pkg/pipeline"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

// family is a metric family as registered: its type and label names.
type family struct {
	typ    string
	labels []string
}

// recorder is a Registerer that keeps what is registered through it.
type recorder struct {
	prometheus.Registerer
	cs []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.cs = append(r.cs, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var descRE = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), .*constLabels: \{(.*)\}, variableLabels: \{([^{}]*)\}\}$`)

// registered builds the registry as New does — the runtime collectors,
// the engine's series, the reference loader's (with the repository's
// sluice.yaml) — and returns every family it holds, vectors without a
// series yet included.
func registered(t *testing.T) map[string]family {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "..", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Registerer: prometheus.NewPedanticRegistry()}
	registerRuntimeMetrics(rec)
	registerMemoryMetrics(rec, func() int64 { return 0 }, func() int64 { return 0 })
	newReloadMetrics(rec)
	pipeline.NewMetrics(rec)
	r := cfg.Reference
	l, err := refdata.NewLoader(refdata.LoaderConfig{
		Brokers: cfg.Kafka.Brokers, CustomersTopic: r.CustomersTopic, FxRatesTopic: r.FxRatesTopic,
		CustomersSchema: r.CustomersSchema, FxRatesSchema: r.FxRatesSchema, Registerer: rec,
	}, refdata.NewStore(r.BaseCurrency))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)

	out := map[string]family{}
	for _, c := range rec.cs {
		// Types from what the collector exports now (its series, if any).
		types := map[string]string{}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			types[mf.GetName()] = strings.ToLower(mf.GetType().String())
		}
		ch := make(chan *prometheus.Desc, 256)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read %s", d)
			}
			name, err := strconv.Unquote(m[1])
			if err != nil {
				t.Fatal(err)
			}
			var labels []string
			for _, lp := range strings.Split(m[2], ",") {
				if n, _, ok := strings.Cut(lp, "="); ok {
					labels = append(labels, n)
				}
			}
			for _, n := range strings.Split(m[3], ",") {
				if n = strings.TrimSuffix(strings.TrimPrefix(n, "c("), ")"); n != "" {
					labels = append(labels, n)
				}
			}
			slices.Sort(labels)
			typ := types[name]
			if typ == "" {
				typ = vecType(c)
			}
			if typ == "" {
				t.Fatalf("%s: no type known (a %T without series)", name, c)
			}
			if f, dup := out[name]; dup && (f.typ != typ || !slices.Equal(f.labels, labels)) {
				t.Fatalf("%s registered twice, as %v and %v %v", name, f, typ, labels)
			}
			out[name] = family{typ, labels}
		}
	}
	return out
}

func vecType(c prometheus.Collector) string {
	switch c.(type) {
	case *prometheus.CounterVec:
		return "counter"
	case *prometheus.GaugeVec:
		return "gauge"
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	}
	return ""
}

// TestPrintRegistered prints the registry's families (go test -run
// TestPrintRegistered -v ./pkg/service/), for writing the catalogue.
func TestPrintRegistered(t *testing.T) {
	if os.Getenv("SLUICE_PRINT_METRICS") == "" {
		t.Skip("set SLUICE_PRINT_METRICS=1 to print")
	}
	fs := registered(t)
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println(n, fs[n].typ, fs[n].labels)
	}
}

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMetricsCatalogue fails when a metric the registry holds is missing
// from the README's catalogue, or listed with another type or other
// labels, and when the catalogue lists a metric the registry lacks.
// Sluice's own (sluice_*) must each have a row; the Go runtime's and the
// process's collectors may be covered by a go_* or process_* row.
func TestMetricsCatalogue(t *testing.T) {
	cat, err := metricdoc.Parse(readme(t))
	if err != nil {
		t.Fatal(err)
	}
	fs := registered(t)
	if len(fs) < 40 {
		t.Fatalf("only %d families registered: the construction is not the one New makes", len(fs))
	}
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := fs[n]
		e, ok := cat.Family(n)
		switch {
		case !ok:
			t.Errorf("%s (%s, labels %v) is registered but not in the README's metrics catalogue", n, f.typ, f.labels)
		case e.Wildcard && strings.HasPrefix(n, "sluice_"):
			t.Errorf("%s is only covered by the catalogue's %s* row: Sluice's own metrics need a row each", n, e.Name)
		case e.Wildcard:
		case e.Type != f.typ:
			t.Errorf("%s: the catalogue says %s, the registry has a %s", n, e.Type, f.typ)
		case !slices.Equal(e.Labels, f.labels):
			t.Errorf("%s: the catalogue lists labels %v, the registry has %v", n, e.Labels, f.labels)
		}
	}
	for _, e := range cat {
		if e.Wildcard {
			if strings.HasPrefix(e.Name, "sluice_") {
				t.Errorf("catalogue row %s*: Sluice's own metrics need a row each", e.Name)
			}
			if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, e.Name) }) {
				t.Errorf("catalogue row %s* matches no registered metric", e.Name)
			}
			continue
		}
		if _, ok := fs[e.Name]; !ok {
			t.Errorf("%s is in the README's metrics catalogue but not registered", e.Name)
		}
	}
}

// TestMetricLabelValues checks the README's table of label values: every
// label of the catalogue is in it (so each says how it is bounded), and
// the closed sets list exactly the values the code uses.
func TestMetricLabelValues(t *testing.T) {
	text := readme(t)
	cat, err := metricdoc.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	values, err := metricdoc.LabelValues(text)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, e := range cat {
		for _, l := range e.Labels {
			used[l] = true
			if _, ok := values[l]; !ok {
				t.Errorf("label %s (of %s) is not in the README's label values table", l, e.Name)
			}
		}
	}
	for l := range values {
		if !used[l] {
			t.Errorf("the label values table lists %s, which no catalogued metric has", l)
		}
	}
	for label, want := range map[string][]string{
		"stage":        {string(record.StageDecode), string(record.StageTransform), string(record.StageLoad)},
		"reason_class": record.ReasonClasses,
		"op":           pipeline.RetryOps(),
		"error_type":   logx.ErrorTypes,
		"result":       ReloadResults,
	} {
		if got := values[label]; !slices.Equal(got, want) {
			t.Errorf("label %s: the README lists %q, the code has %q (in this order)", label, got, want)
		}
	}
}

// TestEveryMetricDefinitionIsRegistered reads every metric definition in
// the repository's code (a prometheus.*Opts literal with a Name) and
// fails when one is not in the registry New builds: a metric defined
// elsewhere would escape the catalogue check.
func TestEveryMetricDefinitionIsRegistered(t *testing.T) {
	fs := registered(t)
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	found := 0
	for _, dir := range []string{"pkg", "cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d iofs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok {
					return true
				}
				sel, ok := lit.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
					return true
				}
				for _, el := range lit.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if k, isIdent := kv.Key.(*ast.Ident); !ok || !isIdent || k.Name != "Name" {
						continue
					}
					bl, ok := kv.Value.(*ast.BasicLit)
					if !ok || bl.Kind != token.STRING {
						t.Errorf("%s: a metric whose Name is not a string literal; this check cannot follow it", fset.Position(kv.Pos()))
						continue
					}
					name, _ := strconv.Unquote(bl.Value)
					found++
					if _, ok := fs[name]; !ok {
						t.Errorf("%s: metric %s is defined but not in the registry New builds (registered()) — register it there, and list it in the README", fset.Position(kv.Pos()), name)
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if found < 30 {
		t.Fatalf("only %d metric definitions found: the scan is broken", found)
	}
}
