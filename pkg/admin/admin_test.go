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
