// Package srtest is the schema registry of sluice-gen's avro-confluent
// tests: franz-go's srfake (an in-memory Confluent-compatible registry)
// with what those tests check on top — basic auth switched on after the
// start, refused registrations, the registrations counted — through
// srfake's interceptors, and read back through franz-go's sr client.
package srtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Registry is the fake. Safe for concurrent use.
type Registry struct {
	fake *srfake.Registry

	mu     sync.Mutex
	refuse map[string][]byte // subject -> the error JSON a POST gets
	status map[string]int
	user   string // basic auth required when set
	pass   string
	posts  int
}

// New starts a registry that is closed when t ends.
func New(t testing.TB) *Registry {
	r := &Registry{fake: srfake.New(), refuse: map[string][]byte{}, status: map[string]int{}}
	t.Cleanup(r.fake.Close)
	r.fake.Intercept(r.intercept)
	return r
}

// intercept answers what srfake does not: requests without the required
// credentials, and registrations under a refused subject; it counts the
// registrations.
func (r *Registry) intercept(w http.ResponseWriter, req *http.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.user != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
			answer(w, http.StatusUnauthorized, []byte(`{"error_code":401,"message":"Unauthorized"}`))
			return true
		}
	}
	subject, ok := strings.CutPrefix(req.URL.Path, "/subjects/")
	if subject, ok = strings.CutSuffix(subject, "/versions"); !ok || req.Method != http.MethodPost {
		return false
	}
	r.posts++
	if body, refused := r.refuse[subject]; refused {
		answer(w, r.status[subject], body)
		return true
	}
	return false
}

func answer(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// URL is the registry's base URL.
func (r *Registry) URL() string { return r.fake.URL() }

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
	r.refuse[subject], r.status[subject] = body, status
}

// Posts is the number of registration requests answered so far.
func (r *Registry) Posts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts
}

// client is an sr client of the fake, with its credentials.
func (r *Registry) client() (*sr.Client, error) {
	opts := []sr.ClientOpt{sr.URLs(r.fake.URL())}
	r.mu.Lock()
	if r.user != "" {
		opts = append(opts, sr.BasicAuth(r.user, r.pass))
	}
	r.mu.Unlock()
	return sr.NewClient(opts...)
}

// Subjects maps each subject to the ids registered under it.
func (r *Registry) Subjects() map[string][]int32 {
	out := map[string][]int32{}
	cl, err := r.client()
	if err != nil {
		return out
	}
	ctx := context.Background()
	subjects, err := cl.Subjects(ctx)
	if err != nil {
		return out
	}
	for _, s := range subjects {
		schemas, err := cl.Schemas(ctx, s)
		if err != nil {
			continue
		}
		for _, ss := range schemas {
			out[s] = append(out[s], int32(ss.ID))
		}
	}
	return out
}

// SchemaByID asks the registry over HTTP for the schema registered under
// id, as a consumer does; it implements pkg/decode's SchemaFetcher.
func (r *Registry) SchemaByID(ctx context.Context, id int32) (string, error) {
	cl, err := r.client()
	if err != nil {
		return "", fmt.Errorf("srtest: %w", err)
	}
	s, err := cl.SchemaByID(ctx, int(id))
	if err != nil {
		return "", fmt.Errorf("srtest: get schema %d: %w", id, err)
	}
	return s.Schema, nil
}
