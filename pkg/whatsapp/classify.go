package whatsapp

import (
	"net/http"
	"sort"
	"time"
)

// Reason is a short, stable, machine-readable cause of a failed send, fit for a
// metric label or a FAILED result.
type Reason string

// Reasons for Meta error codes (see codeTable).
const (
	ReasonAuth             Reason = "auth"
	ReasonPermission       Reason = "permission"
	ReasonAppRateLimit     Reason = "app_rate_limit"
	ReasonThroughputLimit  Reason = "throughput_limit"
	ReasonPairRateLimit    Reason = "pair_rate_limit"
	ReasonSpamRateLimit    Reason = "spam_rate_limit"
	ReasonMarketingLimit   Reason = "marketing_limit"
	ReasonPolicy           Reason = "policy"
	ReasonServer           Reason = "server_error"
	ReasonInvalidParameter Reason = "invalid_parameter"
	ReasonUnsupportedType  Reason = "unsupported_message_type"
	ReasonUndeliverable    Reason = "undeliverable"
	ReasonReEngagement     Reason = "re_engagement_window"
	ReasonTemplate         Reason = "template"
	ReasonMedia            Reason = "media"
	ReasonAccount          Reason = "account"
	ReasonRegistration     Reason = "registration"
	ReasonExperiment       Reason = "experiment"
	ReasonUserOptedOut     Reason = "user_opted_out"
	ReasonFlow             Reason = "flow"
	// ReasonUnknownCode is a Meta error code missing from the table.
	ReasonUnknownCode Reason = "unknown_code"
)

// Reasons for failures that carry no Meta error code.
const (
	// ReasonNetwork: the request never reached Meta completely (DNS, connection
	// refused, TLS, write failure). Safe to retry.
	ReasonNetwork Reason = "network"
	// ReasonHTTPStatus: a non-2xx answer without a Meta error object (a proxy or
	// load balancer page).
	ReasonHTTPStatus Reason = "http_status"
	// ReasonOutcomeUnknown: the request was sent but no usable answer came back
	// (timeout or connection lost while waiting, a gateway timeout, or a 2xx
	// that cannot be parsed). Wraps ErrOutcomeUnknown.
	ReasonOutcomeUnknown Reason = "outcome_unknown"
	// ReasonCanceled: the caller's context ended before the request was sent.
	ReasonCanceled Reason = "canceled"
	// ReasonInvalidMessage: refused locally, never sent. Wraps ErrInvalidMessage.
	ReasonInvalidMessage Reason = "invalid_message"
)

type classification struct {
	reason    Reason
	retryable bool
	// httpStatus is the status Meta documents for the code. It is reference
	// (the simulator answers with it), never used to classify, because Meta
	// says to build handling on the code and mirrors disagree on statuses.
	httpStatus int
	title      string
}

