package adapters

import (
	"context"
	"fmt"
	"time"

	"github.com/visn/wadispatch/pkg/auth"
	"golang.org/x/oauth2"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// retryUnavailable lets gRPC retry a ClaimSend that met an unavailable
// recorder (a pod restarting behind the Service) before the task is nacked.
const retryUnavailable = `{
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

// RecorderConn is the connection to the recorder's gRPC API. Inside the
// cluster it is plaintext; the network policy admits only the sender.
type RecorderConn struct {
	conn *grpc.ClientConn
}

// DialRecorder connects lazily: the first call, or Ready, dials.
// Every call carries an ID token from tokens, which names this sender to
// the recorder.
func DialRecorder(addr string, tokens oauth2.TokenSource) (*RecorderConn, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.PerRPC(tokens)),
		grpc.WithDefaultServiceConfig(retryUnavailable),
		// Claims join the trace of the task being sent.
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		// Pings keep idle connections through load balancers and notice a
		// dead recorder before a claim waits on it.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("recorder client for %s: %w", addr, err)
	}
	return &RecorderConn{conn: conn}, nil
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
