// Package whatsapp is a client for the WhatsApp Cloud API messages endpoint
// (POST {baseURL}/{api-version}/{phone-number-id}/messages).
//
// It sends text, template (with quick-reply button payloads) and interactive
// (reply buttons, list) messages, checked against Meta's limits first
// (interactive.go), parses Meta's success and error responses, and classifies
// every failure as retryable or permanent with a short machine-readable Reason
// (see classify.go for the table and its sources).
//
// The three outcomes a caller must tell apart:
//
//   - success: a Sent with the wamid;
//   - a classified failure: an *Error; Retryable() says whether the same call
//     may be made again, because Meta certainly did not accept it;
//   - an unknown outcome: errors.Is(err, ErrOutcomeUnknown). The request reached
//     Meta (or may have) but no usable answer came back, so the driver may have
//     got the message. The Cloud API has no idempotency key, so resending risks a
//     duplicate; the caller decides by policy.
//
// Access tokens travel as Token values, which print as [REDACTED] in every
// format, so they cannot leak through logs or error strings.
package whatsapp
