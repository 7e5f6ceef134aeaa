package logx

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/twmb/franz-go/pkg/kerr"
)

type ownType struct{ t string }

func (e ownType) Error() string     { return "own " + e.t }
func (e ownType) ErrorType() string { return e.t }

func TestErrorType(t *testing.T) {
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, TypeOther},
		{"plain", errors.New("something"), TypeOther},
		{"canceled", fmt.Errorf("load: %w", context.Canceled), TypeCanceled},
		{"deadline", fmt.Errorf("ping: %w", context.DeadlineExceeded), TypeTimeout},
		{"socket deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), TypeTimeout},
		{"dial refused", fmt.Errorf("sink: ping: %w", dialErr), TypeNetwork},
		{"dns", &net.DNSError{Err: "no such host", Name: "kafka"}, TypeNetwork},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "kafka", IsTimeout: true}, TypeTimeout},
		{"reset", fmt.Errorf("write: %w", syscall.ECONNRESET), TypeNetwork},
		{"eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), TypeNetwork},
		{"kafka", fmt.Errorf("commit: %w", kerr.NotCoordinator), TypeKafka},
		{"kafka acl", fmt.Errorf("fetch: %w", kerr.TopicAuthorizationFailed), TypeAuth},
		{"kafka sasl", kerr.SaslAuthenticationFailed, TypeAuth},
		{"clickhouse", fmt.Errorf("insert: %w", &proto.Exception{Code: 241, Message: "Memory limit exceeded"}), TypeClickHouse},
		{"clickhouse password", &proto.Exception{Code: 516, Message: "Authentication failed"}, TypeAuth},
		{"clickhouse 18.16 password", &proto.Exception{Code: 193, Message: "Wrong password"}, TypeAuth},
		{"unknown CA", fmt.Errorf("tls: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), TypeTLS},
		{"bare unknown CA", x509.UnknownAuthorityError{}, TypeTLS},
		{"wrong name", x509.HostnameError{Host: "kafka"}, TypeTLS},
		{"alert", fmt.Errorf("handshake: %w", tls.AlertError(42)), TypeTLS},
		{"plaintext port", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, TypeTLS},
		{"WithType wins over the chain", WithType(fmt.Errorf("x: %w", context.DeadlineExceeded), TypeStaleReference), TypeStaleReference},
		{"WithType under a wrap", fmt.Errorf("transform: %w", WithType(errors.New("not current"), TypeStaleReference)), TypeStaleReference},
		{"own type", fmt.Errorf("a: %w", ownType{TypeFenced}), TypeFenced},
		{"outside the set is skipped", WithType(fmt.Errorf("b: %w", kerr.NotCoordinator), "made_up"), TypeKafka},
		{"outer outside the set, inner typed", WithType(WithType(errors.New("c"), TypeConfig), "made_up"), TypeConfig},
		{"own type outside the set", ownType{"nope"}, TypeOther},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ErrorType(c.err)
			if got != c.want {
				t.Errorf("ErrorType(%v) = %q, want %q", c.err, got, c.want)
			}
			if !known(got) {
				t.Errorf("ErrorType(%v) = %q, not one of ErrorTypes", c.err, got)
			}
		})
	}
}

func TestWithTypeKeepsTheChain(t *testing.T) {
	base := errors.New("reference data not current")
	err := WithType(base, TypeStaleReference)
	if err.Error() != base.Error() {
		t.Errorf("message %q, want %q", err, base)
	}
	if !errors.Is(fmt.Errorf("x: %w", err), base) || !errors.Is(fmt.Errorf("x: %w", err), err) {
		t.Error("errors.Is does not see through WithType")
	}
	if WithType(nil, TypeOther) != nil {
		t.Error("WithType(nil) is not nil")
	}
}

func TestErrorTypesAreDistinctAndSnakeCase(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range ErrorTypes {
		if seen[k] {
			t.Errorf("%q listed twice", k)
		}
		seen[k] = true
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz_") != "" {
			t.Errorf("%q is not a snake_case label value", k)
		}
	}
}

// logged runs fn with a JSON logger behind WithErrorType and returns the
// records it wrote.
func logged(t *testing.T, fn func(*slog.Logger)) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	fn(slog.New(WithErrorType(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestErrAttr(t *testing.T) {
	recs := logged(t, func(l *slog.Logger) {
		l.With("stage", "admin").Error("admin server stopped", Err(fmt.Errorf("listen: %w", syscall.ECONNRESET)))
	})
	if len(recs) != 1 {
		t.Fatalf("got %d records", len(recs))
	}
	r := recs[0]
	if r["error_type"] != TypeNetwork || r["stage"] != "admin" || !strings.Contains(fmt.Sprint(r["err"]), "listen") {
		t.Errorf("record %v: want err, error_type=network, stage=admin at the top level", r)
	}
}

func TestWithErrorTypeFillsOnlyErrorRecords(t *testing.T) {
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	recs := logged(t, func(l *slog.Logger) {
		l.Warn("warn keeps as it is", "err", refused)
		l.Error("from err", "err", refused)
		l.Error("no err at all")
		l.Error("given by the call", "err", refused, "error_type", TypeInternal)
		l.With("error_type", TypeDataLoss).Error("given by the logger", "err", refused)
		l.With("err", kerr.NotCoordinator).Error("err from the logger")
		l.Error("through Err", Err(context.DeadlineExceeded))
		l.Log(context.Background(), slog.LevelError+4, "above error", "err", tls.AlertError(40))
	})
	want := []struct {
		msg string
		typ any // nil: no error_type
	}{
		{"warn keeps as it is", nil},
		{"from err", TypeNetwork},
		{"no err at all", TypeOther},
		{"given by the call", TypeInternal},
		{"given by the logger", TypeDataLoss},
		{"err from the logger", TypeKafka},
		{"through Err", TypeTimeout},
		{"above error", TypeTLS},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d: %v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r["msg"] != w.msg || r["error_type"] != w.typ {
			t.Errorf("record %d = %v, want msg %q with error_type %v", i, r, w.msg, w.typ)
		}
	}
}

func TestWithErrorTypeAddsNoSecondAttribute(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(WithErrorType(slog.NewTextHandler(&buf, nil)))
	l.Error("x", "err", io.EOF, "error_type", TypeOther)
	l.Error("y", Err(io.EOF))
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if n := strings.Count(line, "error_type="); n != 1 {
			t.Errorf("%d error_type attributes in %q", n, line)
		}
	}
}

func TestType(t *testing.T) {
	if a := Type(TypeTimeout); a.Key != "error_type" || a.Value.String() != TypeTimeout {
		t.Errorf("Type(timeout) = %v", a)
	}
	if a := Type("no such type"); a.Value.String() != TypeOther {
		t.Errorf("Type of an unknown value = %v, want other", a)
	}
}
