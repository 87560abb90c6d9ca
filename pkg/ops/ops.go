// Package ops serves what operators and Kubernetes ask of every service:
// /healthz (the process is alive), /readyz (it can do its work now) and
// Prometheus /metrics. A service may mount its own handlers on the same
// server with Handle.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadinessCheck reports whether a dependency can be used now.
type ReadinessCheck func(ctx context.Context) error

// Server is a service's HTTP endpoint for probes, metrics and, optionally,
// the service's own handlers.
type Server struct {
	// Registry holds the metrics /metrics serves; nil on an API server.
	Registry *prometheus.Registry

	mux      *http.ServeMux
	srv      *http.Server
	listener net.Listener

	mu       sync.Mutex
	checks   map[string]ReadinessCheck
	draining atomic.Bool

	// fresh are connections that have not sent a request yet. Shutdown
	// waits 5s for such a connection before it counts as idle, so clients
	// that dial ahead (the Eventarc forwarder, HTTP transports) would hold
	// a stopping pod for nothing.
	connMu sync.Mutex
	fresh  map[net.Conn]struct{}
}

// Limits bound what one client can hold of a server. A body dribbled
// slowly is cut after ReadTimeout, an answer the client will not read after
// WriteTimeout, and past MaxInFlight requests at once the next is answered
// 503 at once instead of queueing into memory.
type Limits struct {
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	MaxInFlight  int
}

// DefaultLimits suit probes, metrics and ingest's endpoints, whose bodies
// are at most a few MiB and whose handling is bounded well below 30s.
var DefaultLimits = Limits{ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second, MaxInFlight: 256}

// New listens on addr (":0" picks a free port) and registers the Go and
// process collectors in a registry of the server's own. It applies
// DefaultLimits; NewWithLimits chooses others.
func New(addr string) (*Server, error) { return NewWithLimits(addr, DefaultLimits) }

// NewWithLimits is New with limits of the caller's.
func NewWithLimits(addr string, limits Limits) (*Server, error) {
	s, err := newServer(addr, limits, true)
	if err != nil {
		return nil, err
	}
	s.Registry = prometheus.NewRegistry()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	return s, nil
}

// NewAPI listens on addr for a service's own endpoints (Handle), with
// DefaultLimits and the same draining as the ops server but no probes and
// no metrics: those stay on a port of their own, so a network policy can
// open one to callers and the other to the metrics scraper.
func NewAPI(addr string) (*Server, error) { return newServer(addr, DefaultLimits, false) }

// newServer serves s.mux; probes names a server whose /healthz and /readyz
// are its own probes, which the in-flight limit must never refuse. On an
// API server those paths are the service's to handle, limited like any.
func newServer(addr string, limits Limits, probes bool) (*Server, error) {
	if limits.ReadTimeout <= 0 || limits.WriteTimeout <= 0 || limits.IdleTimeout <= 0 || limits.MaxInFlight <= 0 {
		return nil, fmt.Errorf("ops limits must all be positive: %+v", limits)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := &Server{
		mux:      http.NewServeMux(),
		listener: ln,
		checks:   map[string]ReadinessCheck{},
		fresh:    map[net.Conn]struct{}{},
	}
	s.srv = &http.Server{
		Handler:           limitInFlight(s.mux, limits.MaxInFlight, probes),
		ReadHeaderTimeout: min(10*time.Second, limits.ReadTimeout),
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
		ConnState:         s.trackConn,
	}
	return s, nil
}

// limitInFlight answers 503 past n requests in progress. Probes, when the
// server has them, are exempt: a flood must not make Kubernetes restart a
// pod that is working.
func limitInFlight(h http.Handler, n int, exemptProbes bool) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exemptProbes && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests in progress", http.StatusServiceUnavailable)
		}
	})
}

func (s *Server) trackConn(c net.Conn, state http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if state == http.StateNew {
		s.fresh[c] = struct{}{}
	} else {
		delete(s.fresh, c)
	}
}

func (s *Server) closeFreshConns() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.fresh {
		_ = c.Close()
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// ServeProfiles serves Go's runtime profiles (net/http/pprof) at
// /debug/pprof/.
func (s *Server) ServeProfiles() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
}

// Handle mounts a service handler, e.g. ingest's CloudEvents endpoint.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// AddReadiness adds a check that /readyz runs on every probe.
func (s *Server) AddReadiness(name string, check ReadinessCheck) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	// A draining pod must leave the Service's endpoints before it stops serving.
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	checks := make(map[string]ReadinessCheck, len(s.checks))
	for name, c := range s.checks {
		checks[name] = c
	}
	s.mu.Unlock()
	for name, check := range checks {
		if err := check(ctx); err != nil {
			http.Error(w, fmt.Sprintf("%s: %v", name, err), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Run serves until ctx is done, then stops accepting, fails /readyz and waits
// up to grace for in-flight requests.
func (s *Server) Run(ctx context.Context, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.listener) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ops server: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.closeFreshConns()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("ops server shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops server: %w", err)
	}
	return nil
}
