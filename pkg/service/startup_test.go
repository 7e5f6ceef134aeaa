package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-etl/sluice/internal/itest"
	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/registry"
)

// closedAddr is a loopback address nothing listens on (a port just freed).
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// realErrors are the errors the network really produces here, so the table
// below does not only test errors built by hand.
func realErrors(t *testing.T) (refused, dnsMiss error) {
	t.Helper()
	_, refused = net.DialTimeout("tcp", closedAddr(t), time.Second)
	if refused == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	_, dnsMiss = net.DialTimeout("tcp", "no-such-host.invalid:9000", time.Second)
	if dnsMiss == nil {
		t.Fatal("dial to an .invalid host succeeded")
	}
	return refused, dnsMiss
}

func TestTransient(t *testing.T) {
	refused, dnsMiss := realErrors(t)
	wrap := func(e error) error { return fmt.Errorf("sink: ping clickhouse 127.0.0.1:9000: %w", e) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", refused, true},
		{"connection refused, wrapped", wrap(refused), true},
		{"franz-go dial error", fmt.Errorf("unable to dial: %w", refused), true},
		{"host does not resolve (yet)", dnsMiss, true},
		{"attempt timed out", wrap(context.DeadlineExceeded), true},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{"connection reset", wrap(syscall.ECONNRESET), true},
		{"closed mid-answer", wrap(io.ErrUnexpectedEOF), true},
		{"closed before answering", wrap(io.EOF), true},
		{"ctx cancelled (not an outage)", context.Canceled, false},
		{"franz-go first-read EOF (TLS/SASL)", &kgo.ErrFirstReadEOF{}, false},
		{"not Kafka at that port", errors.New("invalid large response size 1213486160 > limit 104857600; is your broker port correct?"), false},
		{"not ClickHouse at that port", wrap(errors.New("[handshake] unexpected packet [72] from server")), false},
		{"ClickHouse UNKNOWN_DATABASE", wrap(&clickhouse.Exception{Code: 81, Message: "Database nodb doesn't exist"}), false},
		{"ClickHouse UNKNOWN_USER", wrap(&clickhouse.Exception{Code: 192}), false},
		{"ClickHouse WRONG_PASSWORD", wrap(&clickhouse.Exception{Code: 193}), false},
		{"ClickHouse AUTHENTICATION_FAILED", wrap(&clickhouse.Exception{Code: 516}), false},
		{"ClickHouse UNKNOWN_TABLE", wrap(&clickhouse.Exception{Code: 60}), false},
		{"ClickHouse TOO_MANY_SIMULTANEOUS_QUERIES", wrap(&clickhouse.Exception{Code: 202}), true},
		{"ClickHouse NETWORK_ERROR", wrap(&clickhouse.Exception{Code: 210}), true},
		{"Kafka LEADER_NOT_AVAILABLE", fmt.Errorf("create: %w", kerr.LeaderNotAvailable), true},
		{"Kafka REQUEST_TIMED_OUT", kerr.RequestTimedOut, true},
		{"Kafka INVALID_REPLICATION_FACTOR", kerr.InvalidReplicationFactor, false},
		{"Kafka TOPIC_AUTHORIZATION_FAILED", kerr.TopicAuthorizationFailed, false},
		{"Kafka SASL_AUTHENTICATION_FAILED", kerr.SaslAuthenticationFailed, false},
		{"registry 503", &registry.FetchError{ID: 1, Err: &sr.ResponseError{StatusCode: 503}}, true},
		{"registry 404", &registry.FetchError{ID: 1, Err: &sr.ResponseError{StatusCode: 404}}, false},
		{"registry 401", &registry.FetchError{ID: 1, Err: &sr.ResponseError{StatusCode: 401}}, false},
		{"config errors", config.Errors{{Key: "pipelines[0].table", Problem: "does not exist"}}, false},
	}
	for _, tt := range tests {
		if got := Transient(tt.err); got != tt.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestClickHouseErrorNamesTheKey(t *testing.T) {
	c := config.ClickHouse{Addr: []string{"127.0.0.1:9000"}, Database: "nodb", Username: "bob"}
	wrap := func(e error) error { return fmt.Errorf("sink: ping clickhouse 127.0.0.1:9000: %w", e) }
	for _, tt := range []struct {
		err      error
		key      string
		fragment string
	}{
		{wrap(&clickhouse.Exception{Code: 81}), "clickhouse.database", "database nodb does not exist: run `sluice migrate` first"},
		{wrap(&clickhouse.Exception{Code: 192, Message: "Unknown user bob"}), "clickhouse.username", "Unknown user bob"},
		{wrap(&clickhouse.Exception{Code: 193, Message: "Wrong password for user bob"}), "clickhouse.password", "user bob"},
		{wrap(&clickhouse.Exception{Code: 516}), "clickhouse.password", "user bob"},
		{wrap(errors.New("[handshake] unexpected packet [72] from server")), "clickhouse.addr", "unexpected packet"},
	} {
		var cerrs config.Errors
		if !errors.As(clickHouseError(c, tt.err), &cerrs) || len(cerrs) != 1 || cerrs[0].Key != tt.key || !strings.Contains(cerrs[0].Problem, tt.fragment) {
			t.Errorf("clickHouseError(%v) = %v, want %s: …%s…", tt.err, cerrs, tt.key, tt.fragment)
		}
	}
	// What start-up already decided passes unchanged.
	for _, err := range []error{
		&UnreachableError{Service: "ClickHouse", Err: context.DeadlineExceeded},
		fmt.Errorf("%w: %w", ErrInterrupted, context.Canceled),
		config.Errors{{Key: "pipelines[0].table", Problem: "x"}},
	} {
		if got := clickHouseError(c, err); fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", err, err) {
			t.Errorf("clickHouseError(%v) = %v, want it unchanged", err, got)
		}
		if got := kafkaError(config.Kafka{Brokers: []string{"b:9092"}}, err); fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", err, err) {
			t.Errorf("kafkaError(%v) = %v, want it unchanged", err, got)
		}
	}
	var cerrs config.Errors
	if !errors.As(kafkaError(config.Kafka{Brokers: []string{"b:9092"}}, errors.New("invalid large response size")), &cerrs) || cerrs[0].Key != "kafka.brokers" {
		t.Errorf("kafkaError: %v, want kafka.brokers", cerrs)
	}
}

