// Package srtest is an in-memory Confluent-compatible schema registry for
// tests, served over HTTP by httptest: enough of the REST API for a
// producer to register value schemas and for a consumer to read them back
// by id (POST /subjects/<subject>/versions, GET /schemas/ids/<id>). It
// stands in for a real registry in the tests of sluice-gen's avro-confluent
// format; it does not check compatibility between versions.
package srtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Registry is the fake. Safe for concurrent use.
type Registry struct {
	srv *httptest.Server

	mu       sync.Mutex
	ids      map[string]int32                // schema text -> id
	schemas  map[int32]string                // id -> schema text
	subjects map[string]map[int32]bool       // subject -> ids registered under it
	refuse   map[string]func() (int, string) // subject -> the answer to a POST
	user     string                          // basic auth required when set
	pass     string
	posts    int
}

// New starts a registry that is closed when t ends.
func New(t testing.TB) *Registry {
	r := &Registry{
		ids:      map[string]int32{},
		schemas:  map[int32]string{},
		subjects: map[string]map[int32]bool{},
		refuse:   map[string]func() (int, string){},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the registry's base URL.
func (r *Registry) URL() string { return r.srv.URL }

// RequireBasicAuth makes every request without these credentials fail
// with 401, as a secured registry does.
func (r *Registry) RequireBasicAuth(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.pass = user, pass
}

// Refuse makes registrations under subject answer status with the
// registry's error JSON carrying code and message.
func (r *Registry) Refuse(subject string, status, code int, message string) {
	body, _ := json.Marshal(map[string]any{"error_code": code, "message": message})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refuse[subject] = func() (int, string) { return status, string(body) }
}

// Subjects maps each subject to the ids registered under it.
func (r *Registry) Subjects() map[string][]int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]int32{}
	for s, ids := range r.subjects {
		for id := range ids {
			out[s] = append(out[s], id)
		}
	}
	return out
}

// Posts is the number of registration requests answered so far.
func (r *Registry) Posts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts
}

// SchemaByID asks the registry over HTTP for the schema registered under
// id, as a consumer does; it implements pkg/decode's SchemaFetcher.
func (r *Registry) SchemaByID(ctx context.Context, id int32) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.srv.URL+"/schemas/ids/"+strconv.Itoa(int(id)), nil)
	if err != nil {
		return "", fmt.Errorf("srtest: %w", err)
	}
	r.mu.Lock()
	if r.user != "" {
		req.SetBasicAuth(r.user, r.pass)
	}
	r.mu.Unlock()
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		return "", fmt.Errorf("srtest: get schema %d: %w", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("srtest: get schema %d: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("srtest: get schema %d: status %d: %s", id, resp.StatusCode, b)
	}
	var s struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("srtest: get schema %d: %w", id, err)
	}
	return s.Schema, nil
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.user != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
			answer(w, http.StatusUnauthorized, map[string]any{"error_code": 401, "message": "Unauthorized"})
			return
		}
	}
	path := req.URL.EscapedPath()
	switch {
	case req.Method == http.MethodPost && strings.HasPrefix(path, "/subjects/") && strings.HasSuffix(path, "/versions"):
		r.posts++
		subject, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(path, "/subjects/"), "/versions"))
		if err != nil || subject == "" || strings.Contains(subject, "/") {
			answer(w, http.StatusNotFound, map[string]any{"error_code": 404, "message": "HTTP 404 Not Found"})
			return
		}
		r.register(w, req, subject)
	case req.Method == http.MethodGet && strings.HasPrefix(path, "/schemas/ids/"):
		id, err := strconv.Atoi(strings.TrimPrefix(path, "/schemas/ids/"))
		s, ok := r.schemas[int32(id)]
		if err != nil || !ok {
			answer(w, http.StatusNotFound, map[string]any{"error_code": 40403, "message": "Schema not found"})
			return
		}
		answer(w, http.StatusOK, map[string]any{"schema": s})
	default:
		answer(w, http.StatusNotFound, map[string]any{"error_code": 404, "message": "HTTP 404 Not Found"})
	}
}

// register is called with r.mu held.
func (r *Registry) register(w http.ResponseWriter, req *http.Request, subject string) {
	if refuse, ok := r.refuse[subject]; ok {
		status, body := refuse()
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(status)
		io.WriteString(w, body)
		return
	}
	var body struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil || body.Schema == "" {
		answer(w, http.StatusUnprocessableEntity, map[string]any{"error_code": 42201, "message": "Invalid schema"})
		return
	}
	if body.SchemaType != "" && body.SchemaType != "AVRO" {
		answer(w, http.StatusUnprocessableEntity, map[string]any{"error_code": 42201, "message": "unsupported schemaType " + body.SchemaType})
		return
	}
	if !json.Valid([]byte(body.Schema)) {
		answer(w, http.StatusUnprocessableEntity, map[string]any{"error_code": 42201, "message": "Invalid schema: not JSON"})
		return
	}
	id, ok := r.ids[body.Schema]
	if !ok {
		id = int32(len(r.ids) + 1)
		r.ids[body.Schema] = id
		r.schemas[id] = body.Schema
	}
	if r.subjects[subject] == nil {
		r.subjects[subject] = map[int32]bool{}
	}
	r.subjects[subject][id] = true
	answer(w, http.StatusOK, map[string]any{"id": id})
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
