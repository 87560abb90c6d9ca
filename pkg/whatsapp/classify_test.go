package whatsapp

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		code, status int
		reason       Reason
		retryable    bool
	}{
		{0, 401, ReasonAuth, false},
		{190, 401, ReasonAuth, false},
		{10, 403, ReasonPermission, false},
		{200, 403, ReasonPermission, false},
		{250, 403, ReasonPermission, false},
		{299, 403, ReasonPermission, false},
		{4, 400, ReasonAppRateLimit, true},
		{80007, 400, ReasonAppRateLimit, true},
		{130429, 429, ReasonThroughputLimit, true},
		{130429, 400, ReasonThroughputLimit, true},
		{131056, 400, ReasonPairRateLimit, true},
		{131048, 400, ReasonSpamRateLimit, false},
		{131049, 400, ReasonMarketingLimit, false},
		{368, 403, ReasonPolicy, false},
		{1, 400, ReasonServer, true},
		{2, 503, ReasonServer, true},
		{131000, 500, ReasonServer, true},
		{131016, 500, ReasonServer, true},
		{133004, 503, ReasonServer, true},
		{100, 400, ReasonInvalidParameter, false},
		{131008, 400, ReasonInvalidParameter, false},
		{131009, 400, ReasonInvalidParameter, false},
		{131026, 400, ReasonUndeliverable, false},
		{131047, 400, ReasonReEngagement, false},
		{131051, 400, ReasonUnsupportedType, false},
		{132000, 400, ReasonTemplate, false},
		{132001, 404, ReasonTemplate, false},
		{132015, 400, ReasonTemplate, false},
		{133010, 400, ReasonRegistration, false},
		// Codes missing from the table fall back on the status.
		{999999, 500, ReasonUnknownCode, true},
		{999999, 429, ReasonUnknownCode, true},
		{999999, 400, ReasonUnknownCode, false},
	}
	for _, c := range cases {
		reason, retryable := Classify(c.code, c.status)
		if reason != c.reason || retryable != c.retryable {
			t.Errorf("Classify(%d, %d) = %s, %v; want %s, %v", c.code, c.status, reason, retryable, c.reason, c.retryable)
		}
	}
}

func TestEveryTableEntryIsComplete(t *testing.T) {
	for code, c := range codeTable {
		if c.reason == "" || c.title == "" || c.httpStatus < 400 || c.httpStatus > 599 {
			t.Errorf("code %d: incomplete entry %+v", code, c)
		}
		if code >= 200 && code <= 299 {
			t.Errorf("code %d is in the 200-299 range handled by lookup", code)
		}
	}
}

