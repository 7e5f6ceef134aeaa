package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
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
