package whatsappsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
)

// Options configures a Simulator. Start from DefaultOptions, which holds
// Meta's limits; a zero limit disables it.
type Options struct {
	// PhoneNumbers maps each business phone number ID to the one access token
	// accepted for it.
	PhoneNumbers map[string]string
	// Throughput is the messages per second accepted per phone number (Meta:
	// 80 by default); beyond it calls fail with 130429. 0 disables.
	Throughput int
	// PairInterval is the minimum spacing of messages from one phone number to
	// one recipient (Meta: about 6 s), after PairBurst messages; beyond it
	// calls fail with 131056. 0 disables.
	PairInterval time.Duration
	PairBurst    int
	// ThrottleStatus is the HTTP status of 130429 and 131056 answers. Meta's
	// error-code table documents 400 for both, BSP mirrors (and the project
	// reference) report 429; clients must classify on the code either way.
	ThrottleStatus int
	// EnforceWindow rejects free-form text with 131047 unless the recipient
	// sent the business a message within Window (Meta: 24 h). Templates are
	// always allowed. RecordInbound opens the window.
	EnforceWindow bool
	Window        time.Duration
	// Templates, when set, is the list of approved templates: unknown
	// name/language fails with 132001, a parameter mismatch with 132000. When
	// empty, any well-formed template is accepted.
	Templates []TemplateSpec
	// MediaURLTTL is how long media download URLs are valid; zero is
	// Meta's 5 minutes (media.go).
	MediaURLTTL time.Duration
	// TemplateCategories is the category of templates by name (marketing,
	// utility, authentication), which prices their messages; a template
	// not named is DefaultTemplateCategory. SetTemplateCategory changes it.
	TemplateCategories map[string]string
	// Latency delays every Graph API answer (see also latency faults).
	Latency time.Duration
	// Faults are installed at start, as if added through AddFault.
	Faults []Fault
	// Seed makes probabilistic faults reproducible.
	Seed uint64
	// Webhook configures status and inbound-message webhooks.
	Webhook WebhookOptions
	// Logger receives the simulator's logs; nil discards them.
	Logger logrus.FieldLogger
}

// WebhookOptions configures the webhooks the simulator sends, as Meta does, to
// the business's endpoint.
type WebhookOptions struct {
	// URL receives the webhooks; empty disables them.
	URL string
	// AppSecret signs each body: X-Hub-Signature-256: sha256=<hex HMAC-SHA256>.
	AppSecret string
	// WABAID is entry[].id; DisplayPhoneNumber goes in value.metadata.
	WABAID             string
	DisplayPhoneNumber string
	// NoStatuses turns status webhooks off (inbound messages still go out).
	NoStatuses bool
	// Delays before sent, then between sent and delivered, delivered and read.
	SentDelay, DeliveredDelay, ReadDelay time.Duration
	// NoRead stops after delivered, as for a recipient with read receipts off.
	NoRead bool
	// Duplicate posts every status webhook twice.
	Duplicate bool
	// Reorder posts a message's statuses in reverse order (read before
	// delivered before sent).
	Reorder bool
	// MaxAttempts bounds the deliveries of one webhook; a non-2xx answer or a
	// transport error is retried after RetryBackoff, doubled each time up to
	// maxRetryBackoff. Meta keeps retrying for days; the default (8 attempts,
	// about 11 s) covers a receiver restarting in a local run.
	MaxAttempts  int
	RetryBackoff time.Duration
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
}

// TemplateSpec is an approved template: its name, language code and the names
// of its body parameters ("1", "2"... for positional templates).
type TemplateSpec struct {
	Name           string   `json:"name"`
	Language       string   `json:"language"`
	BodyParameters []string `json:"body_parameters"`
	// BusinessAccountID lists the template in that account's
	// message_templates (templates.go); Status is APPROVED when empty.
	BusinessAccountID string `json:"business_account_id,omitempty"`
	Status            string `json:"status,omitempty"`
}

