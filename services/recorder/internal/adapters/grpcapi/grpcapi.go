// Package grpcapi serves the Recorder API over gRPC, beside the standard
// health service (open to Kubernetes probes) and, when configured,
// reflection for grpcurl. Every other call is authenticated and authorized
// per method before it runs (pkg/auth).
package grpcapi

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/visn/wadispatch/pkg/auth"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Server is the gRPC server of one Recorder.
type Server struct {
	ln     net.Listener
	srv    *grpc.Server
	health *health.Server
}

// Access says who may call what.
type Access struct {
	Verifier *auth.Verifier
	// Senders may claim and release sends; Operators may read and resend.
	// Both are caller names as credentials carry them (service account
	// emails on GKE).
	Senders, Operators []string
	// Reflection registers the reflection service, for operators only.
	Reflection bool
	Log        *logrus.Entry
}

// Connections bound how callers' connections are kept and how long they
// live.
type Connections struct {
	// MinPingTime is the shortest keepalive interval a caller may ping at,
	// with or without calls in flight; one pinging more often is sent
	// GOAWAY (too_many_pings). It must not exceed the sender's keepalive
	// time.
	MinPingTime time.Duration
	// MaxAge closes each connection (GOAWAY, then MaxAgeGrace for the calls
	// in flight) after about this long, so callers connect again and
	// re-resolve, and a recorder pod added since gets its share of the
	// calls. Zero: connections live as long as they are used.
	MaxAge, MaxAgeGrace time.Duration
}

// Policy is the Recorder's per-method authorization. Results and status
// events reach the recorder only through Pub/Sub and are no method of the
// API; a method the policy does not name is refused to every caller.
func (a Access) Policy() *auth.Policy {
	p := auth.NewPolicy().
		Public(healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName).
		Allow(a.Senders, wadispatchv1.Recorder_ClaimSend_FullMethodName, wadispatchv1.Recorder_ReleaseClaim_FullMethodName,
			wadispatchv1.Recorder_ListTemplateAccounts_FullMethodName).
		Allow(a.Operators, wadispatchv1.Recorder_GetMessage_FullMethodName, wadispatchv1.Recorder_ListEnquiryMessages_FullMethodName,
			wadispatchv1.Recorder_ListUnknown_FullMethodName, wadispatchv1.Recorder_ListStalled_FullMethodName, wadispatchv1.Recorder_ListUnmatchedReplies_FullMethodName, wadispatchv1.Recorder_GetDriver_FullMethodName,
			wadispatchv1.Recorder_GetCosts_FullMethodName,
			wadispatchv1.Recorder_Resend_FullMethodName)
	if a.Reflection {
		p.Allow(a.Operators, reflectionpb.ServerReflection_ServerReflectionInfo_FullMethodName, reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName)
	}
	return p
}

// New listens now, so a taken port fails the start, not later.
func New(addr string, rec wadispatchv1.RecorderServer, access Access, conns Connections) (*Server, error) {
	if access.Verifier == nil || len(access.Senders) == 0 {
		return nil, fmt.Errorf("grpc API: a token verifier and at least one sender identity are required")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpc listen on %s: %w", addr, err)
	}
	policy := access.Policy()
	a := &Server{ln: ln, srv: grpc.NewServer(
		// Calls join the caller's trace (a sender's task, wadispatchctl);
		// probes would only add a trace each.
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))),
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(access.Verifier, policy, access.Log)),
		grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(access.Verifier, policy, access.Log)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: conns.MinPingTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: conns.MaxAge, MaxConnectionAgeGrace: conns.MaxAgeGrace}),
	), health: health.NewServer()}
	wadispatchv1.RegisterRecorderServer(a.srv, rec)
	healthpb.RegisterHealthServer(a.srv, a.health)
	if access.Reflection {
		reflection.Register(a.srv)
	}
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
