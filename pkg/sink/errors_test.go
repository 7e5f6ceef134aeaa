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
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"connection refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, Transient},
		{"connection reset", fmt.Errorf("insert: %w", syscall.ECONNRESET), Transient},
		{"EOF mid-insert", fmt.Errorf("insert: %w", io.EOF), Transient},
		{"insert timeout", fmt.Errorf("insert: %w", context.DeadlineExceeded), Transient},
		{"TOO_MANY_PARTS", ex(252), Transient},
		{"MEMORY_LIMIT_EXCEEDED", ex(241), Transient},
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
	}
	for code := range transientCodes {
		if Classify(ex(code)) != Transient {
			t.Errorf("transient code %d classified as bad data", code)
		}
	}
}
