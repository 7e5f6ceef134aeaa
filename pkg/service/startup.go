package service

// Start-up: reaching Kafka, ClickHouse and the schema registry.
//
// Three outcomes, decided per attempt by Transient:
//
//   - The service does not answer yet (connection refused or reset, a dial
//     or read timeout, no seed broker answered, a host name that does not
//     resolve yet, a retriable Kafka error, ClickHouse too busy): one WARN
//     with the attempt count, a capped exponential backoff with jitter, and
//     another attempt, until the process's startup_timeout is spent. Then
//     start-up fails with an *UnreachableError: exit 1, a runtime error
//     naming the service and its address, not a config error.
//   - The service answered and the answer says the config is wrong (unknown
//     database, unknown user or wrong password, something that is not
//     Kafka or not ClickHouse at that port, a missing table or column, topic
//     settings the broker refuses): no retry, config.Errors naming the key,
//     exit 2.
//   - ctx ended (SIGINT/SIGTERM): ErrInterrupted at once, logged at INFO.
//     `sluice run` exits 0 on it; one-shot commands exit 1, because they
//     did not do what they were asked.
//
// A host name that does not resolve is waited for, not reported as a config
// error: a pod often starts before its dependencies' DNS records exist
// (a StatefulSet's per-pod names appear only when the pod is ready). A typo
// costs startup_timeout and ends with exit 1 and "no such host" in the
// message.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/kafkaconn"
	"github.com/sluice-etl/sluice/pkg/registry"
)

// ErrInterrupted: ctx ended while start-up was waiting for a service.
// Callers test it with errors.Is; the error also wraps ctx's cause.
var ErrInterrupted = errors.New("interrupted during start-up")

// UnreachableError: a service did not answer within startup_timeout. It is
// a runtime error (exit 1), not a config one: the same config may work a
// minute later.
type UnreachableError struct {
	Service  string // "ClickHouse", "Kafka", "schema registry"
	Key      string // the config key that names Addr
	Addr     string
	Attempts int
	Timeout  time.Duration // startup_timeout
	Err      error         // the last attempt's error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s at %s (%s) not reachable within startup_timeout %v (%d attempts); last error: %v",
		e.Service, e.Addr, e.Key, e.Timeout, e.Attempts, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Default backoff between attempts: the first retry after about half a
// second, doubling up to 5 s, so a dependency that comes back is noticed
// within seconds while a fleet of restarting members does not hammer it.
// One attempt is bounded by 15 s: a black-holed address (no answer at all)
// still gets several attempts inside the default 60 s startup_timeout.
const (
	backoffBase    = 500 * time.Millisecond
	backoffMax     = 5 * time.Second
	attemptTimeout = 15 * time.Second
)

// Startup is one start-up's time budget: every service reached through it
// shares the deadline startup_timeout after NewStartup. Not safe for
// concurrent use; start-up reaches one service after the other.
type Startup struct {
	log      *slog.Logger
	timeout  time.Duration
	deadline time.Time
	// base, max and attempt are the backoff and the bound of one attempt;
	// tests shorten them.
	base, max, attempt time.Duration
}

// NewStartup starts the budget now.
func NewStartup(timeout time.Duration, log *slog.Logger) *Startup {
	return &Startup{
		log: log.With("stage", "startup"), timeout: timeout, deadline: time.Now().Add(timeout),
		base: backoffBase, max: backoffMax, attempt: attemptTimeout,
	}
}

// target names what an attempt reaches, for the logs and the errors.
type target struct {
	service, key string
	addr         string
}

func clickHouseTarget(c config.ClickHouse) target {
	return target{"ClickHouse", "clickhouse.addr", strings.Join(c.Addr, ",")}
}

func kafkaTarget(brokers []string) target {
	return target{"Kafka", "kafka.brokers", strings.Join(brokers, ",")}
}

func registryTarget(rawURL string) target {
	addr := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		addr = u.Redacted() // never log a password in the URL
	}
	return target{"schema registry", "schema_registry.url", addr}
}

