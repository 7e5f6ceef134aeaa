package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/registry"
)

const orderSchema = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`

// fakeRegistry serves GET /schemas/ids/{id} like Confluent's registry and
// counts the requests per id.
type fakeRegistry struct {
	mu      sync.Mutex
	answers map[int32]func(w http.ResponseWriter)
	hits    map[int32]int
	// gate, when set, holds every request until it is closed.
	gate chan struct{}
	srv  *httptest.Server
	// lastAuth is the Authorization header of the last request.
	lastAuth string
}

func newFake(t *testing.T) *fakeRegistry {
	f := &fakeRegistry{answers: map[int32]func(http.ResponseWriter){}, hits: map[int32]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.lastAuth = r.Header.Get("Authorization")
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if r.URL.Path == "/subjects" {
		w.Write([]byte(`["orders-value"]`))
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/schemas/ids/")
	n, err := strconv.ParseInt(rest, 10, 32)
	if !ok || err != nil {
		http.NotFound(w, r) // a bare 404, as from a wrong URL
		return
	}
	id := int32(n)
	f.mu.Lock()
	f.hits[id]++
	answer := f.answers[id]
	f.mu.Unlock()
	if answer == nil {
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error_code":40403,"message":"Schema ` + rest + ` not found"}`))
		return
	}
	answer(w)
}

func (f *fakeRegistry) set(id int32, answer func(w http.ResponseWriter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[id] = answer
}

func (f *fakeRegistry) schema(id int32, schema string) {
	f.set(id, jsonAnswer(http.StatusOK, map[string]any{"schema": schema}))
}

func (f *fakeRegistry) count(id int32) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[id]
}

func jsonAnswer(status int, body any) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}
}

func rawAnswer(status int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
}

// clock is a settable time source for the negative cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestSchemaByIDAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter) // nil: the id is not registered
		want   string
		// check classifies the error; nil means success.
		check func(t *testing.T, err error)
	}{
		{name: "avro schema", answer: jsonAnswer(200, map[string]any{"schema": orderSchema}), want: orderSchema},
		{name: "explicit AVRO schemaType", answer: jsonAnswer(200, map[string]any{"schema": orderSchema, "schemaType": "AVRO"}), want: orderSchema},
		{name: "unknown id (40403)", check: func(t *testing.T, err error) {
			var ue *registry.UnknownSchemaError
			if !errors.Is(err, registry.ErrUnknownSchema) || !errors.As(err, &ue) || ue.ID != 7 {
				t.Fatalf("err = %v, want an *UnknownSchemaError for id 7", err)
			}
			if !registry.IsPermanent(err) || !strings.Contains(err.Error(), "unknown schema id 7") {
				t.Fatalf("err = %q: want permanent, naming the id", err)
			}
		}},
		{name: "protobuf", answer: jsonAnswer(200, map[string]any{"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
			check: permanentUnsupported("PROTOBUF")},
		{name: "references", answer: jsonAnswer(200, map[string]any{"schema": orderSchema,
			"references": []any{map[string]any{"name": "x.Y", "subject": "y", "version": 1}}}),
			check: permanentUnsupported("references")},
		{name: "bare 404 is not unknown", answer: rawAnswer(404, "404 page not found"), check: transient("HTTP 404")},
		{name: "other 404 error code", answer: jsonAnswer(404, map[string]any{"error_code": 40401, "message": "Subject not found"}),
			check: transient("40401")},
		{name: "500", answer: jsonAnswer(500, map[string]any{"error_code": 50001, "message": "backend store down"}),
			check: transient("HTTP 500 Internal Server Error, error code 50001: backend store down")},
		{name: "401", answer: jsonAnswer(401, map[string]any{"error_code": 40101, "message": "Unauthorized"}), check: transient("HTTP 401")},
		{name: "not JSON", answer: rawAnswer(200, "<html>proxy</html>"), check: transient("malformed answer")},
		{name: "no schema", answer: rawAnswer(200, `{"subject":"x"}`), check: transient(`no "schema"`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.answer != nil {
				f.set(7, tt.answer)
			}
			c := registry.New(f.srv.URL, time.Second, nil)
			got, err := c.SchemaByID(context.Background(), 7)
			if tt.check == nil {
				if err != nil || got != tt.want {
					t.Fatalf("SchemaByID = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("SchemaByID = %q, want an error", got)
			}
			tt.check(t, err)
		})
	}
}

func permanentUnsupported(fragment string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, registry.ErrUnsupportedSchema) || !registry.IsPermanent(err) || errors.Is(err, registry.ErrUnknownSchema) {
			t.Fatalf("err = %v, want permanent ErrUnsupportedSchema", err)
		}
		if !strings.Contains(err.Error(), fragment) {
			t.Fatalf("err %q does not contain %q", err, fragment)
		}
	}
}

func transient(fragment string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var fe *registry.FetchError
		if registry.IsPermanent(err) || !errors.As(err, &fe) || fe.ID != 7 {
			t.Fatalf("err = %v (%T), want a non-permanent *FetchError for id 7", err, err)
		}
		if !strings.Contains(err.Error(), fragment) {
			t.Fatalf("err %q does not contain %q", err, fragment)
		}
	}
}

