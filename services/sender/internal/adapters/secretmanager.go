package adapters

import (
	"context"
	"fmt"
	"hash/crc32"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/services/sender/internal/app"
)

// SecretManager reads tokens from Secret Manager; it is the sender's
// app.SecretSource on GCP.
type SecretManager struct {
	client *secretmanager.Client
}

// NewSecretManager connects to Secret Manager (opts: an endpoint in tests).
func NewSecretManager(ctx context.Context, opts ...option.ClientOption) (*SecretManager, error) {
	c, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("secret manager client: %w", err)
	}
	return &SecretManager{client: c}, nil
}

// AccessSecret implements app.SecretSource. Errors name the version,
// never its payload.
func (s *SecretManager) AccessSecret(ctx context.Context, name string) ([]byte, error) {
	resp, err := s.client.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name})
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.PermissionDenied, codes.FailedPrecondition, codes.InvalidArgument:
			// Missing, not ours to read, disabled or destroyed: a person
			// must fix it, retrying cannot.
			return nil, fmt.Errorf("%w: access %s: %s", app.ErrTokenUnavailable, name, status.Code(err))
		}
		return nil, fmt.Errorf("access %s: %w", name, err)
	}
	data := resp.GetPayload().GetData()
	if sum := resp.GetPayload().DataCrc32C; sum != nil && int64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))) != *sum {
		return nil, fmt.Errorf("access %s: payload checksum mismatch", name)
	}
	return data, nil
}

// Close closes the client.
func (s *SecretManager) Close() error { return s.client.Close() }
