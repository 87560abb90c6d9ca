package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/testinfra/localissuer"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/internal/adapters/grpcapi"
)

// serve runs a Recorder gRPC server with conns until the test ends.
func serve(t *testing.T, conns grpcapi.Connections) string {
	t.Helper()
	iss, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	trust, err := auth.ParseIssuers(iss.Trust())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(context.Background(), "wadispatch-recorder", trust)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcapi.New("127.0.0.1:0", wadispatchv1.UnimplementedRecorderServer{}, grpcapi.Access{Verifier: verifier, Senders: []string{"sender"}}, conns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv.Addr()
}

// dialIdle connects as the sender does (pings every 10 s, gRPC's
// shortest, with no call in flight too), makes one call and leaves the
// connection idle.
func dialIdle(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if s := conn.GetState(); s != connectivity.Ready {
		t.Fatalf("connection %s after a call", s)
	}
	return conn
}

// The recorder permits the sender's keepalive pings, idle or not, where a
// gRPC server's default policy (one ping per 5 minutes, none while idle)
// cuts the connection off with GOAWAY too_many_pings after three.
func TestRecorderPermitsTheSendersKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for four keepalive pings, about 42 s")
	}
	permitted := dialIdle(t, serve(t, grpcapi.Connections{MinPingTime: 10 * time.Second}))
	strict := dialIdle(t, serve(t, grpcapi.Connections{}))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	if !strict.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatal("the default policy did not cut the pinging client off within 90 s: the client did not ping")
	}
	t.Logf("default policy: connection cut off after %s", time.Since(start).Round(time.Second))
	// The permitted client has sent as many pings by now; one more ping
	// later it must still be on its first connection.
	after, cancelAfter := context.WithTimeout(ctx, 12*time.Second)
	defer cancelAfter()
	if permitted.WaitForStateChange(after, connectivity.Ready) {
		t.Errorf("the recorder's policy: connection %s after the same pings and one more, want READY", permitted.GetState())
	}
}

// A connection older than MaxAge is closed with GOAWAY, so the client
// connects again (and re-resolves) with no call failing.
func TestRecorderAgesConnectionsOut(t *testing.T) {
	conn := dialIdle(t, serve(t, grpcapi.Connections{MinPingTime: 10 * time.Second, MaxAge: time.Second, MaxAgeGrace: time.Second}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !conn.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatal("connection still open 10 s into a 1 s maximum age")
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("call after the connection aged out: %v", err)
	}
}
