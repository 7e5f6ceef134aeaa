package registry_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sluice-etl/sluice/pkg/registry"
)

const orderSchema = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`

// fake is franz-go's in-memory registry (srfake) with an interceptor in
// front that counts the requests per id, can hold them at a gate, records
// the Authorization header, and serves the answers srfake cannot give (a
// registry's 500, a proxy's bare 404, a body that is not JSON).
type fake struct {
	*srfake.Registry
	mu      sync.Mutex
	answers map[int32]func(w http.ResponseWriter)
	hits    map[int32]int
	// gate, when set, holds every request until it is closed.
	gate chan struct{}
	// lastAuth is the Authorization header of the last request.
	lastAuth string
}

func newFake(t *testing.T, opts ...srfake.Option) *fake {
	f := &fake{Registry: srfake.New(opts...), answers: map[int32]func(http.ResponseWriter){}, hits: map[int32]int{}}
	t.Cleanup(f.Close)
	f.Intercept(f.intercept)
	return f
}

func (f *fake) intercept(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	f.lastAuth = r.Header.Get("Authorization")
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/schemas/ids/")
	n, err := strconv.ParseInt(rest, 10, 32)
	if !ok || err != nil {
		return false
	}
	id := int32(n)
	f.mu.Lock()
	f.hits[id]++
	answer := f.answers[id]
	f.mu.Unlock()
	if answer == nil {
		return false // srfake answers: the schema, or 404 with code 40403
	}
	answer(w)
	return true
}

// set makes the fake answer id with answer instead of srfake.
func (f *fake) set(id int32, answer func(w http.ResponseWriter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[id] = answer
}

// schema registers an Avro schema under id (subject "s<id>-value").
func (f *fake) schema(id int32, schema string) {
	f.SeedSchema("s"+strconv.Itoa(int(id))+"-value", 1, int(id), sr.Schema{Schema: schema})
}

func (f *fake) count(id int32) int {
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
		name string
		// seed registers what srfake serves; answer, when set, is served
		// instead (what srfake does not say). Neither: id 7 is unknown.
		seed   func(f *fake)
		answer func(w http.ResponseWriter)
		want   string
		// check classifies the error; nil means success.
		check func(t *testing.T, err error)
	}{
		{name: "avro schema", seed: func(f *fake) { f.schema(7, orderSchema) }, want: orderSchema},
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
		{name: "protobuf", seed: func(f *fake) {
			f.SeedSchema("p-value", 1, 7, sr.Schema{Schema: `syntax = "proto3";`, Type: sr.TypeProtobuf})
		}, check: permanentUnsupported("PROTOBUF")},
		{name: "a type sr does not know", answer: jsonAnswer(200, map[string]any{"schema": "<xs:schema/>", "schemaType": "XML"}),
			check: permanentUnsupported(`schemaType "XML"`)},
		{name: "references", seed: func(f *fake) {
			f.SeedSchema("y", 1, 1, sr.Schema{Schema: `{"type":"record","name":"Y","namespace":"x","fields":[]}`})
			f.SeedSchema("o-value", 1, 7, sr.Schema{Schema: orderSchema,
				References: []sr.SchemaReference{{Name: "x.Y", Subject: "y", Version: 1}}})
		}, check: permanentUnsupported("references")},
		{name: "bare 404 is not unknown", answer: rawAnswer(404, "404 page not found"), check: transient(`HTTP 404 Not Found: "404 page not found"`)},
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
			if tt.seed != nil {
				tt.seed(f)
			}
			if tt.answer != nil {
				f.set(7, tt.answer)
			}
			c := registry.New(f.URL(), registry.WithTimeout(time.Second))
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
	c := registry.New(f.URL(), registry.WithTimeout(time.Second))
	f.Close()
	_, err := c.SchemaByID(context.Background(), 1)
	var fe *registry.FetchError
	if err == nil || registry.IsPermanent(err) || !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a non-permanent *FetchError", err)
	}
}

func TestSchemaByIDBadURL(t *testing.T) {
	for _, u := range []string{"localhost:8081", "ftp://host", "http://", "http://a b"} {
		_, err := registry.New(u, registry.WithTimeout(time.Second)).SchemaByID(context.Background(), 1)
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
	c := registry.New(f.URL()+"/", registry.WithTimeout(time.Second), registry.WithClock(clk.now))
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
	c := registry.New(f.URL(), registry.WithTimeout(time.Second), registry.WithClock(clk.now), registry.WithNegativeTTL(30*time.Second))
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
	c := registry.New(f.URL(), registry.WithTimeout(time.Second), registry.WithNegativeTTL(0))
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
	c := registry.New(f.URL(), registry.WithTimeout(time.Second))
	if _, err := c.SchemaByID(context.Background(), 3); err == nil || registry.IsPermanent(err) {
		t.Fatalf("err = %v, want transient", err)
	}
	f.set(3, nil) // the registry recovers
	f.schema(3, orderSchema)
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
	c := registry.New(f.URL(), registry.WithTimeout(5*time.Second))

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
	c := registry.New(f.URL(), registry.WithTimeout(5*time.Second))

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
	c := registry.New(f.URL(), registry.WithTimeout(5*time.Second))

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
	c := registry.New(f.URL(), registry.WithTimeout(50*time.Millisecond))
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
	c := registry.New(f.URL(), registry.WithTimeout(time.Second))
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
	u := strings.Replace(f.URL(), "http://", "http://sluice:s3cret@", 1)
	c := registry.New(u, registry.WithTimeout(time.Second))
	if _, err := c.SchemaByID(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	auth := f.lastAuth
	f.mu.Unlock()
	if auth != "Basic c2x1aWNlOnMzY3JldA==" {
		t.Fatalf("Authorization = %q", auth)
	}
	f.Close()
	_, err := c.SchemaByID(context.Background(), 2)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v: want an error without the password", err)
	}
}

func TestPing(t *testing.T) {
	f := newFake(t)
	if err := registry.New(f.URL(), registry.WithTimeout(time.Second)).Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := registry.New(f.URL()+"/wrong", registry.WithTimeout(time.Second)).Ping(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "404") {
		t.Fatalf("Ping on a wrong path: %v, want a 404", err)
	}
	f.Close()
	if err := registry.New(f.URL(), registry.WithTimeout(time.Second)).Ping(context.Background()); err == nil {
		t.Fatal("Ping on a closed server succeeded")
	}
}

// Credentials set apart from the URL reach the registry as sr sends them;
// a wrong or missing one is the registry's 401/403, not permanent, and no
// message or log line shows the secret.
func TestAuth(t *testing.T) {
	const basic = "Basic c2x1aWNlOnMzY3JldA==" // sluice:s3cret
	tests := []struct {
		name   string
		expect string // what srfake requires in Authorization
		opts   []registry.Option
		status int // 0: success
	}{
		{name: "basic", expect: basic, opts: []registry.Option{registry.WithBasicAuth("sluice", "s3cret")}},
		{name: "bearer", expect: "Bearer t0ken-s3cret", opts: []registry.Option{registry.WithBearerToken("t0ken-s3cret")}},
		{name: "wrong password", expect: basic, opts: []registry.Option{registry.WithBasicAuth("sluice", "wr0ng-s3cret")}, status: 403},
		{name: "wrong token", expect: "Bearer t0ken-s3cret", opts: []registry.Option{registry.WithBearerToken("wr0ng-s3cret")}, status: 403},
		{name: "none", expect: basic, status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, srfake.WithAuth(tt.expect))
			f.schema(1, orderSchema)
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c := registry.New(f.URL(), append(tt.opts, registry.WithLogger(log))...)
			pingErr := c.Ping(context.Background())
			_, err := c.SchemaByID(context.Background(), 1)
			if tt.status == 0 {
				if pingErr != nil || err != nil {
					t.Fatalf("Ping: %v; SchemaByID: %v", pingErr, err)
				}
			} else {
				for _, e := range []error{pingErr, err} {
					if registry.StatusCode(e) != tt.status || registry.IsPermanent(e) {
						t.Fatalf("err = %v: want a non-permanent HTTP %d", e, tt.status)
					}
					if !strings.Contains(e.Error(), "HTTP "+strconv.Itoa(tt.status)) {
						t.Fatalf("err %q does not say HTTP %d", e, tt.status)
					}
				}
			}
			if !strings.Contains(logs.String(), "sending request") {
				t.Errorf("sr's log lines did not reach the logger: %q", logs.String())
			}
			for _, e := range []error{pingErr, err} {
				if e != nil && strings.Contains(e.Error(), "s3cret") {
					t.Errorf("the error shows the secret: %v", e)
				}
			}
			if strings.Contains(logs.String(), "s3cret") {
				t.Errorf("the log shows the secret: %s", logs.String())
			}
		})
	}
}

// Two kinds of credentials at once is a mistake every call reports, never
// showing either.
func TestContradictoryCredentials(t *testing.T) {
	f := newFake(t)
	f.schema(1, orderSchema)
	withUser := strings.Replace(f.URL(), "http://", "http://sluice:s3cret@", 1)
	for _, tt := range []struct {
		name string
		url  string
		opts []registry.Option
	}{
		{"basic and bearer", f.URL(), []registry.Option{registry.WithBasicAuth("u", "s3cret"), registry.WithBearerToken("s3cret")}},
		{"URL and basic", withUser, []registry.Option{registry.WithBasicAuth("u", "p")}},
		{"URL and bearer", withUser, []registry.Option{registry.WithBearerToken("t")}},
	} {
		c := registry.New(tt.url, tt.opts...)
		_, err := c.SchemaByID(context.Background(), 1)
		pingErr := c.Ping(context.Background())
		if err == nil || pingErr == nil || registry.IsPermanent(err) {
			t.Errorf("%s: SchemaByID %v, Ping %v; want non-permanent errors", tt.name, err, pingErr)
			continue
		}
		if strings.Contains(err.Error()+pingErr.Error(), "s3cret") {
			t.Errorf("%s: the error shows the secret: %v", tt.name, err)
		}
	}
	if n := f.count(1); n != 0 {
		t.Errorf("%d requests, want none", n)
	}
}

// https:// with the registry's CA given: the schema; without it: a TLS
// failure, which is not the records' fault.
func TestTLS(t *testing.T) {
	f := srfake.NewRegistry()
	f.SeedSchema("o-value", 1, 1, sr.Schema{Schema: orderSchema})
	srv := httptest.NewTLSServer(f.Handler())
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	c := registry.New(srv.URL, registry.WithTLS(&tls.Config{RootCAs: roots}))
	if got, err := c.SchemaByID(context.Background(), 1); err != nil || got != orderSchema {
		t.Fatalf("with the CA: %q, %v", got, err)
	}
	_, err := registry.New(srv.URL).SchemaByID(context.Background(), 1)
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) || registry.IsPermanent(err) {
		t.Fatalf("without the CA: err = %v, want a non-permanent x509.UnknownAuthorityError", err)
	}
	if strings.Count(err.Error(), srv.URL) > 0 {
		t.Errorf("err %q repeats the URL (describe should leave sr's and net/http's quoting out)", err)
	}
}

// An answer past 16 MiB is refused, not read whole.
func TestAnswerTooLarge(t *testing.T) {
	f := newFake(t)
	f.set(1, func(w http.ResponseWriter) {
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		w.Write([]byte(`{"schema":"`))
		for i := 0; i < 17; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	_, err := registry.New(f.URL()).SchemaByID(context.Background(), 1)
	if err == nil || registry.IsPermanent(err) || !strings.Contains(err.Error(), "answer larger than 16777216 bytes") {
		t.Fatalf("err = %v, want a non-permanent 'answer larger than' error", err)
	}
}
