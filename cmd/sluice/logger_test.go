package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sluice-etl/sluice/pkg/config"
)

// Every ERROR of the process's logger carries an error_type, also one
// whose call gives only its err (franz-go's, through kslog).
func TestNewLoggerTypesErrors(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := newLogger(config.Log{Level: "info", Format: format}, &buf)
		log.With("stage", "kafka").Error("unable to join group", "err", context.DeadlineExceeded)
		log.Warn("a warning", "err", context.DeadlineExceeded)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines: %q", format, len(lines), buf.String())
		}
		want := `error_type=timeout`
		if format == "json" {
			want = `"error_type":"timeout"`
		}
		if !strings.Contains(lines[0], want) || !strings.Contains(lines[0], "stage") {
			t.Errorf("%s: ERROR %q lacks %s", format, lines[0], want)
		}
		if strings.Contains(lines[1], "error_type") {
			t.Errorf("%s: WARN %q got an error_type", format, lines[1])
		}
	}
}
