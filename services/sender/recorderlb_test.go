package main

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/visn/wadispatch/pkg/testinfra/faultproxy"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/sender/internal/adapters"
)

// countingRecorder answers every ClaimSend with SEND and counts them.
type countingRecorder struct {
	wadispatchv1.UnimplementedRecorderServer
	claims atomic.Int64
}

func (r *countingRecorder) ClaimSend(context.Context, *wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
	r.claims.Add(1)
	return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: "c"}, nil
}

// serveRecorder serves a countingRecorder, with the recorder's keepalive
// policy, behind a fault proxy until the test ends.
func serveRecorder(t *testing.T) (*countingRecorder, *faultproxy.Proxy) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &countingRecorder{}
	gs := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
	wadispatchv1.RegisterRecorderServer(gs, rec)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	proxy, err := faultproxy.Start("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	return rec, proxy
}

// Claims are spread over every recorder of the address list, and one that
// stops answering without closing its connection (a lost node, a
// partition) is dropped by the keepalive within about its time and
// timeout: the calls then all go to the other.
func TestRecorderCallsAreBalancedAndADeadRecorderIsDropped(t *testing.T) {
	a, proxyA := serveRecorder(t)
	b, proxyB := serveRecorder(t)
	ka := adapters.Keepalive{Time: 10 * time.Second, Timeout: time.Second}
	conn, err := adapters.DialRecorder(proxyA.Addr()+","+proxyB.Addr(), ka, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := conn.Client()
	claim := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := client.ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{})
		return err
	}

	// Round robin only picks among connected recorders: until the second
	// connects, the first takes every call.
	deadline := time.Now().Add(10 * time.Second)
	for a.claims.Load() < 10 || b.claims.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("claims after 10s: %d and %d, want both recorders called", a.claims.Load(), b.claims.Load())
		}
		if err := claim(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	a0, b0 := a.claims.Load(), b.claims.Load()
	for range 100 {
		if err := claim(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if da, db := a.claims.Load()-a0, b.claims.Load()-b0; da < 40 || db < 40 {
		t.Errorf("100 claims with both recorders connected went %d and %d, want about even", da, db)
	}

	proxyA.Set(faultproxy.Blackhole)
	cut := time.Now()
	// Calls picked for the silent recorder time out until the keepalive
	// drops its connection; then 50 calls in a row reach the other.
	bound := ka.Time + ka.Timeout + 5*time.Second
	for ok := 0; ok < 50; {
		if time.Since(cut) > bound {
			t.Fatalf("calls still failing %s after the recorder went silent (keepalive %s + %s)", time.Since(cut).Round(time.Millisecond), ka.Time, ka.Timeout)
		}
		if err := claim(200 * time.Millisecond); err != nil {
			ok = 0
			continue
		}
		ok++
	}
	t.Logf("silent recorder dropped %s after it went silent", time.Since(cut).Round(time.Millisecond))
	if err := conn.Ready(context.Background()); err != nil {
		t.Errorf("Ready with one recorder left: %v", err)
	}
}

func TestRecorderSettingsAreChecked(t *testing.T) {
	tokens := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})
	ka := adapters.Keepalive{Time: 20 * time.Second, Timeout: 5 * time.Second}
	if _, err := adapters.DialRecorder("127.0.0.1:9090,recorder-2", ka, tokens); err == nil {
		t.Error("an address list with an entry without port was accepted")
	}
	cfg := spec{MaxAttempts: 1, MaxInFlight: 1, PullStreams: 1, RatePerNumber: 1, ClaimLease: 45 * time.Second,
		WhatsAppTimeout: 10 * time.Second, PublishTimeout: 30 * time.Second, RecorderKeepalive: 20 * time.Second, RecorderPingTimeout: 5 * time.Second}
	if err := cfg.check(); err != nil {
		t.Fatalf("a valid spec: %v", err)
	}
	// gRPC would quietly ping every 10 s instead.
	cfg.RecorderKeepalive = 5 * time.Second
	if err := cfg.check(); err == nil || !strings.Contains(err.Error(), "SENDER_RECORDER_KEEPALIVE_TIME") {
		t.Errorf("keepalive time 5s: %v, want an error naming SENDER_RECORDER_KEEPALIVE_TIME", err)
	}
}
