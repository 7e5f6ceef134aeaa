package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"
)

// confluentHeaderLen is the Confluent wire format's header: magic byte 0
// and the 4-byte big-endian schema id.
const confluentHeaderLen = 5

// confluentValueCap is the buffer each framed value starts with: an order
// of a few items fits, so goavro's append does not grow it.
const confluentValueCap = 320

// SchemaIDs are the registry's ids of the three event schemas, as
// registered by RegisterEventSchemas.
type SchemaIDs struct {
	Order, Payment, Shipment int32
}

// ConfluentEncoder is the EventEncoder of format avro-confluent: each value
// is magic byte 0, the schema id of its kind (big-endian), then the same
// Avro body *Codecs writes. It is immutable and safe for concurrent use.
type ConfluentEncoder struct {
	codecs *Codecs
	ids    SchemaIDs
}

// NewConfluentEncoder returns the encoder that frames codecs' Avro with
// ids, which must be the ids the registry holds the codecs' schemas under
// (RegisterEventSchemas returns them).
func NewConfluentEncoder(codecs *Codecs, ids SchemaIDs) *ConfluentEncoder {
	return &ConfluentEncoder{codecs: codecs, ids: ids}
}

// IDs returns the schema ids the encoder writes.
func (e *ConfluentEncoder) IDs() SchemaIDs { return e.ids }

// EncodeOrder returns the orders-topic key and the framed value.
func (e *ConfluentEncoder) EncodeOrder(o Order) (key, value []byte, err error) {
	return e.codecs.appendOrder(confluentHeader(e.ids.Order), o)
}

// EncodePayment returns the payments-topic key and the framed value.
func (e *ConfluentEncoder) EncodePayment(p Payment) (key, value []byte, err error) {
	return e.codecs.appendPayment(confluentHeader(e.ids.Payment), p)
}

// EncodeShipment returns the shipments-topic key and the framed value.
func (e *ConfluentEncoder) EncodeShipment(s Shipment) (key, value []byte, err error) {
	return e.codecs.appendShipment(confluentHeader(e.ids.Shipment), s)
}

// confluentHeader returns a new buffer holding the header for id, with
// room for the body.
func confluentHeader(id int32) []byte {
	b := make([]byte, confluentHeaderLen, confluentValueCap)
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	return b
}

// Registrar registers an Avro schema under a subject of a schema registry
// and returns the schema's id; registering a schema the subject already
// holds returns its existing id. *RegistryClient is one.
type Registrar interface {
	Register(ctx context.Context, subject, schema string) (int32, error)
}

// ValueSubject is the subject of a topic's value schemas under the
// registry's default TopicNameStrategy, "<topic>-value".
func ValueSubject(topic string) string { return topic + "-value" }

// RegisterEventSchemas registers the order, payment and shipment schemas
// of c (the .avsc texts as loaded) under the value subjects of topics
// (empty names take the defaults) and returns their ids. It stops at the
// first error, which names the subject.
func (c *Codecs) RegisterEventSchemas(ctx context.Context, r Registrar, topics Topics) (SchemaIDs, error) {
	topics = topics.WithDefaults()
	var ids SchemaIDs
	for _, s := range []struct {
		topic  string
		schema string
		dst    *int32
	}{
		{topics.Orders, c.order.Schema(), &ids.Order},
		{topics.Payments, c.payment.Schema(), &ids.Payment},
		{topics.Shipments, c.shipment.Schema(), &ids.Shipment},
	} {
		subject := ValueSubject(s.topic)
		id, err := r.Register(ctx, subject, s.schema)
		if err != nil {
			return SchemaIDs{}, fmt.Errorf("gen: register subject %s: %w", subject, err)
		}
		*s.dst = id
	}
	return ids, nil
}

// RegistryClient registers schemas with a Confluent-compatible schema
// registry through franz-go's schema registry client (github.com/twmb/
// franz-go/pkg/sr, as Sluice's pkg/registry): POST
// /subjects/<subject>/versions, the one request sluice-gen needs. It is
// safe for concurrent use.
type RegistryClient struct {
	base string // without user info and trailing slash, for messages
	cl   *sr.Client
}

// RegistryError is a registry's refusal of a registration: its HTTP status
// and, when the body is the registry's error JSON, its error code (e.g.
// 409 incompatible schema, 42201 invalid schema) and message.
type RegistryError struct {
	Status  int
	Code    int
	Message string
}

func (e *RegistryError) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("registry answered %d (error code %d): %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("registry answered %d: %s", e.Status, e.Message)
}

// NewRegistryClient returns a client of the registry at baseURL
// ("http://host:8081"; a path prefix and user:password@ for basic auth are
// allowed). hc carries timeouts and TLS; nil is http.DefaultClient. It
// does not contact the registry; a URL that is not http(s) with a host is
// an error.
func NewRegistryClient(baseURL string, hc *http.Client) (*RegistryClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		// Not the *url.Error itself: it quotes the URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("gen: registry url does not parse: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gen: registry url %q: want http(s)://host[:port][/path]", u.Redacted())
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	opts := []sr.ClientOpt{sr.HTTPClient(hc)}
	if u.User != nil {
		// As basic auth, not in the URL: sr quotes its URL in errors.
		pass, _ := u.User.Password()
		opts = append(opts, sr.BasicAuth(u.User.Username(), pass))
		u.User = nil
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	base := u.String()
	cl, err := sr.NewClient(append(opts, sr.URLs(base))...)
	if err != nil {
		return nil, fmt.Errorf("gen: registry client for %s: %w", base, err)
	}
	return &RegistryClient{base: base, cl: cl}, nil
}

// URL returns the registry's address without its credentials, for
// messages.
func (c *RegistryClient) URL() string { return c.base }

// Register registers schema (Avro) under subject and returns its id. ctx
// bounds the request. A refusal is a *RegistryError; other errors are the
// registry not answering (or answering something that is not a registry's
// answer).
func (c *RegistryClient) Register(ctx context.Context, subject, schema string) (int32, error) {
	id, err := c.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
	var re *sr.ResponseError
	if errors.As(err, &re) {
		msg := re.Message
		if msg == "" {
			msg = snippet(re.Raw)
		}
		return 0, &RegistryError{Status: re.StatusCode, Code: re.ErrorCode, Message: msg}
	}
	if err != nil {
		return 0, fmt.Errorf("POST %s/subjects/%s/versions: %w", c.base, url.PathEscape(subject), err)
	}
	return int32(id), nil
}

// snippet is the start of a body for an error message.
func snippet(b []byte) string {
	const n = 200
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "..."
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}
