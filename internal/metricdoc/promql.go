package metricdoc

import (
	"fmt"
	"slices"
	"strings"
)

// Selector is one vector selector of a query: the metric it names and the
// labels its matchers test.
type Selector struct {
	Metric string
	Labels []string
}

// Query is what a PromQL expression reads.
type Query struct {
	// Selectors in order of appearance.
	Selectors []Selector
	// Grouping are the label names of its by, without, on, ignoring,
	// group_left and group_right lists.
	Grouping []string
}

// Metrics returns the metric names the query selects, each once.
func (q Query) Metrics() []string {
	var out []string
	for _, s := range q.Selectors {
		if !slices.Contains(out, s.Metric) {
			out = append(out, s.Metric)
		}
	}
	return out
}

// QueryMetrics returns the metric names a PromQL expression selects, in
// order of appearance, each once (ParseQuery).
func QueryMetrics(expr string) ([]string, error) {
	q, err := ParseQuery(expr)
	if err != nil {
		return nil, err
	}
	return q.Metrics(), nil
}

// ParseQuery reads the selectors of a PromQL expression: the bare metric
// names of vector selectors (and names given as {__name__="..."}), with
// the labels their matchers test. It knows enough of PromQL's syntax to
// tell them from function and aggregation names, keywords, label names
// (inside {...} and the lists of by, without, on, ignoring, group_left and
// group_right, returned as Grouping), strings, numbers and durations,
// ranges and subqueries ([...]) and Grafana's template variables ($var,
// ${var}, $__interval). A function name it does not know is an error, so
// a typo in one is not taken for a metric name.
func ParseQuery(expr string) (Query, error) {
	var q Query
	s := expr
	i := 0
	skipSpace := func(j int) int {
		for j < len(s) && strings.ContainsRune(" \t\r\n", rune(s[j])) {
			j++
		}
		return j
	}
	for i < len(s) {
		c := s[i]
		switch {
		case strings.ContainsRune(" \t\r\n", rune(c)):
			i++
		case c == '#': // a comment, to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return q, err
			}
			i = j
		case c == '$':
			i = skipVariable(s, i)
		case c == '{': // matchers without a name before them
			j, sel, err := matchers(s, i)
			if err != nil {
				return q, err
			}
			if sel.Metric == "" {
				return q, fmt.Errorf("promql %q: a selector without a metric name", expr)
			}
			q.Selectors = append(q.Selectors, sel)
			i = j
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return q, fmt.Errorf("promql %q: unclosed [", expr)
			}
			i += j + 1
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// A number or a duration (5m, 1h30m, 1e3, 0x1f).
			for i < len(s) && (isIdent(s[i], true) || s[i] == '.') {
				i++
			}
		case isIdent(c, false):
			j := i
			for j < len(s) && isIdent(s[j], true) {
				j++
			}
			word := s[i:j]
			k := skipSpace(j)
			next := byte(0)
			if k < len(s) {
				next = s[k]
			}
			lower := strings.ToLower(word)
			switch {
			case grouping[lower]:
				if next == '(' { // a list of label names
					e := strings.IndexByte(s[k:], ')')
					if e < 0 {
						return q, fmt.Errorf("promql %q: unclosed %s (", expr, word)
					}
					for _, l := range strings.Split(s[k+1:k+e], ",") {
						if l = strings.TrimSpace(l); l != "" {
							q.Grouping = append(q.Grouping, l)
						}
					}
					j = k + e + 1
				}
			case keywords[lower], aggregations[lower]: // sum by (x) (...), SUM(...)
			case next == '(':
				if !functions[word] {
					return q, fmt.Errorf("promql %q: unknown function %s", expr, word)
				}
			default:
				sel := Selector{Metric: word}
				if next == '{' {
					e, m, err := matchers(s, k)
					if err != nil {
						return q, err
					}
					if m.Metric != "" {
						return q, fmt.Errorf("promql %q: %s has a second name", expr, word)
					}
					sel.Labels, j = m.Labels, e
				}
				q.Selectors = append(q.Selectors, sel)
			}
			i = j
		default: // operators and punctuation
			i++
		}
	}
	return q, nil
}

func isIdent(c byte, inner bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || inner && c >= '0' && c <= '9'
}

// skipString returns the index after the string literal at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("promql %q: unclosed string", s)
}

// skipVariable returns the index after a Grafana variable at i: $name,
// ${name} or ${name:format}.
func skipVariable(s string, i int) int {
	j := i + 1
	if j < len(s) && s[j] == '{' {
		if e := strings.IndexByte(s[j:], '}'); e >= 0 {
			return j + e + 1
		}
		return len(s)
	}
	for j < len(s) && isIdent(s[j], true) {
		j++
	}
	return j
}

// matchers reads the label matchers at i ('{') and returns the index after
// them, and a selector with the labels they test (__name__ aside) and the
// name given as __name__="..." or as a quoted name.
func matchers(s string, i int) (int, Selector, error) {
	var sel Selector
	j := i + 1
	for {
		for j < len(s) && strings.ContainsRune(" \t\r\n,", rune(s[j])) {
			j++
		}
		if j >= len(s) {
			return 0, sel, fmt.Errorf("promql %q: unclosed {", s)
		}
		if s[j] == '}' {
			return j + 1, sel, nil
		}
		// label op value
		k := j
		for k < len(s) && isIdent(s[k], true) {
			k++
		}
		label := s[j:k]
		if label == "" && s[k] == '"' { // a quoted name: {"metric_name"}
			e, err := skipString(s, k)
			if err != nil {
				return 0, sel, err
			}
			sel.Metric = s[k+1 : e-1]
			j = e
			continue
		}
		for k < len(s) && strings.ContainsRune(" \t", rune(s[k])) {
			k++
		}
		op := k
		for k < len(s) && strings.ContainsRune("=!~", rune(s[k])) {
			k++
		}
		operator := s[op:k]
		for k < len(s) && strings.ContainsRune(" \t", rune(s[k])) {
			k++
		}
		if label == "" || operator == "" || k >= len(s) || !strings.ContainsRune("\"'`", rune(s[k])) {
			return 0, sel, fmt.Errorf("promql %q: cannot read the matcher at %d", s, j)
		}
		e, err := skipString(s, k)
		if err != nil {
			return 0, sel, err
		}
		switch {
		case label == "__name__" && operator == "=":
			sel.Metric = s[k+1 : e-1]
		case label != "__name__":
			sel.Labels = append(sel.Labels, label)
		}
		j = e
	}
}

// grouping are the keywords followed by a list of label names.
var grouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// keywords are the other words of PromQL that are not metric names.
var keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true}

// aggregations are PromQL's aggregation operators (any case).
var aggregations = map[string]bool{}

// functions are PromQL's functions.
var functions = map[string]bool{}

func init() {
	for _, a := range strings.Fields("sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio") {
		aggregations[a] = true
	}
	for _, f := range strings.Fields(`
		abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
		day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count histogram_fraction
		histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters
		double_exponential_smoothing hour idelta increase info irate label_join label_replace ln log2
		log10 minute month predict_linear rate resets round scalar sgn sort sort_desc sort_by_label
		sort_by_label_desc sqrt time timestamp vector year avg_over_time min_over_time max_over_time
		sum_over_time count_over_time quantile_over_time stddev_over_time stdvar_over_time
		last_over_time present_over_time mad_over_time acos acosh asin asinh atan atanh cos cosh sin
		sinh tan tanh deg rad pi start end`) {
		functions[f] = true
	}
}
