package itest

import (
	"regexp"
	"strings"
)

// errorLine is an ERROR record of slog's text handler, as `sluice run`
// writes its log.
var errorLine = regexp.MustCompile(`(^|\s)level=ERROR\s`)

// UnlabelledErrors returns the ERROR records of a text log that lack a
// stage or an error_type attribute, and how many ERROR records it has:
// the README ("Error types") promises both on every error log, so a
// dashboard can group errors by where and by kind.
func UnlabelledErrors(log string) (bad []string, errors int) {
	for _, l := range strings.Split(log, "\n") {
		if !errorLine.MatchString(l) {
			continue
		}
		errors++
		if !hasAttr(l, "stage") || !hasAttr(l, "error_type") {
			bad = append(bad, l)
		}
	}
	return bad, errors
}

// hasAttr says whether text-handler line l has attribute key (at the top
// level or inside a group, as key= or group.key=).
func hasAttr(l, key string) bool {
	return strings.Contains(l, " "+key+"=") || strings.Contains(l, "."+key+"=")
}
