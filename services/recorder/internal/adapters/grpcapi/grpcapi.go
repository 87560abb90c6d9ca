// Package grpcapi serves the Recorder API over gRPC, beside the standard
// health service and reflection, so grpcurl and Kubernetes gRPC probes work.
package grpcapi

import (
	"context"
	"fmt"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Server is the gRPC server of one Recorder.
type Server struct {
	ln     net.Listener
	srv    *grpc.Server
	health *health.Server
}

// New listens now, so a taken port fails the start, not later.
func New(addr string, rec wadispatchv1.RecorderServer) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpc listen on %s: %w", addr, err)
	}
	a := &Server{ln: ln, srv: grpc.NewServer(
		// Calls join the caller's trace (a sender's task, wadispatchctl);
		// probes would only add a trace each.
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))),
	), health: health.NewServer()}
	wadispatchv1.RegisterRecorderServer(a.srv, rec)
	healthpb.RegisterHealthServer(a.srv, a.health)
	reflection.Register(a.srv)
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	a.health.SetServingStatus(wadispatchv1.Recorder_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return a, nil
}

// Addr is the address it listens on.
func (a *Server) Addr() string { return a.ln.Addr().String() }

// Run serves until ctx ends, then reports NOT_SERVING and lets in-flight
// calls finish for up to grace.
func (a *Server) Run(ctx context.Context, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	a.health.Resume()
	select {
	case err := <-errc:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	a.health.Shutdown()
	stopped := make(chan struct{})
	go func() { a.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		a.srv.Stop()
	}
	return nil
}