func TestSchemaByIDRegistryDown(t *testing.T) {
	f := newFake(t)
	f.schema(1, orderSchema)
	c := registry.New(f.srv.URL, time.Second, nil)
	f.srv.Close()
	_, err := c.SchemaByID(context.Background(), 1)
	var fe *registry.FetchError
	if err == nil || registry.IsPermanent(err) || !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a non-permanent *FetchError", err)
	}
}

func TestSchemaByIDBadURL(t *testing.T) {
	for _, u := range []string{"localhost:8081", "ftp://host", "http://", "http://a b"} {
		_, err := registry.New(u, time.Second, nil).SchemaByID(context.Background(), 1)
		if err == nil || registry.IsPermanent(err) {
			t.Errorf("New(%q).SchemaByID: err = %v, want a non-permanent error", u, err)
		}
	}
}

func TestSchemaByIDCachesPositiveForever(t *testing.T) {
	f := newFake(t)
	f.schema(1, orderSchema)
	f.schema(2, `{"type":"record","name":"B","fields":[]}`)
	clk := &clock{t: time.Unix(0, 0)}
	c := registry.New(f.srv.URL+"/", time.Second, nil, registry.WithClock(clk.now))
	for i := 0; i < 100; i++ {
		for _, id := range []int32{1, 2} {
			if _, err := c.SchemaByID(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}
		clk.advance(time.Hour)
	}
	if f.count(1) != 1 || f.count(2) != 1 {
		t.Fatalf("requests: id 1 %d, id 2 %d; want 1 each", f.count(1), f.count(2))
	}
}

func TestSchemaByIDNegativeCacheExpires(t *testing.T) {
	f := newFake(t)
	clk := &clock{t: time.Unix(0, 0)}
	c := registry.New(f.srv.URL, time.Second, nil, registry.WithClock(clk.now), registry.WithNegativeTTL(30*time.Second))
	ctx := context.Background()

	if _, err := c.SchemaByID(ctx, 9); !errors.Is(err, registry.ErrUnknownSchema) {
		t.Fatalf("err = %v, want unknown", err)
	}
	f.schema(9, orderSchema) // registered after the first record was seen
	clk.advance(29 * time.Second)
	if _, err := c.SchemaByID(ctx, 9); !errors.Is(err, registry.ErrUnknownSchema) {
		t.Fatalf("within the TTL: err = %v, want the cached unknown", err)
	}
	if n := f.count(9); n != 1 {
		t.Fatalf("within the TTL: %d requests, want 1", n)
	}
	clk.advance(time.Second)
	got, err := c.SchemaByID(ctx, 9)
	if err != nil || got != orderSchema {
		t.Fatalf("after the TTL: %q, %v; want the schema", got, err)
	}
	if n := f.count(9); n != 2 {
		t.Fatalf("after the TTL: %d requests, want 2", n)
	}
}

func TestSchemaByIDNoNegativeCache(t *testing.T) {
	f := newFake(t)
	c := registry.New(f.srv.URL, time.Second, nil, registry.WithNegativeTTL(0))
	for i := 0; i < 3; i++ {
		c.SchemaByID(context.Background(), 9)
	}
	if n := f.count(9); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
}

func TestSchemaByIDFailuresNotCached(t *testing.T) {
	f := newFake(t)
	f.set(3, jsonAnswer(503, map[string]any{"error_code": 50003, "message": "forwarding failed"}))
	c := registry.New(f.srv.URL, time.Second, nil)
	if _, err := c.SchemaByID(context.Background(), 3); err == nil || registry.IsPermanent(err) {
		t.Fatalf("err = %v, want transient", err)
	}
	f.schema(3, orderSchema) // the registry recovers
	if got, err := c.SchemaByID(context.Background(), 3); err != nil || got != orderSchema {
		t.Fatalf("after recovery: %q, %v", got, err)
	}
	if n := f.count(3); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestSchemaByIDSingleFlight(t *testing.T) {
	f := newFake(t)
	f.schema(5, orderSchema)
	f.gate = make(chan struct{})
	c := registry.New(f.srv.URL, 5*time.Second, nil)

	const callers = 64
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := c.SchemaByID(context.Background(), 5); err != nil || got != orderSchema {
				failed.Add(1)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let every caller queue on the flight
	close(f.gate)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d callers failed", failed.Load())
	}
	if n := f.count(5); n != 1 {
		t.Fatalf("%d requests for %d concurrent callers, want 1", n, callers)
	}
}

// A waiter whose context ends stops waiting at once; the flight goes on
// for the others.
func TestSchemaByIDWaiterContext(t *testing.T) {
	f := newFake(t)
	f.schema(5, orderSchema)
	f.gate = make(chan struct{})
	c := registry.New(f.srv.URL, 5*time.Second, nil)

	leader := make(chan error, 1)
	go func() {
		_, err := c.SchemaByID(context.Background(), 5)
		leader <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.SchemaByID(ctx, 5)
	if !errors.Is(err, context.DeadlineExceeded) || registry.IsPermanent(err) {
		t.Fatalf("waiter err = %v, want its own deadline", err)
	}
	close(f.gate)
	if err := <-leader; err != nil {
		t.Fatalf("leader: %v", err)
	}
}

// When the caller doing the fetch gives up, a waiter with a live context
// does not inherit its cancellation: it fetches itself.
func TestSchemaByIDLeaderCancelled(t *testing.T) {
	f := newFake(t)
	f.schema(5, orderSchema)
	f.gate = make(chan struct{})
	c := registry.New(f.srv.URL, 5*time.Second, nil)

	ctx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() {
		_, err := c.SchemaByID(ctx, 5)
		leader <- err
	}()
	time.Sleep(20 * time.Millisecond)
	waiter := make(chan error, 1)
	go func() {
		_, err := c.SchemaByID(context.Background(), 5)
		waiter <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader err = %v, want canceled", err)
	}
	close(f.gate)
	if err := <-waiter; err != nil {
		t.Fatalf("waiter err = %v, want the schema", err)
	}
}

func TestSchemaByIDTimeout(t *testing.T) {
	f := newFake(t)
	f.schema(5, orderSchema)
	f.gate = make(chan struct{})
	defer close(f.gate)
	c := registry.New(f.srv.URL, 50*time.Millisecond, nil)
	start := time.Now()
	_, err := c.SchemaByID(context.Background(), 5)
	if !errors.Is(err, context.DeadlineExceeded) || registry.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v, want about the 50ms timeout", d)
	}
}

func TestSchemaByIDNegativeIDNotAsked(t *testing.T) {
	f := newFake(t)
	c := registry.New(f.srv.URL, time.Second, nil)
	if _, err := c.SchemaByID(context.Background(), -1); !errors.Is(err, registry.ErrUnknownSchema) {
		t.Fatalf("err = %v, want unknown", err)
	}
	if n := f.count(-1); n != 0 {
		t.Fatalf("%d requests, want none", n)
	}
}

// Basic auth comes from the URL's userinfo; the password never shows in
// an error.
func TestBasicAuthFromURL(t *testing.T) {
	f := newFake(t)
	f.schema(1, orderSchema)
	u := strings.Replace(f.srv.URL, "http://", "http://sluice:s3cret@", 1)
	c := registry.New(u, time.Second, nil)
	if _, err := c.SchemaByID(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	auth := f.lastAuth
	f.mu.Unlock()
	if auth != "Basic c2x1aWNlOnMzY3JldA==" {
		t.Fatalf("Authorization = %q", auth)
	}
	f.srv.Close()
	_, err := c.SchemaByID(context.Background(), 2)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v: want an error without the password", err)
	}
}

func TestPing(t *testing.T) {
	f := newFake(t)
	if err := registry.New(f.srv.URL, time.Second, nil).Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := registry.New(f.srv.URL+"/wrong", time.Second, nil).Ping(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "404") {
		t.Fatalf("Ping on a wrong path: %v, want a 404", err)
	}
	f.srv.Close()
	if err := registry.New(f.srv.URL, time.Second, nil).Ping(context.Background()); err == nil {
		t.Fatal("Ping on a closed server succeeded")
	}
}
