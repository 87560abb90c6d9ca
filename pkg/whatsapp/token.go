package whatsapp

import (
	"fmt"
	"log/slog"
)

const redacted = "[REDACTED]"

// Token is a WhatsApp Cloud API access token. It prints as [REDACTED] through
// fmt (every verb), JSON, text marshalling and slog, so a Token (or a struct
// holding one) can be logged or wrapped in an error without leaking it.
//
// The secret sits behind a pointer so that even reflection-based printing of an
// unexported Token field (where fmt cannot call methods) shows an address, not
// the secret.
type Token struct {
	secret *string
}

// NewToken wraps a raw access token.
func NewToken(raw string) Token {
	return Token{secret: &raw}
}

// Reveal returns the raw token. Its only legitimate use is building the
// Authorization header.
func (t Token) Reveal() string {
	if t.secret == nil {
		return ""
	}
	return *t.secret
}

// IsZero reports whether the token is empty.
func (t Token) IsZero() bool { return t.Reveal() == "" }

// String implements fmt.Stringer.
func (t Token) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v).
func (t Token) GoString() string { return redacted }

// Format implements fmt.Formatter so that no verb (%s, %v, %q, %x, %d...) can
// reach the secret.
func (t Token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler.
func (t Token) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (used by some log encoders and
// for map keys).
func (t Token) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer.
func (t Token) LogValue() slog.Value { return slog.StringValue(redacted) }
