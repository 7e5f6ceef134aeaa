// Package registry is the schema cache in front of a Confluent-compatible
// Schema Registry (Confluent, Karapace, Redpanda, Apicurio's ccompat API).
// It sits beside the decode stage: the avro-confluent decoder asks it for
// the writer schema of every schema id it meets in the Confluent wire
// format. The HTTP exchange is franz-go's schema registry client
// (github.com/twmb/franz-go/pkg/sr): its URL handling, basic auth and
// bearer tokens, and its typed *sr.ResponseError; this package adds the
// cache, the single flight per id, and the classification of answers that
// decides whether a record is to blame.
//
// # Contract
//
// SchemaByID returns the schema text registered under an id. Ids are
// immutable, so a schema once fetched is cached for the life of the Client;
// an id the registry does not know is cached only briefly (NegativeTTL,
// 30 s by default), so a schema registered after its first record was seen
// is found soon after. At most one request per id is in flight, however
// many goroutines ask.
//
// Errors fall into two classes, and callers must tell them apart:
//
//   - permanent, about the id: ErrUnknownSchema (the registry answered
//     404 with error code 40403) and ErrUnsupportedSchema (the id holds a
//     schema that is not plain Avro). Retrying cannot help; the records
//     that carry the id are bad.
//   - everything else: the registry could not be asked or gave an answer
//     that is not one (network error, TLS failure, timeout, 5xx, 401/403,
//     a bare 404 from a wrong URL or a proxy, a malformed body). Nothing is
//     cached; the caller should retry later and must not blame the records.
//     A registry's error answer is an *sr.ResponseError in the chain
//     (errors.As), with its HTTP status and Confluent error code.
//
// No error message carries a password or a token: credentials in the URL
// are moved to basic auth before the URL is handed to sr (whose messages
// quote the URL), and the Authorization header is never printed.
//
// # Files
//
//	registry.go  Client, New, options, SchemaByID and its cache
//	sr.go        the sr.Client it wraps: transport, TLS, auth, the GET and
//	             the mapping of answers to errors
//	errors.go    the error sentinels and types
package registry

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// Defaults, used when New is given zero values.
const (
	// DefaultTimeout bounds one request. A registry answers in
	// milliseconds; 5 s rides out a GC pause or a leader election without
	// holding a batch for long.
	DefaultTimeout = 5 * time.Second
	// DefaultNegativeTTL is how long "unknown id" is remembered. Short
	// enough that a producer who registers a schema late is served within
	// a batch retry or two; long enough that a topic full of garbage ids
	// costs one request per id per 30 s, not one per record.
	DefaultNegativeTTL = 30 * time.Second
)

// maxNegative bounds the remembered unknown ids (each a few dozen bytes).
// Past it, expired entries are swept on insert; garbage on a topic cannot
// grow the cache faster than the registry can be asked.
const maxNegative = 10_000

// Client fetches schemas by id. It is safe for concurrent use; build one
// per registry and share it between pipelines.
type Client struct {
	sr *sr.Client
	// initErr: the URL did not parse, or the options contradict each
	// other; every call returns it (config validation is where such a
	// setting should have been refused).
	initErr error
	timeout time.Duration
	negTTL  time.Duration
	now     func() time.Time

	mu       sync.Mutex
	entries  map[int32]*entry
	negative int // entries holding an unknown-id answer
}

// entry is one id's answer, or the flight that will produce it.
type entry struct {
	done chan struct{} // closed once schema/err/expires are set
	// The fields below are written under Client.mu before done is closed.
	schema  string
	err     error
	expires time.Time // zero: forever
	// callerGone: the fetch failed because its caller's context ended, not
	// because of the registry; waiters with a live context fetch again.
	callerGone bool
}

// settings collects the options before New builds the sr.Client.
type settings struct {
	timeout        time.Duration
	negTTL         time.Duration
	now            func() time.Time
	user, password string
	basic          bool
	token          string
	tls            *tls.Config
	log            *slog.Logger
}

// Option adjusts a Client.
type Option func(*settings)

// WithTimeout bounds each request (d <= 0: DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(s *settings) { s.timeout = d }
}

// WithBasicAuth sends HTTP basic auth with every request. It cannot be
// combined with WithBearerToken or with credentials in the URL.
func WithBasicAuth(user, password string) Option {
	return func(s *settings) { s.user, s.password, s.basic = user, password, true }
}

// WithBearerToken sends "Authorization: Bearer token" with every request.
func WithBearerToken(token string) Option {
	return func(s *settings) { s.token = token }
}

