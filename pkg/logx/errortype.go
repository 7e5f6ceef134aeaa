package logx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/twmb/franz-go/pkg/kerr"
)

// The error_type of an error log (and the error_type label of the metrics
// that count failures): a small fixed set, so that logs and metrics can be
// grouped by it and a dashboard can list every value. ErrorType never
// returns anything else. The README's "Error types" table says what each
// one means; keep the two in step.
const (
	TypeCanceled       = "canceled"        // the operation's context was canceled (shutdown, revoke)
	TypeTimeout        = "timeout"         // a deadline passed: a context deadline, a dial or read timeout
	TypeNetwork        = "network"         // refused, reset or cut connections, names that do not resolve
	TypeTLS            = "tls"             // a TLS handshake or certificate check failed
	TypeAuth           = "auth"            // a login or an authorization was refused (SASL, ACLs, ClickHouse users)
	TypeKafka          = "kafka"           // any other error code a Kafka broker answered with
	TypeClickHouse     = "clickhouse"      // any other exception ClickHouse answered with
	TypeDataLoss       = "data_loss"       // records are gone from Kafka before they were read
	TypeFenced         = "fenced"          // the consumer group refused this member: another may own the partition
	TypeStaleReference = "stale_reference" // the reference data could not be confirmed current
	TypeBadData        = "bad_data"        // the data itself is at fault (a record, a value)
	TypeConfig         = "config"          // the configuration is wrong
	TypeInternal       = "internal"        // an invariant of Sluice's own broke: a bug
	TypeOther          = "other"           // none of the above
)

// ErrorTypes lists every value ErrorType returns, in the order above.
var ErrorTypes = []string{
	TypeCanceled, TypeTimeout, TypeNetwork, TypeTLS, TypeAuth, TypeKafka, TypeClickHouse,
	TypeDataLoss, TypeFenced, TypeStaleReference, TypeBadData, TypeConfig, TypeInternal, TypeOther,
}

func known(t string) bool {
	for _, k := range ErrorTypes {
		if k == t {
			return true
		}
	}
	return false
}

// typed is implemented by errors that know their error_type (WithType
// makes one; a package's own error type may implement it too).
type typed interface {
	ErrorType() string
}

// WithType returns err marked with error type t (one of the Type*
// constants), for a package that knows better than the error's own chain
// what went wrong, e.g. a sentinel: var ErrNotCurrent =
// logx.WithType(errors.New("..."), logx.TypeStaleReference). The result
// has err's message and wraps it (errors.Is and As see err). A t outside
// the set is ignored (ErrorType goes on down the chain). WithType(nil, t)
// is nil.
func WithType(err error, t string) error {
	if err == nil {
		return nil
	}
	return &typedError{err: err, t: t}
}

type typedError struct {
	err error
	t   string
}

func (e *typedError) Error() string     { return e.err.Error() }
func (e *typedError) Unwrap() error     { return e.err }
func (e *typedError) ErrorType() string { return e.t }

