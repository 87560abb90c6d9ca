package adapters

import (
	"context"
	"errors"
	"hash/crc32"
	"net"
	"testing"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/services/sender/internal/app"
)

// secretServer answers AccessSecretVersion as Secret Manager documents it;
// no Secret Manager emulator exists, so this checks the adapter's use of the
// official client and its reading of the answers, not the service itself.
type secretServer struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer
	versions map[string][]byte
	badSum   map[string]bool
	down     bool
}

func (s *secretServer) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	if s.down {
		return nil, status.Error(codes.Unavailable, "backend unavailable")
	}
	data, ok := s.versions[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Secret Version [%s] not found.", req.GetName())
	}
	sum := int64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	if s.badSum[req.GetName()] {
		sum++
	}
	return &secretmanagerpb.AccessSecretVersionResponse{Name: req.GetName(), Payload: &secretmanagerpb.SecretPayload{Data: data, DataCrc32C: &sum}}, nil
}

func TestSecretManagerSource(t *testing.T) {
	const good, corrupt = "projects/p/secrets/lease-l1/versions/3", "projects/p/secrets/lease-l2/versions/1"
	srv := &secretServer{versions: map[string][]byte{good: []byte("sm-token"), corrupt: []byte("x")}, badSum: map[string]bool{corrupt: true}}
	gs := grpc.NewServer()
	secretmanagerpb.RegisterSecretManagerServiceServer(gs, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	sm, err := NewSecretManager(context.Background(), option.WithEndpoint(ln.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sm.Close() })
	ctx := context.Background()

	if data, err := sm.AccessSecret(ctx, good); err != nil || string(data) != "sm-token" {
		t.Errorf("good version: %q, %v", data, err)
	}
	if _, err := sm.AccessSecret(ctx, "projects/p/secrets/missing/versions/latest"); !errors.Is(err, app.ErrTokenUnavailable) {
		t.Errorf("missing version: %v, want ErrTokenUnavailable", err)
	}
	if _, err := sm.AccessSecret(ctx, corrupt); err == nil || errors.Is(err, app.ErrTokenUnavailable) {
		t.Errorf("checksum mismatch: %v, want a transient error", err)
	}
	srv.down = true
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := sm.AccessSecret(short, good); err == nil || errors.Is(err, app.ErrTokenUnavailable) {
		t.Errorf("unavailable: %v, want a transient error", err)
	}
}
