package metricdoc

import (
	"reflect"
	"strings"
	"testing"
)

func TestQueryMetrics(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`sluice_rows_loaded_total`, []string{"sluice_rows_loaded_total"}},
		{`sum by (pipeline) (rate(sluice_rows_loaded_total{pipeline=~"$pipeline"}[$__rate_interval]))`, []string{"sluice_rows_loaded_total"}},
		{`sum(rate(sluice_rows_loaded_total[5m])) by (pipeline) / ignoring(stage) group_left sum(sluice_batches_total)`,
			[]string{"sluice_rows_loaded_total", "sluice_batches_total"}},
		{`histogram_quantile(0.99, sum by (le, pipeline) (rate(sluice_batch_duration_seconds_bucket{pipeline=~"${pipeline:regex}"}[5m])))`,
			[]string{"sluice_batch_duration_seconds_bucket"}},
		{`max_over_time(process_resident_memory_bytes{job="sluice"}[1h:1m] offset 5m) > 256 * 1024 * 1024`, []string{"process_resident_memory_bytes"}},
		{`{__name__="sluice_paused_partitions", job!="x"} or on(instance) vector(0)`, []string{"sluice_paused_partitions"}},
		{`label_replace(sluice_partition_lag, "p", "$1", "partition", "(.*)") unless sluice_stalled_partitions == bool 1e3`,
			[]string{"sluice_partition_lag", "sluice_stalled_partitions"}},
		{`count without (by, on) (up{by="on", on='by'}) # a comment with a_word`, []string{"up"}},
		{`topk(5, SUM BY (topic) (sluice_refdata_lag_records)) and sluice:recorded:rate5m @ start()`,
			[]string{"sluice_refdata_lag_records", "sluice:recorded:rate5m"}},
		{`1 - (sluice_x / sluice_x) + .5 + 0x1f + Inf`, []string{"sluice_x"}},
	} {
		got, err := QueryMetrics(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got  %q\n want %q", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{
		`rat(sluice_rows_loaded_total[5m])`, // a typo in a function
		`sum(x{a="b"`,                       // unclosed
		`x{a}`,                              // a matcher without op and value
		`x{a="b}`,
		`x[5m`,
	} {
		if got, err := QueryMetrics(bad); err == nil {
			t.Errorf("%s: no error (metrics %q)", bad, got)
		}
	}
}

const readme = "# X\n\n### Metrics\n\nIntro.\n\n" +
	"| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n" +
	"| `sluice_a_total` | counter | `pipeline`, `stage` | As. |\n" +
	"| `sluice_b_seconds` | histogram | `pipeline` | Bs. |\n" +
	"| `sluice_c` | gauge | none | C. |\n" +
	"| `go_*` | | | The Go runtime. |\n" +
	"| `go_goroutines` | gauge | none | Goroutines. |\n" +
	"\n### Label values\n\n| label | values |\n| --- | --- |\n" +
	"| `stage` | `decode`, `transform`, `load` |\n| `pipeline` | a pipeline's name |\n" +
	"\n## Next\n\n| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n| `not_this` | gauge | none | x |\n"

func TestParse(t *testing.T) {
	c, err := Parse(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 5 {
		t.Fatalf("%d entries: %+v", len(c), c)
	}
	if e := c[0]; e.Name != "sluice_a_total" || e.Type != "counter" || !reflect.DeepEqual(e.Labels, []string{"pipeline", "stage"}) {
		t.Errorf("first entry %+v", e)
	}
	if e := c[2]; len(e.Labels) != 0 {
		t.Errorf("none parsed as labels %q", e.Labels)
	}
	for name, want := range map[string]string{
		"sluice_a_total": "sluice_a_total", "sluice_b_seconds_bucket": "sluice_b_seconds", "sluice_b_seconds_count": "sluice_b_seconds",
		"go_goroutines": "go_goroutines", "go_threads": "go_", "sluice_c_bucket": "", "sluice_a_total_sum": "", "not_this": "",
	} {
		e, ok := c.Series(name)
		if got := e.Name; !ok && want != "" || ok && got != want {
			t.Errorf("Series(%s) = %q, %v; want %q", name, got, ok, want)
		}
	}
	v, err := LabelValues(readme)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v["stage"], []string{"decode", "transform", "load"}) || len(v["pipeline"]) != 0 {
		t.Errorf("label values %v", v)
	}
}

func TestParseRejects(t *testing.T) {
	for name, mutate := range map[string]func(string) string{
		"no section":   func(s string) string { return strings.Replace(s, "### Metrics", "### Metricz", 1) },
		"bad type":     func(s string) string { return strings.Replace(s, "| counter |", "| countr |", 1) },
		"listed twice": func(s string) string { return strings.Replace(s, "`sluice_c`", "`sluice_a_total`", 1) },
		"no meaning":   func(s string) string { return strings.Replace(s, "| C. |", "| |", 1) },
		"short row":    func(s string) string { return strings.Replace(s, "| none | C. |", "| C. |", 1) },
	} {
		if _, err := Parse(mutate(readme)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseQuerySelectorsAndGrouping(t *testing.T) {
	q, err := ParseQuery(`sum by (stage, reason_class) (rate(sluice_dead_letter_reasons_total{pipeline=~"$pipeline", stage!="x"}[5m])) / on(pipeline) group_left() sum without (instance) ({__name__="sluice_b", job="s"})`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Selector{
		{Metric: "sluice_dead_letter_reasons_total", Labels: []string{"pipeline", "stage"}},
		{Metric: "sluice_b", Labels: []string{"job"}},
	}
	if !reflect.DeepEqual(q.Selectors, want) {
		t.Errorf("selectors %+v, want %+v", q.Selectors, want)
	}
	if g := []string{"stage", "reason_class", "pipeline", "instance"}; !reflect.DeepEqual(q.Grouping, g) {
		t.Errorf("grouping %q, want %q", q.Grouping, g)
	}
	if _, err := ParseQuery(`{job="x"}`); err == nil {
		t.Error("a selector without a metric name: no error")
	}
}
