package whatsapp

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrOutcomeUnknown is wrapped by an *Error when the request was (or may have
// been) delivered to Meta but no usable answer came back: a timeout or a
// dropped connection after the body was written, an intermediary's 504, or a
// 2xx answer that cannot be parsed. The driver may have received the message; the Cloud API has no
// idempotency key, so sending again risks a duplicate.
var ErrOutcomeUnknown = errors.New("whatsapp: outcome unknown, the message may have been sent")

// Error is every failure Send returns. For an answer from Meta, HasCode is true
// and the Meta fields are filled; for a transport failure only HTTPStatus (if
// any answer came), Reason and the wrapped cause are set.
//
// Error strings hold Meta's message and details, never the request headers or
// the token.
type Error struct {
	// HTTPStatus is the response status, 0 when no response was received.
	HTTPStatus int
	// HasCode reports whether Meta returned an error object (Code 0 is a real
	// Meta code, AuthException).
	HasCode bool
	// Code is Meta's error code, the field to build handling on.
	Code int
	// Subcode is Meta's error_subcode (deprecated by Meta, often absent).
	Subcode int
	// Type is Meta's error type, e.g. OAuthException.
	Type string
	// Message is Meta's message, e.g. "(#131047) Re-engagement message".
	Message string
	// Details is Meta's error_data.details.
	Details string
	// FBTraceID identifies the request for Meta support.
	FBTraceID string
	// Reason is the short classification (see classify.go).
	Reason Reason

	retryable  bool
	retryAfter time.Duration
	cause      error
}

// Retryable reports whether the same request may be sent again later: Meta
// certainly did not accept it and the cause is expected to pass (throttling,
// Meta-side outage, network before the request was sent). It is false for an
// unknown outcome: see ErrOutcomeUnknown.
func (e *Error) Retryable() bool { return e.retryable }

// RetryAfter is the suggested wait before retrying: Meta's Retry-After header
// when present, otherwise a hint by reason. Zero when not retryable.
func (e *Error) RetryAfter() time.Duration {
	if !e.retryable {
		return 0
	}
	return e.retryAfter
}

// OutcomeUnknown reports whether the message may have been sent.
func (e *Error) OutcomeUnknown() bool { return e.Reason == ReasonOutcomeUnknown }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("whatsapp: ")
	if e.HasCode {
		if e.Message != "" {
			b.WriteString(e.Message)
		} else {
			fmt.Fprintf(&b, "error code %d", e.Code)
		}
		if e.Details != "" {
			b.WriteString(": ")
			b.WriteString(e.Details)
		}
		fmt.Fprintf(&b, " (code %d", e.Code)
		if e.Subcode != 0 {
			fmt.Fprintf(&b, ", subcode %d", e.Subcode)
		}
		fmt.Fprintf(&b, ", reason %s, http %d", e.Reason, e.HTTPStatus)
		if e.FBTraceID != "" {
			fmt.Fprintf(&b, ", fbtrace_id %s", e.FBTraceID)
		}
		b.WriteString(")")
		return b.String()
	}
	if e.Reason == ReasonInvalidMessage && e.cause != nil {
		// The cause already reads "whatsapp: invalid message: ...".
		return e.cause.Error()
	}
	b.WriteString(string(e.Reason))
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, " (http %d)", e.HTTPStatus)
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Unwrap exposes the transport cause and the sentinels (ErrOutcomeUnknown,
// ErrInvalidMessage) to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	if e.Reason == ReasonOutcomeUnknown {
		errs = append(errs, ErrOutcomeUnknown)
	}
	return errs
}

// metaError builds the *Error for a Meta error object.
func metaError(status, code int, body errorBody, retryAfter time.Duration) *Error {
	reason, retryable := Classify(code, status)
	if retryAfter == 0 {
		retryAfter = backoffHint(reason)
	}
	return &Error{
		HTTPStatus: status,
		HasCode:    true,
		Code:       code,
		Subcode:    body.Subcode,
		Type:       body.Type,
		Message:    body.Message,
		Details:    body.Data.Details,
		FBTraceID:  body.FBTraceID,
		Reason:     reason,
		retryable:  retryable,
		retryAfter: retryAfter,
	}
}

// transportError builds the *Error for a failure without a Meta error object.
func transportError(status int, reason Reason, retryable bool, cause error) *Error {
	return &Error{
		HTTPStatus: status,
		Reason:     reason,
		retryable:  retryable,
		retryAfter: backoffHint(reason),
		cause:      cause,
	}
}