func TestBackoff(t *testing.T) {
	base, maxWait := 500*time.Millisecond, 5*time.Second
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		n := i + 1
		lo, hi := backoff(n, base, maxWait, 0), backoff(n, base, maxWait, 0.999999)
		if lo != w/2 || hi > w || hi < w*99/100 {
			t.Errorf("attempt %d: backoff in [%v, %v], want [%v, %v)", n, lo, hi, w/2, w)
		}
	}
	for _, n := range []int{31, 32, 63, 64, 1000} { // no shift overflow
		if d := backoff(n, base, maxWait, 0.5); d <= 0 || d > maxWait {
			t.Errorf("attempt %d: backoff %v, want in (0, %v]", n, d, maxWait)
		}
	}
}

func fastStartup(timeout time.Duration) (*Startup, *itest.LogBuffer) {
	var buf itest.LogBuffer
	st := NewStartup(timeout, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	st.base, st.max, st.attempt = 10*time.Millisecond, 40*time.Millisecond, 100*time.Millisecond
	return st, &buf
}

func TestReach(t *testing.T) {
	refused, _ := realErrors(t)
	tgt := target{"ClickHouse", "clickhouse.addr", "127.0.0.1:1"}

	t.Run("transient until it answers", func(t *testing.T) {
		st, logs := fastStartup(5 * time.Second)
		n := 0
		err := st.reach(context.Background(), tgt, func(context.Context) error {
			if n++; n < 4 {
				return refused
			}
			return nil
		})
		if err != nil || n != 4 {
			t.Fatalf("reach = %v after %d attempts, want nil after 4", err, n)
		}
		out := logs.String()
		if c := strings.Count(out, "level=WARN msg=\"start-up: service unreachable, retrying\""); c != 3 {
			t.Errorf("%d WARN lines, want one per failed attempt (3):\n%s", c, out)
		}
		for _, want := range []string{"attempt=1", "attempt=3", "service=ClickHouse", "addr=127.0.0.1:1", "connection refused", "attempts=4"} {
			if !strings.Contains(out, want) {
				t.Errorf("logs lack %q:\n%s", want, out)
			}
		}
	})

	t.Run("config error at once", func(t *testing.T) {
		st, _ := fastStartup(5 * time.Second)
		n := 0
		bad := &clickhouse.Exception{Code: 81}
		err := st.reach(context.Background(), tgt, func(context.Context) error { n++; return bad })
		if !errors.Is(err, bad) || n != 1 {
			t.Fatalf("reach = %v after %d attempts, want the exception after 1", err, n)
		}
	})

	t.Run("unreachable past the budget", func(t *testing.T) {
		const budget = 300 * time.Millisecond
		st, _ := fastStartup(budget)
		start := time.Now()
		n := 0
		err := st.reach(context.Background(), tgt, func(context.Context) error { n++; return refused })
		took := time.Since(start)
		var ue *UnreachableError
		if !errors.As(err, &ue) {
			t.Fatalf("reach = %v, want *UnreachableError", err)
		}
		if ue.Attempts != n || n < 3 || !errors.Is(err, refused) || ue.Service != "ClickHouse" || ue.Addr != "127.0.0.1:1" || ue.Timeout != budget {
			t.Errorf("error %+v after %d attempts", ue, n)
		}
		if took < budget || took > budget+200*time.Millisecond {
			t.Errorf("gave up after %v, want about %v", took, budget)
		}
		if msg := err.Error(); !strings.Contains(msg, "ClickHouse at 127.0.0.1:1 (clickhouse.addr) not reachable within startup_timeout 300ms") {
			t.Errorf("message %q", msg)
		}
	})

	t.Run("no answer at all: each attempt bounded", func(t *testing.T) {
		st, _ := fastStartup(350 * time.Millisecond)
		n := 0
		err := st.reach(context.Background(), tgt, func(ctx context.Context) error {
			n++
			<-ctx.Done() // a black-holed address
			return ctx.Err()
		})
		var ue *UnreachableError
		if !errors.As(err, &ue) || n < 2 {
			t.Fatalf("reach = %v after %d attempts, want *UnreachableError after several", err, n)
		}
	})

	t.Run("interrupted while waiting to retry", func(t *testing.T) {
		st, logs := fastStartup(10 * time.Second)
		st.base, st.max = 10*time.Second, 10*time.Second
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		err := st.reach(ctx, tgt, func(context.Context) error { return refused })
		if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
			t.Fatalf("reach = %v, want ErrInterrupted", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("returned %v after the signal, want at once", took)
		}
		if !strings.Contains(logs.String(), `level=INFO msg="interrupted during start-up"`) {
			t.Errorf("no INFO line:\n%s", logs)
		}
	})

	t.Run("interrupted during an attempt", func(t *testing.T) {
		st, _ := fastStartup(10 * time.Second)
		st.attempt = 10 * time.Second
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		err := st.reach(ctx, tgt, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("reach = %v, want ErrInterrupted", err)
		}
	})
}

// TestNewWaitsForClickHouse runs New against a ClickHouse address nothing
// listens on: past startup_timeout it is an outage, not a config error, and
// a cancelled ctx (the signal) ends it early with ErrInterrupted.
func TestNewWaitsForClickHouse(t *testing.T) {
	schema, err := filepath.Abs("../../schemas/avro/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	ch := closedAddr(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	yaml := fmt.Sprintf("kafka: {brokers: [%s]}\nclickhouse: {addr: [%s]}\nadmin: {listen: \"\"}\nstartup_timeout: 700ms\npipelines:\n  - {name: o, topic: t, schema: %s, table: orders}\n", closedAddr(t), ch, schema)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	start := time.Now()
	_, err = New(context.Background(), cfg, log)
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Service != "ClickHouse" || ue.Addr != ch {
		t.Fatalf("New = %v, want *UnreachableError for ClickHouse at %s", err, ch)
	}
	var cerrs config.Errors
	if errors.As(err, &cerrs) {
		t.Fatalf("New = %v is a config error", err)
	}
	if took := time.Since(start); took < 700*time.Millisecond || took > 3*time.Second {
		t.Errorf("New gave up after %v, want about startup_timeout (700ms)", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := New(ctx, cfg, log); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("New with a cancelled ctx = %v, want ErrInterrupted", err)
	}
}
