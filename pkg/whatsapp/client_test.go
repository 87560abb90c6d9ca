package whatsapp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func sender() Sender {
	return Sender{PhoneNumberID: "106540352242922", APIVersion: "v21.0", Token: NewToken(secret)}
}

func TestConnectionRefusedIsRetryableNetworkError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	c, err := NewClient(Config{BaseURL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(context.Background(), sender(), TextMessage("447700900123", "hi", false))
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonNetwork || !e.Retryable() || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want a retryable network error", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestCanceledBeforeSendingIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c, _ := NewClient(Config{BaseURL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Send(ctx, sender(), TextMessage("447700900123", "hi", false))
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonCanceled || !e.Retryable() {
		t.Fatalf("err = %v, want canceled", err)
	}
}

func TestInvalidSenderOrMessageIsNotSent(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls++ }))
	defer srv.Close()
	c, _ := NewClient(Config{BaseURL: srv.URL})
	bad := []struct {
		s Sender
		m Message
	}{
		{Sender{PhoneNumberID: "12a", APIVersion: "v21.0", Token: NewToken("t")}, TextMessage("447700900123", "hi", false)},
		{Sender{PhoneNumberID: "12", APIVersion: "21", Token: NewToken("t")}, TextMessage("447700900123", "hi", false)},
		{Sender{PhoneNumberID: "12", APIVersion: "v21.0"}, TextMessage("447700900123", "hi", false)},
		{sender(), TextMessage("447700900123", strings.Repeat("x", MaxTextBodyLength+1), false)},
		{sender(), Message{To: "447700900123", Type: "image"}},
	}
	for i, b := range bad {
		_, err := c.Send(context.Background(), b.s, b.m)
		var e *Error
		if !errors.As(err, &e) || e.Reason != ReasonInvalidMessage || e.Retryable() || !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("case %d: err = %v, want invalid_message", i, err)
		}
		if strings.Count(err.Error(), "whatsapp:") != 1 {
			t.Errorf("case %d: error %q", i, err)
		}
	}
	if calls != 0 {
		t.Fatalf("%d calls reached the server", calls)
	}
}

// A server that echoes the token back must not make it appear in the error.
func TestTokenEchoedByServerIsScrubbed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"message":"bad token ` + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") +
			`","type":"OAuthException","code":190,"error_data":{"details":"` + r.Header.Get("Authorization") + `"}}}`))
	}))
	defer srv.Close()
	c, _ := NewClient(Config{BaseURL: srv.URL + "/"})
	_, err := c.Send(context.Background(), sender(), TextMessage("447700900123", "hi", false))
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonAuth {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(e.Message, secret) || strings.Contains(e.Details, secret) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestNewClientRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"graph.facebook.com", "ftp://x", "http://", "://"} {
		if _, err := NewClient(Config{BaseURL: u}); err == nil {
			t.Errorf("base URL %q accepted", u)
		}
	}
}
