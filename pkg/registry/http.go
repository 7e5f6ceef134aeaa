package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// accept lists the media types the Confluent API answers with, newest first.
const accept = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; q=0.9, application/json; q=0.8"

// maxBody bounds what is read of one answer. Large Avro schemas are tens of
// kilobytes; a body past this is not a schema answer.
const maxBody = 16 << 20

// codeSchemaNotFound is the Confluent error code of GET /schemas/ids/{id}
// for an id that does not exist.
const codeSchemaNotFound = 40403

// get asks for one schema and maps the answer to the errors SchemaByID
// documents.
func (c *Client) get(ctx context.Context, id int32) (string, error) {
	if c.urlErr != nil {
		return "", &FetchError{ID: id, Err: c.urlErr}
	}
	status, body, err := c.do(ctx, "/schemas/ids/"+strconv.Itoa(int(id)))
	if err != nil {
		return "", &FetchError{ID: id, Err: err}
	}
	if status != http.StatusOK {
		se := statusError(status, body)
		// Only the registry's own "not found" is about the id. A bare 404
		// comes from a wrong URL or a proxy: treating it as unknown would
		// dead-letter every record of the topic.
		if status == http.StatusNotFound && se.ErrorCode == codeSchemaNotFound {
			return "", &UnknownSchemaError{ID: id, Message: se.Message}
		}
		return "", &FetchError{ID: id, Err: se}
	}
	var answer struct {
		Schema     string            `json:"schema"`
		SchemaType string            `json:"schemaType"`
		References []json.RawMessage `json:"references"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return "", &FetchError{ID: id, Err: fmt.Errorf("malformed answer (not the registry's JSON?): %w", err)}
	}
	if answer.Schema == "" {
		return "", &FetchError{ID: id, Err: fmt.Errorf("malformed answer: no \"schema\" in %s", snippet(body))}
	}
	// Confluent omits schemaType for Avro, the original and default type.
	if answer.SchemaType != "" && !strings.EqualFold(answer.SchemaType, "AVRO") {
		return "", &UnsupportedSchemaError{ID: id, Reason: "schemaType " + strconv.Quote(answer.SchemaType) + ", want AVRO"}
	}
	if len(answer.References) > 0 {
		return "", &UnsupportedSchemaError{ID: id, Reason: "it uses schema references, which are not supported"}
	}
	return answer.Schema, nil
}

// Ping checks that the registry answers at the configured URL (GET
// /subjects), for `sluice check`. ctx bounds it, as does the timeout.
func (c *Client) Ping(ctx context.Context) error {
	if c.urlErr != nil {
		return fmt.Errorf("registry: %w", c.urlErr)
	}
	status, body, err := c.do(ctx, "/subjects")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("registry: GET /subjects: %w", statusError(status, body))
	}
	return nil
}

// do runs one GET below the base URL, bounded by the client's timeout. Any
// userinfo in the URL becomes basic auth (net/http does that, and keeps the
// password out of its error messages).
func (c *Client) do(ctx context.Context, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxBody {
		return 0, nil, fmt.Errorf("answer larger than %d bytes", maxBody)
	}
	return resp.StatusCode, body, nil
}

// statusError reads the registry's JSON error body, if it is one.
func statusError(status int, body []byte) *StatusError {
	se := &StatusError{StatusCode: status}
	var e struct {
		ErrorCode int    `json:"error_code"`
		Message   string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		se.ErrorCode, se.Message = e.ErrorCode, e.Message
	}
	return se
}

// snippet shows the start of a body in an error message.
func snippet(body []byte) string {
	const n = 120
	if len(body) <= n {
		return strconv.Quote(string(body))
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(body[cut]) {
		cut--
	}
	return strconv.Quote(string(body[:cut])) + "..."
}
