// Package admin serves Sluice's HTTP endpoints: /metrics (Prometheus),
// /healthz (the process is alive), /readyz (it is consuming and loading),
// and the live dashboard: the page at / and its data at /api/stats.
//
// Files: admin.go the server; dashboard.go the page (dashboard.html,
// embedded) and the /api/stats handler; stats.go the per-pipeline and
// per-partition figures, read from the engine and the metrics registry;
// kpi.go the business KPIs from ClickHouse's views, cached.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-etl/sluice/pkg/logx"
)

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
	mux *http.ServeMux
}

// New listens on addr (host:port; port 0 picks a free one) and serves the
// registry's metrics. ready is asked on every GET /readyz: nil means
// ready (200 "ready"); an error means not ready, and its text is the
// reason in the 503 body ("not ready: <reason>"), e.g. which part is
// failing and since when.
func New(addr string, reg *prometheus.Registry, ready func() error, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:  ln, log: log, mux: mux,
	}
	return s, nil
}

// RequireToken protects every endpoint but /healthz and /readyz with
// token: a request must carry "Authorization: Bearer <token>" (Prometheus'
// authorization.credentials, curl -H) or HTTP basic auth with the token as
// its password, any user name (what a browser prompts for; the dashboard's
// own requests then carry it too). Anything else is 401 with the
// challenges. The probes stay open: an orchestrator's liveness and
// readiness checks carry no credentials, and they say nothing but ok or
// why not ready. Call it before Serve; an empty token changes nothing.
func (s *Server) RequireToken(token string) {
	if token == "" {
		return
	}
	s.srv.Handler = tokenAuth(token, s.mux)
}

func tokenAuth(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	matches := func(got string) bool {
		// Hashing first makes the comparison constant-time whatever the
		// length of what was sent.
		h := sha256.Sum256([]byte(got))
		return subtle.ConstantTimeCompare(h[:], want[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		auth := r.Header.Get("Authorization")
		if scheme, cred, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") && matches(strings.TrimSpace(cred)) {
			next.ServeHTTP(w, r)
			return
		}
		if _, pass, ok := r.BasicAuth(); ok && matches(pass) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("WWW-Authenticate", `Bearer realm="sluice admin"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="sluice admin", charset="UTF-8"`)
		http.Error(w, "unauthorized: this endpoint needs admin.token (Authorization: Bearer <token>)", http.StatusUnauthorized)
	})
}

// ServeProfiles adds Go's runtime profiles under /debug/pprof/
// (admin.pprof): index, cmdline, profile (CPU, ?seconds=N), symbol, trace
// and the named profiles (heap, allocs, goroutine, ...). Call it before
// Serve.
func (s *Server) ServeProfiles() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Handle adds a handler (e.g. the dashboard) before Serve.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("admin server stopped", logx.Err(err))
	}
}

// Shutdown stops serving within ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
