package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReadyzSaysWhy: /readyz answers 200 while ready returns nil, and 503
// with ready's error as the reason otherwise, asking on every request.
func TestReadyzSaysWhy(t *testing.T) {
	var why atomic.Pointer[error]
	s, err := New("127.0.0.1:0", prometheus.NewRegistry(), func() error {
		if e := why.Load(); e != nil {
			return *e
		}
		return nil
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer func() { _ = s.Shutdown(context.Background()) }()
	get := func() (int, string) {
		res, err := http.Get("http://" + s.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("ready: %d %q", code, body)
	}
	e := errors.New("reference data: following has failed for 31s (timeout: list offsets)")
	why.Store(&e)
	if code, body := get(); code != http.StatusServiceUnavailable || body != "not ready: "+e.Error()+"\n" {
		t.Fatalf("not ready: %d %q", code, body)
	}
	why.Store(nil)
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("ready again: %d", code)
	}
}

// TestTokenProtectsAllButProbes: with a token, /metrics, the dashboard and
// /api/stats answer 401 (with the Bearer and Basic challenges) unless the
// request carries the token as a bearer token or as a basic-auth
// password; /healthz and /readyz stay open. Without a token nothing asks.
func TestTokenProtectsAllButProbes(t *testing.T) {
	const token = "s3cret-token-0123456789"
	start := func(token string) string {
		t.Helper()
		s, err := New("127.0.0.1:0", prometheus.NewRegistry(), func() error { return nil }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		s.RequireToken(token)
		s.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("dashboard")) }))
		s.Handle("GET /api/stats", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) }))
		go s.Serve()
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		return "http://" + s.Addr()
	}
	get := func(url string, auth func(*http.Request)) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			auth(req)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	basic := func(pass string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth("anyone", pass) }
	}

	base := start(token)
	for _, c := range []struct {
		path string
		auth func(*http.Request)
		want int
	}{
		{"/metrics", nil, http.StatusUnauthorized},
		{"/metrics", bearer("wrong"), http.StatusUnauthorized},
		{"/metrics", bearer(token + "x"), http.StatusUnauthorized},
		{"/metrics", bearer(token[:len(token)-1]), http.StatusUnauthorized},
		{"/metrics", basic("wrong"), http.StatusUnauthorized},
		{"/metrics", func(r *http.Request) { r.Header.Set("Authorization", token) }, http.StatusUnauthorized},
		{"/metrics", bearer(token), http.StatusOK},
		{"/metrics", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+token) }, http.StatusOK},
		{"/", basic(token), http.StatusOK},
		{"/", nil, http.StatusUnauthorized},
		{"/api/stats", bearer(token), http.StatusOK},
		{"/api/stats", nil, http.StatusUnauthorized},
		{"/healthz/../metrics", nil, http.StatusUnauthorized},
		{"/healthz", nil, http.StatusOK},
		{"/readyz", nil, http.StatusOK},
	} {
		res, body := get(base+c.path, c.auth)
		if res.StatusCode != c.want {
			t.Errorf("GET %s: %d %q, want %d", c.path, res.StatusCode, body, c.want)
		}
		if res.StatusCode == http.StatusUnauthorized {
			if ch := res.Header.Values("WWW-Authenticate"); len(ch) != 2 || !strings.HasPrefix(ch[0], "Bearer") || !strings.HasPrefix(ch[1], "Basic") {
				t.Errorf("GET %s: challenges %q, want Bearer and Basic", c.path, ch)
			}
			if strings.Contains(body, token) {
				t.Errorf("GET %s: the 401 body shows the token", c.path)
			}
		}
	}

	open := start("")
	if res, _ := get(open+"/metrics", nil); res.StatusCode != http.StatusOK {
		t.Errorf("without a token /metrics answered %d", res.StatusCode)
	}
}

// TestProfilesOnlyWhenAsked: /debug/pprof/ is not served unless
// ServeProfiles was called; then the heap profile and a one-second CPU
// profile come back (gzipped protobuf: its magic bytes), behind the token.
func TestProfilesOnlyWhenAsked(t *testing.T) {
	start := func(profiles bool, token string) string {
		t.Helper()
		s, err := New("127.0.0.1:0", prometheus.NewRegistry(), func() error { return nil }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		s.RequireToken(token)
		if profiles {
			s.ServeProfiles()
		}
		go s.Serve()
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		return "http://" + s.Addr()
	}
	get := func(url, token string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if code, _ := get(start(false, "")+"/debug/pprof/heap", ""); code != http.StatusNotFound {
		t.Fatalf("profiles not asked for: GET /debug/pprof/heap = %d, want 404", code)
	}
	base := start(true, "")
	for _, path := range []string{"/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		code, body := get(base+path, "")
		if code != http.StatusOK || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
			t.Fatalf("GET %s = %d, %d bytes, want 200 and a gzipped profile", path, code, len(body))
		}
	}
	if code, body := get(base+"/debug/pprof/", ""); code != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("GET /debug/pprof/ = %d %q", code, body)
	}
	guarded := start(true, "tok-123")
	if code, _ := get(guarded+"/debug/pprof/heap", ""); code != http.StatusUnauthorized {
		t.Fatalf("profiles without the token: %d, want 401", code)
	}
	if code, _ := get(guarded+"/debug/pprof/heap", "tok-123"); code != http.StatusOK {
		t.Fatalf("profiles with the token: %d, want 200", code)
	}
}
