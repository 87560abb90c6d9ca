// Package pubsubemu runs the Pub/Sub Go client's own fake server (pstest)
// on a TCP port, with wadispatch's topology created, for tests and the local
// stack. Clients reach it through PUBSUB_EMULATOR_HOST. pstest's own
// dead-lettering is replaced by one that behaves as Pub/Sub's (deadletter.go).
package pubsubemu

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/visn/wadispatch/pkg/testinfra/topology"
)

// Server is a running pstest server, reached through a front of ours that
// gives it Pub/Sub's dead-lettering (see deadLetterer).
type Server struct {
	*pstest.Server
	// Addr is the front's address, for PUBSUB_EMULATOR_HOST.
	Addr string

	front     *grpc.Server
	closeOnce sync.Once
	closeErr  error
}

// Close stops the server. Unlike pstest's, it may be called more than once
// (a test that stops Pub/Sub on purpose, then its cleanup).
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.front.Stop()
		s.closeErr = s.Server.Close()
	})
	return s.closeErr
}

// Start listens on hostPort ("127.0.0.1:0" picks a port) and creates topo
// in project.
func Start(ctx context.Context, hostPort, project string, topo *topology.Topology) (*Server, error) {
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		return nil, fmt.Errorf("pubsub emulator listen on %s: %w", hostPort, err)
	}
	// pstest listens on a port of its own, which only the front uses.
	ps := pstest.NewServerWithAddress("127.0.0.1:0")
	dl := &deadLetterer{srv: ps, policies: map[string]*pubsubpb.DeadLetterPolicy{}}
	front := grpc.NewServer(grpc.UnaryInterceptor(dl.intercept), grpc.StreamInterceptor(dl.streamIntercept))
	pubsubpb.RegisterPublisherServer(front, &ps.GServer)
	pubsubpb.RegisterSubscriberServer(front, &ps.GServer)
	pubsubpb.RegisterSchemaServiceServer(front, &ps.GServer)
	go func() { _ = front.Serve(ln) }()
	s := &Server{Server: ps, Addr: ln.Addr().String(), front: front}
	client, err := NewClient(ctx, s.Addr, project)
	if err != nil {
		s.Close()
		return nil, err
	}
	defer client.Close()
	if err := topology.Apply(ctx, client, topo); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// NewClient returns a Pub/Sub client for the emulator at addr, as the
// services get when PUBSUB_EMULATOR_HOST is set.
func NewClient(ctx context.Context, addr, project string) (*pubsub.Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial pubsub emulator %s: %w", addr, err)
	}
	c, err := pubsub.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	return c, nil
}

// TestProject is the project tests and the local stack use.
const TestProject = "wadispatch-local"

// StartForTest starts a server with the project's topology in TestProject
// and stops it when t ends; it returns the address for PUBSUB_EMULATOR_HOST.
func StartForTest(t testing.TB) string {
	t.Helper()
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), "127.0.0.1:0", TestProject, topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.Addr
}

// NackUntilDeadLettered plays a consumer that can handle nothing on
// subscription: it pulls and nacks until the subscription's dead-letter
// policy has moved every message off it, and returns how many deliveries
// it nacked. The subscription's real consumer must be stopped meanwhile.
func NackUntilDeadLettered(ctx context.Context, client *pubsub.Client, subscription string) (int, error) {
	nacked := 0
	for {
		name, got, err := pullNow(ctx, client, subscription)
		if err != nil || len(got) == 0 {
			return nacked, err
		}
		ids := ackIDs(got)
		if err := client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: name, AckIds: ids}); err != nil {
			return nacked, fmt.Errorf("nack on %s: %w", subscription, err)
		}
		nacked += len(ids)
	}
}

// TakeAll acks and returns what subscription holds now, for a test that
// checks what arrived there.
func TakeAll(ctx context.Context, client *pubsub.Client, subscription string) ([]*pubsubpb.PubsubMessage, error) {
	var out []*pubsubpb.PubsubMessage
	for {
		name, got, err := pullNow(ctx, client, subscription)
		if err != nil || len(got) == 0 {
			return out, err
		}
		if err := client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: name, AckIds: ackIDs(got)}); err != nil {
			return out, fmt.Errorf("ack on %s: %w", subscription, err)
		}
		for _, m := range got {
			out = append(out, m.GetMessage())
		}
	}
}

// pullNow pulls up to 100 of the messages subscription has now, without
// waiting for more. Google's Pub/Sub emulator ignores ReturnImmediately and
// holds a pull on an empty subscription open, so a pull that finds nothing
// for a second counts as empty there.
func pullNow(ctx context.Context, client *pubsub.Client, subscription string) (string, []*pubsubpb.ReceivedMessage, error) {
	name := "projects/" + client.Project() + "/subscriptions/" + subscription
	pullCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	//lint:ignore SA1019 ReturnImmediately is what asks "what is there now" of pstest
	resp, err := client.SubscriptionAdminClient.Pull(pullCtx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 100, ReturnImmediately: true})
	if ctx.Err() == nil && pullCtx.Err() != nil {
		return name, nil, nil
	}
	if err != nil {
		return name, nil, fmt.Errorf("pull from %s: %w", subscription, err)
	}
	return name, resp.GetReceivedMessages(), nil
}

func ackIDs(ms []*pubsubpb.ReceivedMessage) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.GetAckId()
	}
	return ids
}
