package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultBaseURL is the Graph API host.
const DefaultBaseURL = "https://graph.facebook.com"

const (
	defaultTimeout             = 15 * time.Second
	defaultMaxIdleConnsPerHost = 64
	// maxResponseBody bounds what is read from an answer; Meta's answers are a
	// few hundred bytes, and a larger body only matters as "unparseable".
	maxResponseBody = 64 << 10
)

// Config configures a Client. The zero value talks to graph.facebook.com.
type Config struct {
	// BaseURL replaces https://graph.facebook.com (the simulator's address in
	// tests and local runs). It may carry a path prefix.
	BaseURL string
	// Timeout bounds one Send, from connecting to reading the answer. Zero
	// means 15 s; negative means no timeout beyond the context's.
	Timeout time.Duration
	// HTTPClient replaces the client's own (e.g. one instrumented for
	// tracing). When nil, the client builds one whose Transport keeps
	// MaxIdleConnsPerHost connections to Meta open for reuse.
	HTTPClient *http.Client
	// MaxIdleConnsPerHost applies to the client's own Transport; zero means 64.
	// One sender sends to a single host, so the default of 2 would make most
	// concurrent sends open a new TLS connection.
	MaxIdleConnsPerHost int
}

// Client sends messages through the Cloud API. It is safe for concurrent use;
// share one per process so connections are reused.
type Client struct {
	base    string
	timeout time.Duration
	http    *http.Client
}

// Sender is who sends: the business phone number, the Graph API version and
// the access token allowed to send from that number.
type Sender struct {
	PhoneNumberID string
	// APIVersion is the Graph API version, e.g. "v21.0".
	APIVersion string
	Token      Token
}

// Sent is Meta's answer to an accepted message.
type Sent struct {
	// MessageID is the wamid, the key of every later status webhook.
	MessageID string
	// WaID is the recipient's WhatsApp ID (contacts[0].wa_id).
	WaID string
	// Input is the recipient as sent (contacts[0].input).
	Input string
	// MessageStatus is set for template messages ("accepted",
	// "held_for_quality_assessment", "paused").
	MessageStatus string
}

// NewClient builds a Client.
func NewClient(cfg Config) (*Client, error) {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("whatsapp: base URL %q must be an absolute http(s) URL", base)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = defaultTimeout
	}
	hc := cfg.HTTPClient
	if hc == nil {
		idle := cfg.MaxIdleConnsPerHost
		if idle <= 0 {
			idle = defaultMaxIdleConnsPerHost
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = idle
		t.MaxIdleConnsPerHost = idle
		hc = &http.Client{Transport: t}
	}
	return &Client{base: strings.TrimRight(base, "/"), timeout: timeout, http: hc}, nil
}

var (
	apiVersion    = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)
	phoneNumberID = regexp.MustCompile(`^[0-9]+$`)
)

func (s Sender) validate() error {
	if !phoneNumberID.MatchString(s.PhoneNumberID) {
		return fmt.Errorf("%w: phone number ID %q is not numeric", ErrInvalidMessage, s.PhoneNumberID)
	}
	if !apiVersion.MatchString(s.APIVersion) {
		return fmt.Errorf("%w: API version %q is not of the form v21.0", ErrInvalidMessage, s.APIVersion)
	}
	if s.Token.IsZero() {
		return fmt.Errorf("%w: empty access token", ErrInvalidMessage)
	}
	return nil
}

// Send sends one message. Every failure is an *Error (use errors.As); see the
// package documentation for the three outcomes.
func (c *Client) Send(ctx context.Context, s Sender, m Message) (Sent, error) {
	if err := s.validate(); err != nil {
		return Sent{}, transportError(0, ReasonInvalidMessage, false, err)
	}
	if err := m.Validate(); err != nil {
		return Sent{}, transportError(0, ReasonInvalidMessage, false, err)
	}
	body, err := json.Marshal(m.request())
	if err != nil {
		return Sent{}, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: encode: %v", ErrInvalidMessage, err))
	}

	parent := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	// Whether the request was fully written decides between "never reached
	// Meta, safe to retry" and "may have been sent".
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
	})
	endpoint := c.base + "/" + s.APIVersion + "/" + s.PhoneNumberID + "/messages"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return Sent{}, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: build request: %v", ErrInvalidMessage, err))
	}
	req.Header.Set("Authorization", "Bearer "+s.Token.Reveal())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	resp, err := c.http.Do(req)
	if err != nil {
		return Sent{}, requestFailure(parent, written.Load(), err)
	}
	defer func() {
		// Draining lets the connection go back to the pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		_ = resp.Body.Close()
	}()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return Sent{}, transportError(resp.StatusCode, ReasonOutcomeUnknown, false, fmt.Errorf("read success response: %w", err))
		}
		return Sent{}, statusError(resp.StatusCode, resp.Header.Get("Retry-After"), fmt.Errorf("read error response: %w", err))
	}
	sent, err := parseResponse(resp.StatusCode, resp.Header.Get("Retry-After"), data)
	if err != nil {
		scrub(err, s.Token.Reveal())
	}
	return sent, err
}

