package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/visn/wadispatch/pkg/expiring"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

// ErrTokenUnavailable is wrapped by a TokenResolver's error when the
// reference names no usable token: the send fails permanently with reason
// token_unavailable, since retrying cannot make the secret appear. Any other
// error is taken as transient (the secret store is unreachable).
var ErrTokenUnavailable = errors.New("token unavailable")

// SecretVersionName is the shape of a Secret Manager secret version
// resource name, the token_ref a lease carries on GCP.
var SecretVersionName = regexp.MustCompile(`^projects/[^/]+/secrets/[^/]+/versions/[^/]+$`)

// SecretSource reads a secret version by resource name (Secret Manager on GCP).
type SecretSource interface {
	// AccessSecret returns the payload; the error wraps ErrTokenUnavailable
	// when the version does not exist, is disabled or may not be read.
	AccessSecret(ctx context.Context, name string) ([]byte, error)
}

// Tokens resolves a lease's token reference: Secret Manager resource names
// through the SecretSource, other references through a local map (the
// SENDER_TOKENS variable or file in local runs). Secret Manager answers are
// cached for a while, so a burst of tasks costs one secret read per lease.
type Tokens struct {
	local   map[string]whatsapp.Token
	secrets SecretSource
	ttl     time.Duration
	cache   *expiring.Cache[whatsapp.Token]
}

// NewTokens builds a resolver. secrets may be nil when no reference is a
// Secret Manager name (local runs).
func NewTokens(local map[string]whatsapp.Token, secrets SecretSource, ttl time.Duration, now func() time.Time) *Tokens {
	return &Tokens{local: local, secrets: secrets, ttl: ttl, cache: expiring.New[whatsapp.Token](now)}
}

// Token returns the token a reference names.
func (t *Tokens) Token(ctx context.Context, ref string) (whatsapp.Token, error) {
	if ref == "" {
		return whatsapp.Token{}, fmt.Errorf("%w: the lease has no token reference", ErrTokenUnavailable)
	}
	if !SecretVersionName.MatchString(ref) {
		tok, ok := t.local[ref]
		if !ok || tok.IsZero() {
			return whatsapp.Token{}, fmt.Errorf("%w: no local token for reference %q", ErrTokenUnavailable, ref)
		}
		return tok, nil
	}
	if t.secrets == nil {
		return whatsapp.Token{}, fmt.Errorf("%w: reference %q names a Secret Manager secret and no Secret Manager client is configured", ErrTokenUnavailable, ref)
	}
	return t.cache.Get(ctx, ref, func(ctx context.Context, ref string) (whatsapp.Token, time.Duration, error) {
		raw, err := t.secrets.AccessSecret(ctx, ref)
		if err != nil {
			return whatsapp.Token{}, 0, fmt.Errorf("read secret %s: %w", ref, err)
		}
		if len(raw) == 0 {
			return whatsapp.Token{}, 0, fmt.Errorf("%w: secret %s is empty", ErrTokenUnavailable, ref)
		}
		return whatsapp.NewToken(string(raw)), t.ttl, nil
	})
}