// ErrorType classifies err into one of ErrorTypes, by its chain:
//
//   - the outermost error that says its own type (WithType, or a type with
//     an ErrorType() string method) and names one of the set;
//   - context.Canceled: canceled;
//   - a Kafka error code: auth for the SASL and authorization codes, else
//     kafka;
//   - a ClickHouse exception: auth for unknown users, wrong passwords and
//     refused access, else clickhouse;
//   - a TLS alert or certificate error: tls;
//   - a deadline (context, socket, net.Error's Timeout): timeout;
//   - any other net.Error, a refused or reset connection, an EOF: network;
//   - anything else (also nil): other.
//
// Safe for concurrent use; it allocates nothing for the common cases.
func ErrorType(err error) string {
	if err == nil {
		return TypeOther
	}
	// errors.As stops at the first typed error; one naming a type outside
	// the set must not hide a known one further down, so walk.
	for e := err; e != nil; {
		var t typed
		if !errors.As(e, &t) {
			break
		}
		if k := t.ErrorType(); known(k) {
			return k
		}
		u, ok := t.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	if errors.Is(err, context.Canceled) {
		return TypeCanceled
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		if kafkaAuthCodes[ke.Code] {
			return TypeAuth
		}
		return TypeKafka
	}
	if ex, ok := errors.AsType[*proto.Exception](err); ok {
		if clickhouseAuthCodes[ex.Code] {
			return TypeAuth
		}
		return TypeClickHouse
	}
	if isTLS(err) {
		return TypeTLS
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return TypeTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok {
		if ne.Timeout() {
			return TypeTimeout
		}
		return TypeNetwork
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return TypeNetwork
	}
	return TypeOther
}

// kafkaAuthCodes are the Kafka error codes of a refused login or a
// missing ACL.
var kafkaAuthCodes = map[int16]bool{
	kerr.TopicAuthorizationFailed.Code:           true,
	kerr.GroupAuthorizationFailed.Code:           true,
	kerr.ClusterAuthorizationFailed.Code:         true,
	kerr.TransactionalIDAuthorizationFailed.Code: true,
	kerr.DelegationTokenAuthorizationFailed.Code: true,
	kerr.UnsupportedSaslMechanism.Code:           true,
	kerr.IllegalSaslState.Code:                   true,
	kerr.SaslAuthenticationFailed.Code:           true,
}

// clickhouseAuthCodes are ClickHouse's UNKNOWN_USER (192), WRONG_PASSWORD
// (193), REQUIRED_PASSWORD (194), ACCESS_DENIED (497) and
// AUTHENTICATION_FAILED (516).
var clickhouseAuthCodes = map[int32]bool{192: true, 193: true, 194: true, 497: true, 516: true}

func isTLS(err error) bool {
	if _, ok := errors.AsType[tls.AlertError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return true
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return true
	}
	return false
}

// Err is the attributes of a failure for an error log: the error under
// "err" and its class under "error_type", as one inlined attribute:
//
//	log.Error("admin server stopped", logx.Err(err))
//
// gives `msg="admin server stopped" err="..." error_type=network`.
func Err(err error) slog.Attr {
	return slog.Attr{Key: "", Value: slog.GroupValue(slog.Any("err", err), slog.String("error_type", ErrorType(err)))}
}

// Type is the error_type attribute of an error log that has no error
// value (a timeout noticed by Sluice itself, a broken invariant); t is one
// of the Type* constants.
func Type(t string) slog.Attr {
	if !known(t) {
		t = TypeOther
	}
	return slog.String("error_type", t)
}

// WithErrorType wraps h so that every record at ERROR or above carries an
// error_type: one given by the logger or the call is kept; otherwise it
// is ErrorType of the record's "err" attribute (other when there is none).
// It is the safety net for logs Sluice does not write itself (franz-go's,
// through kslog) and for call sites not converted to Err yet; the stage
// attribute still comes from the logger each stage is scoped with.
func WithErrorType(h slog.Handler) slog.Handler { return errorTyped{h: h} }

type errorTyped struct {
	h slog.Handler
	// has says an error_type was given through WithAttrs; err is the last
	// error given there under "err".
	has bool
	err error
	// grouped says WithGroup was called: later attributes, and the one
	// this handler adds, land inside the group.
	grouped bool
}

func (h errorTyped) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h errorTyped) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError || h.has {
		return h.h.Handle(ctx, r)
	}
	has, err := false, h.err
	r.Attrs(func(a slog.Attr) bool {
		has, err = scan(a, has, err)
		return !has
	})
	if !has {
		r = r.Clone()
		r.AddAttrs(slog.String("error_type", ErrorType(err)))
	}
	return h.h.Handle(ctx, r)
}

// scan looks at one attribute (and into inlined groups, as Err makes).
func scan(a slog.Attr, has bool, err error) (bool, error) {
	switch {
	case a.Key == "error_type":
		return true, err
	case a.Key == "err":
		if e, ok := a.Value.Resolve().Any().(error); ok {
			err = e
		}
	case a.Key == "" && a.Value.Kind() == slog.KindGroup:
		for _, g := range a.Value.Group() {
			if has, err = scan(g, has, err); has {
				break
			}
		}
	}
	return has, err
}

func (h errorTyped) WithAttrs(as []slog.Attr) slog.Handler {
	n := h
	n.h = h.h.WithAttrs(as)
	if !h.grouped {
		for _, a := range as {
			n.has, n.err = scan(a, n.has, n.err)
		}
	}
	return n
}

func (h errorTyped) WithGroup(name string) slog.Handler {
	n := h
	n.h = h.h.WithGroup(name)
	if name != "" {
		n.grouped = true
	}
	return n
}
