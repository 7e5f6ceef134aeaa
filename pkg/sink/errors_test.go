package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestClassify(t *testing.T) {
	ex := func(code int32) error {
		return fmt.Errorf("sink: orders t[0] 0..9: insert: %w", &clickhouse.Exception{Code: code, Message: "x"})
	}
	exm := func(code int32, msg string) error {
		return fmt.Errorf("sink: orders t[0] 0..9: insert: %w", &clickhouse.Exception{Code: code, Name: "DB::Exception", Message: msg})
	}
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"connection refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, Transient},
		{"connection reset", fmt.Errorf("insert: %w", syscall.ECONNRESET), Transient},
		{"EOF mid-insert", fmt.Errorf("insert: %w", io.EOF), Transient},
		{"insert timeout", fmt.Errorf("insert: %w", context.DeadlineExceeded), Transient},
		{"TOO_MANY_PARTS", ex(252), TooManyParts},
		// 252 twice over: the table is busy merging (wait), or the batch
		// spans too many PARTITION BY values (it fails every time whole).
		{"252 too many parts: merges are slower than inserts (18.16, seen on the test server)",
			exm(252, "Too many parts (5). Merges are processing significantly slower than inserts.."), TooManyParts},
		{"252 too many parts in total (current releases)",
			exm(252, "Too many parts (3001 with average size of 1.00 MiB) in table 'db.orders'. Merges are processing significantly slower than inserts"), TooManyParts},
		{"252 too many parts in a view's table",
			exm(252, "Too many parts (300). Merges are processing significantly slower than inserts: while pushing to view db.kpi_mv"), TooManyParts},
		{"252 too many partitions for one INSERT block",
			exm(252, "Too many partitions for single INSERT block (more than 100). The limit is controlled by 'max_partitions_per_insert_block' setting. Large number of partitions is a common misconception. It will lead to severe negative performance impact, including slow server startup, slow INSERT queries and slow SELECT queries. Recommended total number of partitions for a table is under 1000..10000. Please note, that partitioning is not intended to speed up SELECT queries (ORDER BY key is sufficient to make range queries fast). Partitions are intended for data manipulation (DROP PARTITION, etc)."), Split},
		{"252 naming only the setting", exm(252, "Too many partitions (more than 2), see max_partitions_per_insert_block"), Split},
		{"the partition text under another code is not a split", exm(241, "Too many partitions for single INSERT block"), Memory},
		{"252 inside a view's target table, split like the table's own",
			exm(252, "Too many partitions for single INSERT block (more than 2): while pushing to view db.kpi_mv"), Split},
		{"throwIf in a table expression", exm(395, "Value passed to 'throwIf' function is non zero"), BadData},
		{"throwIf in a materialized view", exm(395, "Value passed to 'throwIf' function is non zero: while pushing to view db.mv"), BadData},
		{"a view short of memory is short of memory", exm(241, "Memory limit (for query) exceeded: while pushing to view db.mv"), Memory},
		{"MEMORY_LIMIT_EXCEEDED", ex(241), Memory},
		{"MEMORY_LIMIT_EXCEEDED (18.16, seen on the test server)",
			exm(241, "Memory limit (for query) exceeded: would use 33.04 MiB (attempt to allocate chunk of 16777216 bytes), maximum: 28.61 MiB"), Memory},
		{"a network error is no pressure", fmt.Errorf("insert: %w", syscall.EPIPE), Transient},
		{"TIMEOUT_EXCEEDED", ex(159), Transient},
		{"table dropped", ex(60), Transient},
		{"read-only replica", ex(242), Transient},
		{"an exception code nobody listed", ex(12345), Transient},
		{"TYPE_MISMATCH", ex(53), BadData},
		{"CANNOT_PARSE_DATETIME", ex(41), BadData},
		{"DECIMAL_OVERFLOW", ex(407), BadData},
		{"VIOLATED_CONSTRAINT", ex(469), BadData},
		{"TOO_LARGE_STRING_SIZE", ex(131), BadData},
		{"driver refused a value", fmt.Errorf("sink: orders column x: %w: %w", errAppend, errors.New("converting")), BadData},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// The documented tables do not overlap.
	for code, name := range badDataCodes {
		if _, both := transientCodes[code]; both {
			t.Errorf("code %d (%s) is listed as both bad data and transient", code, name)
		}
		if _, both := pressureCodes[code]; both {
			t.Errorf("code %d (%s) is listed as both bad data and pressure", code, name)
		}
	}
	for code := range pressureCodes {
		if _, both := transientCodes[code]; both {
			t.Errorf("code %d is listed as both pressure and transient", code)
		}
	}
	for code := range transientCodes {
		if Classify(ex(code)) != Transient {
			t.Errorf("transient code %d classified as bad data", code)
		}
	}
}

func TestView(t *testing.T) {
	exm := func(code int32, msg string) error {
		return fmt.Errorf("sink: orders t[0] 0..9: insert x: %w", &clickhouse.Exception{Code: code, Message: msg})
	}
	cases := []struct {
		name string
		err  error
		want string
	}{
		// What 18.16 sends (seen on the test server).
		{"18.16", exm(395, "Value passed to 'throwIf' function is non zero: while pushing to view mvt.mv"), "mvt.mv"},
		{"trailing period", exm(395, "Value passed to 'throwIf' function is non zero: while pushing to view mvt.mv."), "mvt.mv"},
		{"current releases add the uuid", exm(395, "Value passed to 'throwIf' function is non zero: while executing 'FUNCTION throwIf(...)': while pushing to view db.mv (8c7b2d3e-0b1a-4c55-9f2c-0e1f2a3b4c5d)"), "db.mv"},
		{"nested views: the one that failed first", exm(53, "Type mismatch: while pushing to view db.inner: while pushing to view db.outer"), "db.inner"},
		{"not from a view", exm(53, "Type mismatch in column total"), ""},
		{"not an exception", errors.New("read: connection reset by peer: while pushing to view db.mv"), ""},
		{"nil", nil, ""},
	}
	for _, c := range cases {
		if got := View(c.err); got != c.want {
			t.Errorf("%s: View = %q, want %q", c.name, got, c.want)
		}
	}
}