// codeTable classifies every code on Meta's "Error codes" page for the Cloud
// API (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes,
// read through its mirrors by Kaleyra, 360dialog, Heltar and Niswey on
// 2026-11-25; docs/architecture.md lists the sources). Titles are Meta's.
//
// Retryable means the same request may succeed later without anyone changing
// anything: throttling, and Meta-side outages. Everything that needs a person
// (token, permissions, template, policy, account, billing) or that the
// recipient decided (undeliverable, opted out) is permanent. Codes 200-299 are a
// range and handled in lookup.
var codeTable = map[int]classification{
	// Authorization errors.
	0:   {ReasonAuth, false, http.StatusUnauthorized, "AuthException"},
	3:   {ReasonPermission, false, http.StatusInternalServerError, "API Method"},
	10:  {ReasonPermission, false, http.StatusForbidden, "Permission Denied"},
	190: {ReasonAuth, false, http.StatusUnauthorized, "Access token has expired"},

	// Throttling errors. 131048 (spam) and 133016 are not lifted by waiting
	// seconds, so they are not retryable.
	4:      {ReasonAppRateLimit, true, http.StatusBadRequest, "API Too Many Calls"},
	80007:  {ReasonAppRateLimit, true, http.StatusBadRequest, "Rate limit issues"},
	130429: {ReasonThroughputLimit, true, http.StatusBadRequest, "Rate limit hit"},
	131048: {ReasonSpamRateLimit, false, http.StatusBadRequest, "Spam rate limit hit"},
	131056: {ReasonPairRateLimit, true, http.StatusBadRequest, "(Business Account, Consumer Account) pair rate limit hit"},
	133016: {ReasonRegistration, false, http.StatusBadRequest, "Account register deregister rate limit exceeded"},

	// Integrity errors.
	368:    {ReasonPolicy, false, http.StatusForbidden, "Temporarily blocked for policies violations"},
	130497: {ReasonPolicy, false, http.StatusForbidden, "Business account is restricted from messaging users in this country"},
	131031: {ReasonPolicy, false, http.StatusForbidden, "Account has been locked"},

	// Other errors.
	1:      {ReasonServer, true, http.StatusBadRequest, "API Unknown"},
	2:      {ReasonServer, true, http.StatusServiceUnavailable, "API Service"},
	33:     {ReasonAccount, false, http.StatusBadRequest, "Parameter value is not valid"},
	100:    {ReasonInvalidParameter, false, http.StatusBadRequest, "Invalid parameter"},
	130472: {ReasonExperiment, false, http.StatusBadRequest, "User's number is part of an experiment"},
	131000: {ReasonServer, true, http.StatusInternalServerError, "Something went wrong"},
	131005: {ReasonPermission, false, http.StatusForbidden, "Access denied"},
	131008: {ReasonInvalidParameter, false, http.StatusBadRequest, "Required parameter is missing"},
	131009: {ReasonInvalidParameter, false, http.StatusBadRequest, "Parameter value is not valid"},
	131016: {ReasonServer, true, http.StatusInternalServerError, "Service unavailable"},
	131021: {ReasonInvalidParameter, false, http.StatusBadRequest, "Recipient cannot be sender"},
	131026: {ReasonUndeliverable, false, http.StatusBadRequest, "Message Undeliverable"},
	131037: {ReasonAccount, false, http.StatusBadRequest, "WhatsApp provided number needs display name approval before message can be sent"},
	131042: {ReasonAccount, false, http.StatusBadRequest, "Business eligibility payment issue"},
	131045: {ReasonAccount, false, http.StatusBadRequest, "Incorrect certificate"},
	131047: {ReasonReEngagement, false, http.StatusBadRequest, "Re-engagement message"},
	131049: {ReasonMarketingLimit, false, http.StatusBadRequest, "Meta chose not to deliver"},
	131050: {ReasonUserOptedOut, false, http.StatusBadRequest, "Unable to deliver the message: the recipient stopped marketing messages"},
	131051: {ReasonUnsupportedType, false, http.StatusBadRequest, "Unsupported message type"},
	131052: {ReasonMedia, false, http.StatusBadRequest, "Media download error"},
	131053: {ReasonMedia, false, http.StatusBadRequest, "Media upload error"},
	// Maintenance mode lasts minutes (for example a throughput upgrade).
	131057: {ReasonServer, true, http.StatusInternalServerError, "Account in maintenance mode"},
	132000: {ReasonTemplate, false, http.StatusBadRequest, "Template Param Count Mismatch"},
	132001: {ReasonTemplate, false, http.StatusNotFound, "Template does not exist"},
	132005: {ReasonTemplate, false, http.StatusBadRequest, "Template Hydrated Text Too Long"},
	132007: {ReasonTemplate, false, http.StatusBadRequest, "Template Format Character Policy Violated"},
	132012: {ReasonTemplate, false, http.StatusBadRequest, "Template Parameter Format Mismatch"},
	132015: {ReasonTemplate, false, http.StatusBadRequest, "Template is Paused"},
	132016: {ReasonTemplate, false, http.StatusBadRequest, "Template is Disabled"},
	132068: {ReasonFlow, false, http.StatusBadRequest, "Flow is blocked"},
	132069: {ReasonFlow, false, http.StatusBadRequest, "Flow is throttled"},
	133000: {ReasonRegistration, false, http.StatusInternalServerError, "Incomplete Deregistration"},
	133004: {ReasonServer, true, http.StatusServiceUnavailable, "Server Temporarily Unavailable"},
	133005: {ReasonRegistration, false, http.StatusBadRequest, "Two step verification PIN Mismatch"},
	133006: {ReasonRegistration, false, http.StatusBadRequest, "Phone number re-verification needed"},
	133008: {ReasonRegistration, false, http.StatusBadRequest, "Too Many two step verification PIN Guesses"},
	133009: {ReasonRegistration, false, http.StatusBadRequest, "Two step verification PIN Guessed Too Fast"},
	133010: {ReasonRegistration, false, http.StatusBadRequest, "Phone number Not Registered"},
	133015: {ReasonRegistration, false, http.StatusBadRequest, "Please wait a few minutes before attempting to register this phone number"},
	135000: {ReasonInvalidParameter, false, http.StatusBadRequest, "Generic user error"},
}

// Classify returns the reason and retryability of a Meta error code. A code
// missing from the table falls back on the HTTP status: 5xx and 429 are
// retryable, anything else is permanent, so an unknown code never loops.
func Classify(code, httpStatus int) (Reason, bool) {
	c, ok := lookup(code)
	if ok {
		return c.reason, c.retryable
	}
	return ReasonUnknownCode, httpStatus >= 500 || httpStatus == http.StatusTooManyRequests
}

// Documented returns Meta's title and documented HTTP status for an error
// code, and false for a code missing from the table.
func Documented(code int) (title string, httpStatus int, ok bool) {
	c, ok := lookup(code)
	return c.title, c.httpStatus, ok
}

func lookup(code int) (classification, bool) {
	if code >= 200 && code <= 299 {
		return classification{ReasonPermission, false, http.StatusForbidden, "API Permission"}, true
	}
	c, ok := codeTable[code]
	return c, ok
}

// backoffHint is how long to wait before retrying a retryable failure, used
// when Meta sends no Retry-After. Throughput is per second; the pair limit
// allows about one message every 6 s to one user; app rate limits are counted
// over minutes.
func backoffHint(r Reason) time.Duration {
	switch r {
	case ReasonThroughputLimit:
		return time.Second
	case ReasonPairRateLimit:
		return 6 * time.Second
	case ReasonAppRateLimit:
		return 30 * time.Second
	case ReasonServer, ReasonHTTPStatus, ReasonUnknownCode:
		return 2 * time.Second
	case ReasonNetwork, ReasonCanceled:
		return time.Second
	}
	return 0
}

// DocumentedCodes returns every code of the table in increasing order (the
// 200-299 permission range as 200 only).
func DocumentedCodes() []int {
	codes := make([]int, 0, len(codeTable)+1)
	for c := range codeTable {
		codes = append(codes, c)
	}
	codes = append(codes, 200)
	sort.Ints(codes)
	return codes
}
