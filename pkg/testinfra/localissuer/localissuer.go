// Package localissuer is an OpenID Connect token issuer for local runs and
// tests: it signs ID tokens with a key made at start and publishes the key
// as a JWKS, so the services verify local credentials with the same code
// that verifies Google-signed ones on GKE. It is test infrastructure: no
// service links it.
package localissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer signs tokens and serves its keys at URL + "/keys".
type Issuer struct {
	// URL is the tokens' iss claim and where the keys are served.
	URL string

	signer jose.Signer
	keys   []byte
	srv    *http.Server
}

// Start listens on addr ("127.0.0.1:0" picks a port) and serves the keys
// until Close.
func Start(addr string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	const kid = "local-1"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	keys, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}}})
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("issuer listen on %s: %w", addr, err)
	}
	iss := &Issuer{URL: "http://" + ln.Addr().String(), signer: signer, keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(iss.keys)
	})
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

// KeysURL is where the issuer's JWKS is served.
func (i *Issuer) KeysURL() string { return i.URL + "/keys" }

// Trust is the issuer in the ISSUER=KEYS_URL form services are configured with.
func (i *Issuer) Trust() string { return i.URL + "=" + i.KeysURL() }

// Mint signs an ID token for a caller named email, addressed to audience,
// valid for ttl, shaped like the ones Google's metadata server mints.
func (i *Issuer) Mint(email, audience string, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := struct {
		jwt.Claims
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
	}{
		Claims: jwt.Claims{
			Issuer: i.URL, Subject: email, Audience: jwt.Audience{audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(ttl)),
		},
		Email: email, EmailVerified: true,
	}
	tok, err := jwt.Signed(i.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return tok, nil
}

// Close stops serving the keys.
func (i *Issuer) Close() error { return i.srv.Close() }
