package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"
)

// maxBody bounds what is read of one answer. Large Avro schemas are tens of
// kilobytes; a body past this is not a schema answer, and sr reads bodies
// whole, so the bound sits in the transport.
const maxBody = 16 << 20

// newSR checks baseURL and builds the sr.Client every request goes
// through. Credentials in the URL become basic auth and leave the URL: sr
// quotes the request URL in its errors and logs.
func newSR(baseURL string, s settings) (*sr.Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		// url.Parse's message repeats the URL, password included.
		return nil, errors.New("the URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http:// or https:// URL with a host", u.Redacted())
	}
	if s.basic && s.token != "" {
		return nil, errors.New("both basic auth and a bearer token are set")
	}
	if u.User != nil {
		if s.basic || s.token != "" {
			return nil, errors.New("credentials are both in the URL and set apart")
		}
		pass, _ := u.User.Password()
		s.user, s.password, s.basic = u.User.Username(), pass, true
		u.User = nil
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.tls != nil {
		tr.TLSClientConfig = s.tls.Clone()
	}
	opts := []sr.ClientOpt{
		sr.URLs(u.String()),
		// No client timeout: each request carries its own deadline
		// (Client.timeout), which also ends a body that trickles in.
		sr.HTTPClient(&http.Client{Transport: limitBody{tr}}),
		sr.UserAgent("sluice"),
	}
	if s.basic {
		opts = append(opts, sr.BasicAuth(s.user, s.password))
	}
	if s.token != "" {
		opts = append(opts, sr.BearerToken(s.token))
	}
	if s.log != nil {
		log := s.log
		opts = append(opts, sr.LogLevel(sr.LogLevelInfo), sr.LogFn(func(level int8, msg string, kv ...any) {
			// sr logs each request at info: routine here, so debug.
			l := slog.LevelDebug
			switch level {
			case sr.LogLevelError:
				l = slog.LevelError
			case sr.LogLevelWarn:
				l = slog.LevelWarn
			}
			log.Log(context.Background(), l, msg, kv...)
		}))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return cl, nil
}

// get asks for one schema and maps the answer to the errors SchemaByID
// documents.
func (c *Client) get(ctx context.Context, id int32) (string, error) {
	if c.initErr != nil {
		return "", &FetchError{ID: id, Err: c.initErr}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// The body is read raw rather than into sr.Schema: sr's SchemaType
	// knows three types and fails the whole answer on any other (Apicurio
	// serves more), which would read as "registry unavailable" and hold
	// the pipeline, when it is an id Sluice cannot use.
	var body []byte
	if err := c.sr.Do(ctx, http.MethodGet, "/schemas/ids/"+strconv.Itoa(int(id)), nil, &body); err != nil {
		var re *sr.ResponseError
		// Only the registry's own "not found" is about the id. A bare 404
		// comes from a wrong URL or a proxy: treating it as unknown would
		// dead-letter every record of the topic.
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && re.ErrorCode == sr.ErrSchemaNotFound.Code {
			return "", &UnknownSchemaError{ID: id, Message: re.Message}
		}
		return "", &FetchError{ID: id, Err: err}
	}
	var answer struct {
		Schema     string               `json:"schema"`
		SchemaType string               `json:"schemaType"`
		References []sr.SchemaReference `json:"references"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return "", &FetchError{ID: id, Err: fmt.Errorf("malformed answer (not the registry's JSON?): %w", err)}
	}
	if answer.Schema == "" {
		return "", &FetchError{ID: id, Err: fmt.Errorf("malformed answer: no \"schema\" in %s", snippet(body))}
	}
	// Confluent omits schemaType for Avro, the original and default type.
	if answer.SchemaType != "" && !strings.EqualFold(answer.SchemaType, sr.TypeAvro.String()) {
		return "", &UnsupportedSchemaError{ID: id, Reason: "schemaType " + strconv.Quote(answer.SchemaType) + ", want AVRO"}
	}
	if len(answer.References) > 0 {
		return "", &UnsupportedSchemaError{ID: id, Reason: "it uses schema references, which are not supported"}
	}
	return answer.Schema, nil
}

// Ping checks that the registry answers at the configured URL with the
// configured credentials (GET /subjects), for start-up and `sluice check`.
// ctx bounds it, as does the timeout. A registry's refusal (401, 403, a
// wrong path's 404) is an *sr.ResponseError in the chain.
func (c *Client) Ping(ctx context.Context) error {
	if c.initErr != nil {
		return fmt.Errorf("registry: %w", c.initErr)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.sr.Subjects(ctx); err != nil {
		return &requestError{what: "registry: GET /subjects", err: err}
	}
	return nil
}

// limitBody fails an answer past maxBody instead of reading it whole.
type limitBody struct{ rt http.RoundTripper }

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxBody}
	return resp, nil
}

var errTooLarge = fmt.Errorf("answer larger than %d bytes", maxBody)

type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the limit tells "too large" from "exactly"
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

// describe words an error of the exchange for a message. sr's own words
// repeat the request URL twice ("unable to GET "u": Get "u": dial ..."),
// and its *sr.ResponseError says neither the status nor the code.
func describe(err error) string {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		s := "HTTP " + strconv.Itoa(re.StatusCode) + " " + http.StatusText(re.StatusCode)
		if re.ErrorCode != 0 {
			s += ", error code " + strconv.Itoa(re.ErrorCode)
		}
		switch {
		case re.Message != "":
			s += ": " + re.Message
		case len(re.Raw) > 0:
			s += ": " + snippet(re.Raw)
		}
		return s
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// snippet shows the start of a body in an error message.
func snippet(body []byte) string {
	const n = 120
	if len(body) <= n {
		return strconv.Quote(string(body))
	}
	cut := n
	for cut > 0 && body[cut]&0xC0 == 0x80 { // not in the middle of a UTF-8 rune
		cut--
	}
	return strconv.Quote(string(body[:cut])) + "..."
}

// StatusCode is the HTTP status of the registry's answer in err's chain, or
// 0 when err is not an answer (the request did not complete).
func StatusCode(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
