package sending

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadLocalTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(file, []byte(`{"lease-a":"tok-a"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		inline, file string
		want         string
		wantErr      bool
	}{
		"inline":  {inline: `{"lease-a":"tok-a"}`, want: "tok-a"},
		"file":    {file: file, want: "tok-a"},
		"neither": {},
		"both":    {inline: `{}`, file: file, wantErr: true},
		"garbage": {inline: `{"lease-a": tok-secret}`, wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := LoadLocalTokens(tc.inline, tc.file)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "tok-secret") {
				t.Errorf("error quotes the token: %v", err)
			}
			if tc.want != "" && got["lease-a"].Reveal() != tc.want {
				t.Errorf("lease-a = %q", got["lease-a"].Reveal())
			}
		})
	}
}

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