// CloseIdleConnections closes the pooled connections, for a clean shutdown.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// requestFailure classifies an error from http.Client.Do.
func requestFailure(parent context.Context, written bool, err error) *Error {
	if written {
		// Meta may have accepted the message before the answer was lost.
		return transportError(0, ReasonOutcomeUnknown, false, err)
	}
	if parent.Err() != nil {
		return transportError(0, ReasonCanceled, true, err)
	}
	return transportError(0, ReasonNetwork, true, err)
}

// statusError classifies a non-2xx answer without a Meta error object: an
// intermediary's answer. A gateway timeout means the intermediary forwarded the
// request and gave up waiting, so Meta may have accepted it; other 5xx, 429 and
// 408 say the request was not served.
func statusError(status int, retryAfter string, cause error) *Error {
	if status == http.StatusGatewayTimeout {
		return transportError(status, ReasonOutcomeUnknown, false, cause)
	}
	retryable := status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
	e := transportError(status, ReasonHTTPStatus, retryable, cause)
	if d := parseRetryAfter(retryAfter); d > 0 {
		e.retryAfter = d
	}
	return e
}

// scrub removes the token from Meta's free-text fields, in case an answer ever
// echoes it.
func scrub(err error, token string) {
	var e *Error
	if token == "" || !errors.As(err, &e) {
		return
	}
	e.Message = strings.ReplaceAll(e.Message, token, redacted)
	e.Details = strings.ReplaceAll(e.Details, token, redacted)
}

type successBody struct {
	Contacts []struct {
		Input string `json:"input"`
		WaID  string `json:"wa_id"`
	} `json:"contacts"`
	Messages []struct {
		ID            string `json:"id"`
		MessageStatus string `json:"message_status"`
	} `json:"messages"`
}

type errorBody struct {
	Message   string `json:"message"`
	Type      string `json:"type"`
	Code      *int   `json:"code"`
	Subcode   int    `json:"error_subcode"`
	FBTraceID string `json:"fbtrace_id"`
	Data      struct {
		Details string `json:"details"`
	} `json:"error_data"`
}

// parseResponse turns a complete answer into a Sent or an *Error. It never
// panics, whatever the body (see FuzzParseResponse).
func parseResponse(status int, retryAfter string, body []byte) (Sent, error) {
	if status >= 200 && status < 300 {
		var ok successBody
		if err := json.Unmarshal(body, &ok); err != nil {
			return Sent{}, transportError(status, ReasonOutcomeUnknown, false, fmt.Errorf("unparseable success body: %w", err))
		}
		if len(ok.Messages) == 0 || ok.Messages[0].ID == "" {
			return Sent{}, transportError(status, ReasonOutcomeUnknown, false, errors.New("success body without messages[0].id"))
		}
		sent := Sent{MessageID: ok.Messages[0].ID, MessageStatus: ok.Messages[0].MessageStatus}
		if len(ok.Contacts) > 0 {
			sent.WaID, sent.Input = ok.Contacts[0].WaID, ok.Contacts[0].Input
		}
		return sent, nil
	}
	var e struct {
		Error *errorBody `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == nil {
		cause := errors.New("answer without a Meta error object")
		if err != nil {
			cause = fmt.Errorf("unparseable error body: %w", err)
		}
		return Sent{}, statusError(status, retryAfter, cause)
	}
	return Sent{}, metaError(status, *e.Error.Code, *e.Error, parseRetryAfter(retryAfter))
}

func parseRetryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs <= 0 || secs > 3600 {
		return 0
	}
	return time.Duration(secs) * time.Second
}