// reach calls attempt until it succeeds, fails for a reason that waiting
// cannot cure (that error is returned as is), ctx ends (ErrInterrupted), or
// the budget is spent (*UnreachableError). Each attempt's context ends at
// the budget's deadline at the latest.
func (s *Startup) reach(ctx context.Context, t target, attempt func(context.Context) error) error {
	for n := 1; ; n++ {
		if ctx.Err() != nil {
			return s.interrupted(ctx, t)
		}
		actx, cancel := context.WithDeadline(ctx, earliest(time.Now().Add(s.attempt), s.deadline))
		err := attempt(actx)
		cancel()
		switch {
		case err == nil:
			if n > 1 {
				s.log.Info("start-up: service reachable", "service", t.service, "addr", t.addr, "attempts", n)
			}
			return nil
		case ctx.Err() != nil:
			return s.interrupted(ctx, t)
		case !Transient(err):
			return err
		}
		remaining := time.Until(s.deadline)
		if remaining <= 0 {
			return &UnreachableError{Service: t.service, Key: t.key, Addr: t.addr, Attempts: n, Timeout: s.timeout, Err: err}
		}
		wait := min(backoff(n, s.base, s.max, rand.Float64()), remaining)
		s.log.Warn("start-up: service unreachable, retrying", "service", t.service, "addr", t.addr,
			"attempt", n, "retry_in", wait.Round(time.Millisecond), "remaining", remaining.Round(100*time.Millisecond), "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return s.interrupted(ctx, t)
		case <-timer.C:
		}
		if !time.Now().Before(s.deadline) {
			return &UnreachableError{Service: t.service, Key: t.key, Addr: t.addr, Attempts: n, Timeout: s.timeout, Err: err}
		}
	}
}

func (s *Startup) interrupted(ctx context.Context, t target) error {
	s.log.Info("interrupted during start-up", "service", t.service, "addr", t.addr)
	return fmt.Errorf("%w (waiting for %s at %s): %w", ErrInterrupted, t.service, t.addr, context.Cause(ctx))
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// backoff is the wait after the attempt-th failed attempt: base doubled per
// attempt, capped at max, of which the upper half is random (jitter in
// [0,1)), so members restarted together spread their retries out.
func backoff(attempt int, base, max time.Duration, jitter float64) time.Duration {
	d := max
	if attempt < 32 {
		if e := base << (attempt - 1); e > 0 && e < max {
			d = e
		}
	}
	return d/2 + time.Duration(jitter*float64(d/2))
}

// transientCodes are the ClickHouse exception codes that say "busy, try
// again", not "this config is wrong". Every other code in answer to a ping
// or a table lookup (UNKNOWN_DATABASE 81, UNKNOWN_USER 192, WRONG_PASSWORD
// 193, ACCESS_DENIED 497, AUTHENTICATION_FAILED 516, UNKNOWN_TABLE 60, ...)
// is the config's.
var transientCodes = map[int32]string{
	159: "TIMEOUT_EXCEEDED",
	202: "TOO_MANY_SIMULTANEOUS_QUERIES",
	203: "NO_FREE_CONNECTION",
	209: "SOCKET_TIMEOUT",
	210: "NETWORK_ERROR",
	241: "MEMORY_LIMIT_EXCEEDED",
}

// Transient says whether an error met while reaching a service at start-up
// may go away by waiting: the service did not answer (yet), or answered
// "busy". An answer that blames the config is not transient, and neither is
// an answer that is not the protocol spoken at that port. The caller checks
// its own ctx first: a cancelled ctx is an interruption, not an outage.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	// The broker closed the connection at once: franz-go's reading is a
	// TLS or SASL mismatch, which waiting does not fix. (It wraps io.EOF,
	// so it is tested before the EOF rule below.)
	var firstEOF *kgo.ErrFirstReadEOF
	if errors.As(err, &firstEOF) {
		return false
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		_, ok := transientCodes[ex.Code]
		return ok
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	if code := registry.StatusCode(err); code != 0 {
		return code >= 500 || code == 408 || code == 429
	}
	// An attempt that ran out of time: nothing answered.
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true // see the file comment
	}
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "dial" || op.Op == "read" || op.Op == "write") {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// passThrough says whether a start-up error is already what the caller
// returns: an interruption, an outage, or config errors naming their keys.
func passThrough(err error) bool {
	var ue *UnreachableError
	var cerrs config.Errors
	return errors.Is(err, ErrInterrupted) || errors.As(err, &ue) || errors.As(err, &cerrs)
}

// clickHouseError turns what reach returned for ClickHouse into the error
// start-up returns: a server's answer that blames the config names its key.
func clickHouseError(c config.ClickHouse, err error) error {
	if passThrough(err) {
		return err
	}
	if e := explainTLS("ClickHouse", strings.Join(c.Addr, ","), "clickhouse.tls", c.TLS, err); e != nil {
		return config.Errors{e}
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case 81: // UNKNOWN_DATABASE
			return config.Errors{{Key: "clickhouse.database", Problem: fmt.Sprintf("database %s does not exist: run `sluice migrate` first", c.Database)}}
		case 192, 497: // UNKNOWN_USER, ACCESS_DENIED
			return config.Errors{{Key: "clickhouse.username", Problem: err.Error()}}
		case 193, 194, 516: // WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED
			return config.Errors{{Key: "clickhouse.password", Problem: fmt.Sprintf("user %s: %v", c.Username, err)}}
		}
	}
	return config.Errors{{Key: "clickhouse.addr", Problem: err.Error()}}
}