func TestParseSuccess(t *testing.T) {
	sent, err := parseResponse(200, "", []byte(`{"messaging_product":"whatsapp","contacts":[{"input":"+447700900123","wa_id":"447700900123"}],"messages":[{"id":"wamid.HBgLNDQ3NzAw","message_status":"accepted"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Sent{MessageID: "wamid.HBgLNDQ3NzAw", WaID: "447700900123", Input: "+447700900123", MessageStatus: "accepted"}
	if sent != want {
		t.Fatalf("got %+v, want %+v", sent, want)
	}
}

func TestParseUnusableSuccessIsOutcomeUnknown(t *testing.T) {
	for _, body := range []string{``, `<html>`, `{}`, `{"messages":[]}`, `{"messages":[{"id":""}]}`, `{"messages":"x"}`} {
		_, err := parseResponse(200, "", []byte(body))
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrOutcomeUnknown) || e.Retryable() || !e.OutcomeUnknown() {
			t.Errorf("body %q: err = %v, want a non-retryable ErrOutcomeUnknown", body, err)
		}
	}
}

func TestParseMetaError(t *testing.T) {
	body := `{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,"error_subcode":2494010,` +
		`"error_data":{"messaging_product":"whatsapp","details":"Message failed to send because more than 24 hours have passed"},"fbtrace_id":"AbC123"}}`
	_, err := parseResponse(400, "", []byte(body))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %T %v", err, err)
	}
	want := Error{HTTPStatus: 400, HasCode: true, Code: 131047, Subcode: 2494010, Type: "OAuthException",
		Message: "(#131047) Re-engagement message", Details: "Message failed to send because more than 24 hours have passed",
		FBTraceID: "AbC123", Reason: ReasonReEngagement}
	if *e != want {
		t.Fatalf("got %+v\nwant %+v", *e, want)
	}
	for _, part := range []string{"131047", "re_engagement_window", "AbC123", "24 hours"} {
		if !strings.Contains(e.Error(), part) {
			t.Errorf("Error() = %q lacks %q", e.Error(), part)
		}
	}
}

func TestParseThrottleHonoursRetryAfter(t *testing.T) {
	body := `{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"fbtrace_id":"x"}}`
	_, err := parseResponse(429, "3", []byte(body))
	var e *Error
	if !errors.As(err, &e) || !e.Retryable() || e.Reason != ReasonThroughputLimit || e.RetryAfter() != 3*time.Second {
		t.Fatalf("err = %+v", err)
	}
	_, err = parseResponse(400, "", []byte(strings.Replace(body, "130429", "131056", 2)))
	if !errors.As(err, &e) || e.RetryAfter() != 6*time.Second {
		t.Fatalf("pair limit: err = %+v, RetryAfter = %v", err, e.RetryAfter())
	}
}

func TestParseNonMetaErrorAnswers(t *testing.T) {
	cases := []struct {
		status    int
		body      string
		retryable bool
	}{
		{http.StatusBadGateway, "<html>bad gateway</html>", true},
		{http.StatusServiceUnavailable, "", true},
		{http.StatusTooManyRequests, "", true},
		{http.StatusNotFound, "404 page not found", false},
		{http.StatusBadRequest, `{"error":{"message":"no code"}}`, false},
		{http.StatusBadRequest, `{"error":null}`, false},
	}
	for _, c := range cases {
		_, err := parseResponse(c.status, "", []byte(c.body))
		var e *Error
		if !errors.As(err, &e) || e.HasCode || e.Reason != ReasonHTTPStatus || e.Retryable() != c.retryable || e.HTTPStatus != c.status {
			t.Errorf("%d %q: err = %+v, want http_status retryable=%v", c.status, c.body, err, c.retryable)
		}
	}
	_, err := parseResponse(http.StatusServiceUnavailable, "7", nil)
	if e := (*Error)(nil); !errors.As(err, &e) || e.RetryAfter() != 7*time.Second {
		t.Errorf("503 with Retry-After: %+v", err)
	}
	// The gateway forwarded the request and stopped waiting: Meta may have it.
	_, err = parseResponse(http.StatusGatewayTimeout, "", []byte("<html>504</html>"))
	if e := (*Error)(nil); !errors.As(err, &e) || !errors.Is(err, ErrOutcomeUnknown) || e.Retryable() || e.HTTPStatus != 504 {
		t.Errorf("504: %+v", err)
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add(200, "", []byte(`{"contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.x"}]}`))
	f.Add(400, "5", []byte(`{"error":{"message":"m","type":"OAuthException","code":100,"error_subcode":33,"error_data":{"details":"d"},"fbtrace_id":"f"}}`))
	f.Add(500, "", []byte(`<html>`))
	f.Add(200, "", []byte(`{"messages":[{"id":null}]}`))
	f.Add(401, "x", []byte(`{"error":{"code":"190"}}`))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		sent, err := parseResponse(status, retryAfter, body)
		if err == nil {
			if sent.MessageID == "" || status < 200 || status > 299 {
				t.Fatalf("status %d: success without a message id: %+v", status, sent)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error of type %T", err)
		}
		if e.Reason == "" || e.Error() == "" {
			t.Fatalf("unclassified error %#v", e)
		}
		if e.OutcomeUnknown() && e.Retryable() {
			t.Fatal("an unknown outcome must not be retryable")
		}
	})
}
