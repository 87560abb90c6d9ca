package adapters

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/visn/wadispatch/pkg/auth"
	"golang.org/x/oauth2"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// serviceConfig balances calls over every address the target resolves to
// (one per recorder pod behind a headless Service) and lets gRPC retry a
// ClaimSend that met an unavailable recorder (a pod restarting) before the
// task is nacked.
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "wadispatch.v1.Recorder"}],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.1s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// staticScheme names the resolver of a comma-separated address list.
const staticScheme = "wadispatch-static"

// Keepalive is how the sender checks an idle or busy connection to a
// recorder: a ping after Time without reads, the connection dropped when no
// answer comes within Timeout. gRPC raises a Time under 10s to 10s; the
// recorder's RECORDER_KEEPALIVE_MIN_TIME must not exceed Time.
type Keepalive struct {
	Time, Timeout time.Duration
}

// RecorderConn is the connection to the recorder's gRPC API. Inside the
// cluster it is plaintext; the network policy admits only the sender.
type RecorderConn struct {
	conn *grpc.ClientConn
}

// DialRecorder connects lazily: the first call, or Ready, dials. addr is a
// gRPC target (dns:///host:port resolves to every recorder pod of a
// headless Service) or a comma-separated list of host:port, for several
// recorders on one host, which DNS cannot tell apart by port. Every call
// carries an ID token from tokens, which names this sender to the recorder.
func DialRecorder(addr string, ka Keepalive, tokens oauth2.TokenSource) (*RecorderConn, error) {
	target, opts, err := recorderTarget(addr)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target, append(opts,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.PerRPC(tokens)),
		grpc.WithDefaultServiceConfig(serviceConfig),
		// Claims join the trace of the task being sent.
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		// A recorder that vanished without closing its connections (node
		// lost, partition) would otherwise keep its share of the calls
		// until each timed out; idle connections are pinged too, so a
		// dead one is dropped before a claim picks it.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ka.Time, Timeout: ka.Timeout, PermitWithoutStream: true}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("recorder client for %s: %w", addr, err)
	}
	return &RecorderConn{conn: conn}, nil
}

// recorderTarget is the gRPC target for addr, and for an address list the
// resolver that hands gRPC those addresses.
func recorderTarget(addr string) (string, []grpc.DialOption, error) {
	if !strings.Contains(addr, ",") {
		return addr, nil, nil
	}
	var state resolver.State
	for _, a := range strings.Split(addr, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", nil, fmt.Errorf("recorder address list %q: %w", addr, err)
		}
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r := manual.NewBuilderWithScheme(staticScheme)
	r.InitialState(state)
	return staticScheme + ":///recorders", []grpc.DialOption{grpc.WithResolvers(r)}, nil
}

// Ready reports whether the recorder can be reached now, connecting if the
// connection is idle.
func (r *RecorderConn) Ready(ctx context.Context) error {
	for {
		s := r.conn.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			r.conn.Connect()
		}
		if !r.conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("recorder %s: %s", r.conn.Target(), s)
		}
	}
}

// Client is the Recorder API over this connection.
func (r *RecorderConn) Client() wadispatchv1.RecorderClient {
	return wadispatchv1.NewRecorderClient(r.conn)
}

// Close closes the connection.
func (r *RecorderConn) Close() error { return r.conn.Close() }
