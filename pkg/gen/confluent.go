package gen

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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
// registry: POST /subjects/<subject>/versions, the one request
// sluice-gen needs (Sluice's own client, pkg/registry, only reads). It is
// safe for concurrent use.
type RegistryClient struct {
	base       *url.URL // without user info and trailing slash
	user, pass string
	basicAuth  bool
	http       *http.Client
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
	c := &RegistryClient{http: hc}
	if u.User != nil {
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		c.basicAuth = true
		u.User = nil
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	c.base = u
	return c, nil
}

// URL returns the registry's address without its credentials, for
// messages.
func (c *RegistryClient) URL() string { return c.base.String() }

// maxRegistryBody bounds what is read of an answer: an id or an error
// message is a few dozen bytes.
const maxRegistryBody = 64 << 10

// Register registers schema (Avro) under subject and returns its id. ctx
// bounds the request. A refusal is a *RegistryError; other errors are the
// registry not answering (or answering something that is not a registry's
// answer).
func (c *RegistryClient) Register(ctx context.Context, subject, schema string) (int32, error) {
	body, err := json.Marshal(struct {
		Schema string `json:"schema"`
	}{schema})
	if err != nil {
		return 0, fmt.Errorf("encode request: %w", err)
	}
	// c.base holds no credentials, so target can go into messages.
	target := c.base.String() + "/subjects/" + url.PathEscape(subject) + "/versions"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if c.basicAuth {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxRegistryBody))
	if err != nil {
		return 0, fmt.Errorf("POST %s: read answer: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, registryError(resp.StatusCode, raw)
	}
	var ok struct {
		ID *int32 `json:"id"`
	}
	if err := json.Unmarshal(raw, &ok); err != nil || ok.ID == nil {
		return 0, fmt.Errorf("POST %s: answer without a schema id: %q", target, snippet(raw))
	}
	return *ok.ID, nil
}

func registryError(status int, raw []byte) error {
	var e struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return &RegistryError{Status: status, Code: e.Code, Message: e.Message}
	}
	return &RegistryError{Status: status, Message: snippet(raw)}
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