// WithTLS sets the TLS configuration of https:// URLs (CA pool, client
// certificate, server name). Without it the system roots are used.
func WithTLS(c *tls.Config) Option {
	return func(s *settings) { s.tls = c }
}

// WithLogger routes sr's own log lines to log (at debug level: they are
// one line per request), scoped with stage=registry by the caller.
func WithLogger(log *slog.Logger) Option {
	return func(s *settings) { s.log = log }
}

// WithNegativeTTL sets how long an unknown id is remembered (d <= 0: not at
// all, every lookup of an unknown id asks the registry).
func WithNegativeTTL(d time.Duration) Option {
	return func(s *settings) { s.negTTL = d }
}

// WithClock replaces time.Now for the negative cache's expiry (tests).
func WithClock(now func() time.Time) Option {
	return func(s *settings) { s.now = now }
}

// New returns a client of the registry at baseURL ("http://host:8081" or
// https://; a path prefix is allowed, and user:password@ for basic auth).
// New does not contact the registry (see Ping). A URL that does not parse,
// or options that contradict each other (two kinds of credentials), make
// every call fail with a non-permanent error.
func New(baseURL string, opts ...Option) *Client {
	s := settings{timeout: DefaultTimeout, negTTL: DefaultNegativeTTL, now: time.Now}
	for _, o := range opts {
		o(&s)
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	c := &Client{
		timeout: s.timeout,
		negTTL:  s.negTTL,
		now:     s.now,
		entries: map[int32]*entry{},
	}
	c.sr, c.initErr = newSR(baseURL, s)
	return c
}

// SchemaByID returns the schema text registered under id, from the cache
// when it can. It is called by the decode stage on the first record of each
// schema id, from any worker goroutine; ctx bounds the wait (the request
// itself is also bounded by the client's timeout). Errors: see the package
// comment; errors.Is(err, ErrUnknownSchema) and
// errors.Is(err, ErrUnsupportedSchema) are the permanent ones.
func (c *Client) SchemaByID(ctx context.Context, id int32) (string, error) {
	if id < 0 {
		// Registries hand out positive ids; no need to ask.
		return "", &UnknownSchemaError{ID: id}
	}
	for {
		e, leader := c.lookup(id)
		if leader {
			c.fetch(ctx, id, e)
		} else {
			select {
			case <-e.done:
			case <-ctx.Done():
				return "", &FetchError{ID: id, Err: ctx.Err()}
			}
		}
		if e.callerGone && ctx.Err() == nil {
			continue // the leader gave up, not the registry: ask again
		}
		return e.schema, e.err
	}
}

// lookup returns id's entry, creating it (and making the caller the one to
// fetch it) when there is none or the one there has expired.
func (c *Client) lookup(id int32) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		if !e.expired(c.now()) {
			return e, false
		}
		c.remove(id, e)
	}
	e := &entry{done: make(chan struct{})}
	c.entries[id] = e
	return e, true
}

// expired says a finished negative entry has outlived its TTL. Called
// under Client.mu, which guards the fields it reads.
func (e *entry) expired(now time.Time) bool {
	select {
	case <-e.done:
		return !e.expires.IsZero() && !now.Before(e.expires)
	default:
		return false // in flight
	}
}

func (c *Client) remove(id int32, e *entry) {
	if c.entries[id] == e {
		delete(c.entries, id)
		if !e.expires.IsZero() {
			c.negative--
		}
	}
}

// fetch asks the registry and publishes the answer in e. A positive or
// unsupported answer stays forever, an unknown id until the negative TTL,
// and a failure not at all: the entry is removed before done is closed,
// so the next lookup asks again.
func (c *Client) fetch(ctx context.Context, id int32, e *entry) {
	schema, err := c.get(ctx, id)

	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		close(e.done)
	}()
	e.schema, e.err = schema, err
	switch {
	case err == nil, IsPermanent(err) && !isUnknown(err):
		// cached forever: ids are immutable
	case isUnknown(err) && c.negTTL > 0:
		now := c.now()
		e.expires = now.Add(c.negTTL)
		c.negative++
		if c.negative > maxNegative {
			c.sweep(now)
		}
	default:
		e.callerGone = ctx.Err() != nil
		c.remove(id, e)
	}
}

// sweep drops expired negative entries; called under mu.
func (c *Client) sweep(now time.Time) {
	for id, e := range c.entries {
		if e.expired(now) {
			c.remove(id, e)
		}
	}
}