// DefaultOptions returns Meta's limits and prompt status webhooks.
func DefaultOptions() Options {
	return Options{
		Throughput:     80,
		PairInterval:   6 * time.Second,
		PairBurst:      1,
		ThrottleStatus: http.StatusTooManyRequests,
		EnforceWindow:  true,
		Window:         24 * time.Hour,
		Webhook: WebhookOptions{
			WABAID:             "102290129340398",
			DisplayPhoneNumber: "15550783881",
			SentDelay:          20 * time.Millisecond,
			DeliveredDelay:     50 * time.Millisecond,
			ReadDelay:          100 * time.Millisecond,
			MaxAttempts:        8,
			RetryBackoff:       100 * time.Millisecond,
			Timeout:            5 * time.Second,
		},
	}
}

// FaultKind selects what an injected fault does to a call.
type FaultKind string

// Fault kinds.
const (
	// FaultError answers with Meta's error object for Code (HTTPStatus
	// defaults to the status Meta documents for the code). Code 0 is Meta's
	// AuthException.
	FaultError FaultKind = "error"
	// FaultHTTPStatus answers HTTPStatus (default 502) with a non-JSON body,
	// as a proxy in front of the API would.
	FaultHTTPStatus FaultKind = "http_status"
	// FaultLatency delays the answer by Latency; the call then proceeds.
	FaultLatency FaultKind = "latency"
	// FaultDrop closes the connection without answering; nothing is accepted.
	FaultDrop FaultKind = "drop"
	// FaultDropAfterAccept accepts the message (recorded, webhooks sent) and
	// then closes the connection without answering: the lost-answer case.
	FaultDropAfterAccept FaultKind = "drop_after_accept"
	// FaultFailLater accepts the message and answers 200, then sends a sent
	// and a failed status webhook with Code (default 131026) instead of
	// delivered and read.
	FaultFailLater FaultKind = "fail_later"
	// FaultSlowAnswer accepts the message (recorded, webhooks scheduled) and
	// answers 200 only after Latency: the status webhooks overtake the
	// answer, and so the sender's result, as they often do with Meta.
	FaultSlowAnswer FaultKind = "slow_answer"
)

// Fault is an injected failure. It applies to the next Times matching calls
// (0: every matching call until cleared), each with Probability (0 means 1),
// optionally only for one phone number ID and/or recipient. Error-like faults
// apply to calls that pass authentication, validation and the limits, so the
// call they replace would otherwise have been accepted.
type Fault struct {
	Kind          FaultKind `json:"kind"`
	Code          int       `json:"code,omitempty"`
	HTTPStatus    int       `json:"http_status,omitempty"`
	Details       string    `json:"details,omitempty"`
	Latency       Duration  `json:"latency,omitempty"`
	Times         int       `json:"times,omitempty"`
	Probability   float64   `json:"probability,omitempty"`
	PhoneNumberID string    `json:"phone_number_id,omitempty"`
	To            string    `json:"to,omitempty"`
}

func (f Fault) validate() error {
	switch f.Kind {
	case FaultError:
		if f.Code < 0 || (f.HTTPStatus != 0 && (f.HTTPStatus < 400 || f.HTTPStatus > 599)) {
			return fmt.Errorf("fault %q: code %d / http_status %d", f.Kind, f.Code, f.HTTPStatus)
		}
	case FaultHTTPStatus:
		if f.HTTPStatus != 0 && (f.HTTPStatus < 400 || f.HTTPStatus > 599) {
			return fmt.Errorf("fault %q: http_status %d is not an error status", f.Kind, f.HTTPStatus)
		}
	case FaultLatency, FaultSlowAnswer:
		if f.Latency <= 0 {
			return fmt.Errorf("fault %q needs a positive latency", f.Kind)
		}
	case FaultDrop, FaultDropAfterAccept, FaultFailLater:
	default:
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if f.Times < 0 || f.Probability < 0 || f.Probability > 1 {
		return fmt.Errorf("fault %q: times must be >= 0 and probability in [0, 1]", f.Kind)
	}
	return nil
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("250ms").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "250ms" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string like \"250ms\" or nanoseconds: %w", err)
	}
	*d = Duration(n)
	return nil
}