// kafkaError is clickHouseError for Kafka: a TLS or SASL mismatch names
// its kafka.tls or kafka.sasl key (security.go); any other answer that is
// not a usable Kafka broker's is kafka.brokers' problem.
func kafkaError(k config.Kafka, err error) error {
	if passThrough(err) {
		return err
	}
	if e := explainKafka(k, err); e != nil {
		return config.Errors{e}
	}
	return config.Errors{{Key: "kafka.brokers", Problem: fmt.Sprintf("%s: %v", strings.Join(k.Brokers, ","), err)}}
}

// OpenClickHouse opens and pings ClickHouse (sink.Open, over TLS when
// clickhouse.tls is enabled), waiting within the budget while it is
// unreachable. Errors: ErrInterrupted, *UnreachableError, or config.Errors
// naming clickhouse.addr, .database, .username, .password or a
// clickhouse.tls key.
func (s *Startup) OpenClickHouse(ctx context.Context, c config.ClickHouse) (driver.Conn, error) {
	var conn driver.Conn
	err := s.reach(ctx, clickHouseTarget(c), func(actx context.Context) error {
		var err error
		conn, err = openClickHouse(actx, c)
		return err
	})
	if err != nil {
		return nil, clickHouseError(c, err)
	}
	return conn, nil
}

// DialKafka creates a client of k's cluster (seed brokers, TLS, SASL:
// kafkaconn.Opts) with opts and waits, within the budget, until a broker
// answers a metadata request. Errors: ErrInterrupted, *UnreachableError,
// or config.Errors naming kafka.brokers or a kafka.tls or kafka.sasl key.
// The caller closes the client.
func (s *Startup) DialKafka(ctx context.Context, k config.Kafka, opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := newKafkaClient(k, opts...)
	if err != nil {
		return nil, err
	}
	if err := s.reach(ctx, kafkaTarget(k.Brokers), cl.Ping); err != nil {
		cl.Close()
		return nil, kafkaError(k, err)
	}
	return cl, nil
}

// newKafkaClient is kafkaconn.NewClient with its errors as config.Errors
// (a bad option is the config's).
func newKafkaClient(k config.Kafka, opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kafkaconn.NewClient(k, opts...)
	if err != nil {
		if passThrough(err) {
			return nil, err
		}
		return nil, config.Errors{{Key: "kafka.brokers", Problem: err.Error()}}
	}
	return cl, nil
}
