// Package auth decides who is calling a wadispatch API. Callers present an
// OpenID Connect ID token (a JWT) as a bearer credential; the server
// verifies its signature against the keys its issuer publishes, its
// audience, issuer and expiry, and takes the caller's name from the token,
// never from the request. On GKE the tokens are Google-signed: a workload's
// from its Workload Identity service account (the metadata server mints
// them), an operator's from gcloud. Locally the stack runs an issuer of its
// own and the same verification code checks its tokens.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/expiring"
)

// Identity is a verified caller.
type Identity struct {
	Issuer  string
	Subject string
	// Email is the service account's or person's address, when the token
	// carries a verified one.
	Email string
}

// Name is how policies and logs name the caller: the verified email, or
// the subject where the token has none.
func (i Identity) Name() string {
	if i.Email != "" {
		return i.Email
	}
	return i.Subject
}

// Issuer is a token issuer the server trusts.
type Issuer struct {
	// URL must equal the tokens' iss claim (https://accounts.google.com for
	// Google-signed ID tokens).
	URL string
	// KeysURL is where the issuer publishes its signing keys (JWKS), e.g.
	// https://www.googleapis.com/oauth2/v3/certs.
	KeysURL string
}

// ParseIssuers reads "ISSUER=KEYS_URL[,ISSUER=KEYS_URL...]".
func ParseIssuers(s string) ([]Issuer, error) {
	var out []Issuer
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		iss, keys, ok := strings.Cut(part, "=")
		if !ok || !strings.HasPrefix(keys, "http") || iss == "" {
			return nil, fmt.Errorf("issuer %q: want ISSUER=KEYS_URL", part)
		}
		out = append(out, Issuer{URL: iss, KeysURL: keys})
	}
	if len(out) == 0 {
		return nil, errors.New("no token issuer configured")
	}
	return out, nil
}

// ErrUnauthenticated wraps every reason a credential is refused.
var ErrUnauthenticated = errors.New("unauthenticated")

// Verifier verifies ID tokens for one audience from trusted issuers.
type Verifier struct {
	audience  string
	verifiers map[string]*oidc.IDTokenVerifier

	// verified remembers tokens whose signature was checked, until they
	// expire: a caller presents the same token on every call for up to an
	// hour, and checking an RSA signature per call was an eighth of the
	// recorder's CPU under load. Keyed by the token's SHA-256, so the
	// tokens themselves are not held.
	verified *expiring.Cache[Identity]
	now      func() time.Time
}

// NewVerifier trusts issuers for tokens addressed to audience. Keys are
// fetched when first needed and again when a token names a key not seen
// yet, so the issuers need not be reachable at start.
func NewVerifier(ctx context.Context, audience string, issuers []Issuer) (*Verifier, error) {
	if audience == "" {
		return nil, errors.New("auth: an audience is required")
	}
	v := &Verifier{audience: audience, verifiers: map[string]*oidc.IDTokenVerifier{},
		now: time.Now}
	v.verified = expiring.New[Identity](func() time.Time { return v.now() })
	for _, iss := range issuers {
		keys := oidc.NewRemoteKeySet(context.WithoutCancel(ctx), iss.KeysURL)
		v.verifiers[iss.URL] = oidc.NewVerifier(iss.URL, keys, &oidc.Config{ClientID: audience, Now: func() time.Time { return v.now() }})
	}
	return v, nil
}

// claims are the parts of a token the verifier reads besides the standard ones.
type claims struct {
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
}

// Verify checks a raw token and returns its caller. Errors wrap
// ErrUnauthenticated and never quote the token.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	key := sha256.Sum256([]byte(raw))
	return v.verified.Get(ctx, string(key[:]), func(ctx context.Context, _ string) (Identity, time.Duration, error) {
		id, expires, err := v.verify(ctx, raw)
		return id, expires.Sub(v.now()), err
	})
}

// verify checks the token's signature, audience, issuer and expiry, and
// returns its caller and when it expires.
func (v *Verifier) verify(ctx context.Context, raw string) (Identity, time.Time, error) {
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	ver, ok := v.verifiers[iss]
	if !ok {
		return Identity{}, time.Time{}, fmt.Errorf("%w: issuer %q is not trusted", ErrUnauthenticated, dispatch.Clip(iss, 100))
	}
	tok, err := ver.Verify(ctx, raw)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	var c claims
	if err := tok.Claims(&c); err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: claims: %v", ErrUnauthenticated, err)
	}
	id := Identity{Issuer: tok.Issuer, Subject: tok.Subject}
	if c.EmailVerified {
		id.Email = c.Email
	}
	return id, tok.Expiry, nil
}

// unverifiedIssuer reads the iss claim to pick the issuer's keys; the
// verifier then checks that claim with everything else.
func unverifiedIssuer(raw string) (string, error) {
	c, err := parseUnverified(raw)
	if err != nil {
		return "", err
	}
	return c.Issuer, nil
}

func parseUnverified(raw string) (jwt.Claims, error) {
	var c jwt.Claims
	tok, err := jwt.ParseSigned(raw, signatureAlgorithms)
	if err != nil {
		return c, errors.New("the credential is not a signed JWT")
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return c, errors.New("the credential's claims cannot be read")
	}
	return c, nil
}

// signatureAlgorithms are those Google and the local issuer sign with.
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}
