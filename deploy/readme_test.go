package deploy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// dockerHeading is the README section whose table lists the compose
// services.
const dockerHeading = "### Docker"

// tableService is one row of the README's Docker table.
type tableService struct {
	name     string
	image    string
	built    bool     // "built from `Dockerfile`"
	ports    []string // normalised, see normPort
	profiles []string
	mounts   []string // normalised, see normMount
}

var backticked = regexp.MustCompile("`([^`]*)`")

// codes returns the backticked parts of a cell, in order.
func codes(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// parseDockerTable reads the first table of the README's "### Docker"
// section whose first column is "service". Columns are found by their
// header's first word, so the table may gain columns or reorder them.
func parseDockerTable(readme string) (map[string]tableService, error) {
	lines := strings.Split(readme, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == dockerHeading {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no %q section", dockerHeading)
	}
	var rows [][]string
	for _, l := range lines[start:] {
		if strings.HasPrefix(l, "## ") || strings.HasPrefix(l, "### ") {
			break
		}
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			if len(rows) > 0 {
				break // the end of the table
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(rows) == 0 && !strings.EqualFold(cells[0], "service") {
			continue
		}
		rows = append(rows, cells)
	}
	if len(rows) < 3 {
		return nil, fmt.Errorf("section %q has no table of services (header \"| service | ...\", at least one row)", dockerHeading)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		word, _, _ := strings.Cut(strings.ToLower(h), " ")
		col[word] = i
	}
	for _, want := range []string{"service", "image", "ports", "profile", "config"} {
		if _, ok := col[want]; !ok {
			return nil, fmt.Errorf("the Docker table has no %q column (header %q)", want, strings.Join(rows[0], " | "))
		}
	}
	out := map[string]tableService{}
	var errs []error
	for _, r := range rows[2:] { // rows[1] is the --- line
		if len(r) != len(rows[0]) {
			errs = append(errs, fmt.Errorf("Docker table row %q has %d cells, the header %d", strings.Join(r, " | "), len(r), len(rows[0])))
			continue
		}
		names := codes(r[col["service"]])
		if len(names) != 1 {
			errs = append(errs, fmt.Errorf("Docker table row %q: want one `service`", strings.Join(r, " | ")))
			continue
		}
		s := tableService{name: names[0], built: strings.Contains(r[col["image"]], "built from `Dockerfile`")}
		if img := codes(r[col["image"]]); len(img) > 0 {
			s.image = img[0]
		}
		for _, p := range codes(r[col["ports"]]) {
			s.ports = append(s.ports, normPort(p))
		}
		s.profiles = codes(r[col["profile"]])
		for _, m := range codes(r[col["config"]]) {
			s.mounts = append(s.mounts, normMount(m))
		}
		if _, dup := out[s.name]; dup {
			errs = append(errs, fmt.Errorf("Docker table lists %s twice", s.name))
		}
		out[s.name] = s
	}
	return out, errors.Join(errs...)
}
