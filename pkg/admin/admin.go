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
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// Handle adds a handler (e.g. the dashboard) before Serve.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("admin server stopped", "err", err)
	}
}

// Shutdown stops serving within ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
