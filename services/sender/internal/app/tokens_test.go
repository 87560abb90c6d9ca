package app

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

type countingSecrets struct {
	reads int
	data  map[string]string
}

func (c *countingSecrets) AccessSecret(_ context.Context, name string) ([]byte, error) {
	c.reads++
	v, ok := c.data[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s not found", ErrTokenUnavailable, name)
	}
	return []byte(v), nil
}

func TestTokensRouteAndCacheSecretManager(t *testing.T) {
	const name = "projects/p/secrets/lease-a/versions/3"
	secrets := &countingSecrets{data: map[string]string{name: "sm-token"}}
	now := time.Now()
	tokens := NewTokens(nil, secrets, time.Minute, func() time.Time { return now })
	for range 3 {
		tok, err := tokens.Token(context.Background(), name)
		if err != nil || tok.Reveal() != "sm-token" {
			t.Fatalf("token %v, err %v", tok.Reveal(), err)
		}
	}
	if secrets.reads != 1 {
		t.Errorf("%d secret reads for 3 lookups within the TTL, want 1", secrets.reads)
	}
	now = now.Add(2 * time.Minute)
	if _, err := tokens.Token(context.Background(), name); err != nil || secrets.reads != 2 {
		t.Errorf("after the TTL: err %v, reads %d; want a fresh read", err, secrets.reads)
	}
	if _, err := tokens.Token(context.Background(), "projects/p/secrets/missing/versions/latest"); !errors.Is(err, ErrTokenUnavailable) {
		t.Errorf("missing secret: %v, want ErrTokenUnavailable", err)
	}
	if _, err := tokens.Token(context.Background(), "lease-a"); !errors.Is(err, ErrTokenUnavailable) {
		t.Errorf("plain reference without a local map: %v, want ErrTokenUnavailable", err)
	}
	if _, err := NewTokens(nil, nil, time.Minute, time.Now).Token(context.Background(), name); !errors.Is(err, ErrTokenUnavailable) {
		t.Errorf("Secret Manager reference without a client: %v, want ErrTokenUnavailable", err)
	}
}
