package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"
	"google.golang.org/grpc/credentials"
)

// NewTokenSource is where a workload gets its ID tokens for audience: from
// file when one is named (the local stack writes and renews one per
// workload, as Kubernetes does for projected tokens), else from Google
// (the metadata server's Workload Identity, or application default
// credentials of a service account).
func NewTokenSource(ctx context.Context, audience, file string) (oauth2.TokenSource, error) {
	if file != "" {
		ts := &fileTokens{path: file}
		// A missing or unreadable file is a setup mistake: say so at start.
		if _, err := ts.Token(); err != nil {
			return nil, err
		}
		return ts, nil
	}
	ts, err := idtoken.NewTokenSource(ctx, audience)
	if err != nil {
		return nil, fmt.Errorf("ID tokens for %s: %w", audience, err)
	}
	return ts, nil
}

// fileTokens reads the token file again once the token it holds is near
// its expiry, so a renewed file is picked up without a restart.
type fileTokens struct {
	path string

	mu  sync.Mutex
	tok *oauth2.Token
}

func (f *fileTokens) Token() (*oauth2.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tok != nil && time.Until(f.tok.Expiry) > time.Minute {
		return f.tok, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("ID token file: %w", err)
	}
	raw := strings.TrimSpace(string(b))
	exp, err := expiry(raw)
	if err != nil {
		return nil, fmt.Errorf("ID token file %s: %w", f.path, err)
	}
	f.tok = &oauth2.Token{AccessToken: raw, TokenType: "Bearer", Expiry: exp}
	return f.tok, nil
}

// expiry reads a JWT's exp without verifying it: the server verifies.
func expiry(raw string) (time.Time, error) {
	tok, err := parseUnverified(raw)
	if err != nil {
		return time.Time{}, err
	}
	if tok.Expiry == nil {
		return time.Time{}, errors.New("the token has no expiry")
	}
	return tok.Expiry.Time(), nil
}

// PerRPC attaches a bearer ID token from ts to every call. The recorder is
// reached in the cluster over plaintext gRPC, so transport security is not
// required here: the tokens are short-lived and bound to the recorder's
// audience (docs/security.md says what that leaves open).
func PerRPC(ts oauth2.TokenSource) credentials.PerRPCCredentials {
	return perRPC{ts: oauth2.ReuseTokenSource(nil, ts)}
}

type perRPC struct{ ts oauth2.TokenSource }

func (p perRPC) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := p.ts.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok.AccessToken}, nil
}

func (perRPC) RequireTransportSecurity() bool { return false }
