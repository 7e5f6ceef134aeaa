// Package metricdoc reads the README's metrics catalogue, for the tests
// that keep it, the registry and the Grafana dashboard in step: pkg/service
// checks the catalogue against the metrics Sluice registers, deploy/grafana
// checks the dashboard's queries against the catalogue.
//
// The catalogue is the first table under the README heading "### Metrics"
// whose first column is "metric": one row per metric family, the name in
// backticks (a name ending in "*" stands for every family of that prefix,
// for collectors Sluice does not define), its type, its labels in
// backticks (or "none") and its meaning. The table under "### Label
// values" lists, per label, the values of the closed sets.
package metricdoc

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Headings of the README sections the tables are in.
const (
	MetricsHeading = "### Metrics"
	ValuesHeading  = "### Label values"
)

// Types a catalogue row may give.
var Types = []string{"counter", "gauge", "histogram", "summary"}

// Entry is one row of the catalogue.
type Entry struct {
	// Name is the family name, or a prefix when Wildcard.
	Name     string
	Wildcard bool
	Type     string
	// Labels are the label names, sorted; empty for none.
	Labels  []string
	Meaning string
}

// Catalogue is the parsed table.
type Catalogue []Entry

var backticked = regexp.MustCompile("`([^`]*)`")

func codes(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// table returns the rows (header first, the --- line dropped) of the first
// table under heading whose first header cell is first.
func table(readme, heading, first string) ([][]string, error) {
	lines := strings.Split(readme, "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == heading })
	if start < 0 {
		return nil, fmt.Errorf("README: no %q section", heading)
	}
	level := strings.Count(strings.Fields(heading)[0], "#")
	var rows [][]string
	for _, l := range lines[start+1:] {
		if h := strings.Fields(l); len(h) > 0 && strings.Trim(h[0], "#") == "" && len(h[0]) <= level {
			break // the next section at the same level or above
		}
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			if len(rows) > 0 {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(rows) == 0 && !strings.EqualFold(cells[0], first) {
			continue
		}
		rows = append(rows, cells)
	}
	if len(rows) < 3 {
		return nil, fmt.Errorf("README: section %q has no table with a %q column and a row", heading, first)
	}
	out := [][]string{rows[0]}
	for _, r := range rows[2:] {
		if len(r) != len(rows[0]) {
			return nil, fmt.Errorf("README %s: row %q has %d cells, the header %d", heading, strings.Join(r, " | "), len(r), len(rows[0]))
		}
		out = append(out, r)
	}
	return out, nil
}

// Parse reads the catalogue from the README's text.
func Parse(readme string) (Catalogue, error) {
	rows, err := table(readme, MetricsHeading, "metric")
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.ToLower(h)] = i
	}
	for _, want := range []string{"metric", "type", "labels", "meaning"} {
		if _, ok := col[want]; !ok {
			return nil, fmt.Errorf("README %s: the table has no %q column (header %q)", MetricsHeading, want, strings.Join(rows[0], " | "))
		}
	}
	var c Catalogue
	var problems []string
	seen := map[string]bool{}
	for _, r := range rows[1:] {
		names := codes(r[col["metric"]])
		if len(names) != 1 {
			problems = append(problems, fmt.Sprintf("row %q: want one `metric`", r[col["metric"]]))
			continue
		}
		e := Entry{Name: names[0], Type: strings.ToLower(strings.Trim(r[col["type"]], "` ")), Meaning: r[col["meaning"]]}
		if strings.HasSuffix(e.Name, "*") {
			e.Name, e.Wildcard = strings.TrimSuffix(e.Name, "*"), true
		}
		if e.Wildcard {
			e.Type = "" // a family of families: types vary
		} else if !slices.Contains(Types, e.Type) {
			problems = append(problems, fmt.Sprintf("%s: type %q, want one of %v", e.Name, e.Type, Types))
		}
		e.Labels = codes(r[col["labels"]])
		slices.Sort(e.Labels)
		if seen[names[0]] {
			problems = append(problems, fmt.Sprintf("%s is listed twice", names[0]))
		}
		seen[names[0]] = true
		if e.Meaning == "" {
			problems = append(problems, fmt.Sprintf("%s has no meaning", names[0]))
		}
		c = append(c, e)
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("README %s: %s", MetricsHeading, strings.Join(problems, "; "))
	}
	return c, nil
}

// Family returns the entry a family name is listed under: its own row,
// else the longest wildcard row it matches.
func (c Catalogue) Family(name string) (Entry, bool) {
	var best Entry
	found := false
	for _, e := range c {
		switch {
		case !e.Wildcard && e.Name == name:
			return e, true
		case e.Wildcard && strings.HasPrefix(name, e.Name) && (!found || len(e.Name) > len(best.Name)):
			best, found = e, true
		}
	}
	return best, found
}

// Series returns the entry a series name a query may use belongs to: a
// family, or a histogram's _bucket, _sum or _count, or a summary's _sum
// or _count.
func (c Catalogue) Series(name string) (Entry, bool) {
	if e, ok := c.Family(name); ok {
		return e, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		if e, ok := c.Family(base); ok && !e.Wildcard && (e.Type == "histogram" || e.Type == "summary" && suf != "_bucket") {
			return e, true
		}
	}
	return Entry{}, false
}

// LabelValues reads the "### Label values" table: label name to its
// values in backticks (none for an open set, e.g. pipeline names).
func LabelValues(readme string) (map[string][]string, error) {
	rows, err := table(readme, ValuesHeading, "label")
	if err != nil {
		return nil, err
	}
	if len(rows[0]) < 2 {
		return nil, fmt.Errorf("README %s: want columns label and values", ValuesHeading)
	}
	out := map[string][]string{}
	for _, r := range rows[1:] {
		names := codes(r[0])
		if len(names) != 1 {
			return nil, fmt.Errorf("README %s: row %q: want one `label`", ValuesHeading, r[0])
		}
		if _, dup := out[names[0]]; dup {
			return nil, fmt.Errorf("README %s: %s listed twice", ValuesHeading, names[0])
		}
		out[names[0]] = codes(r[1])
	}
	return out, nil
}
