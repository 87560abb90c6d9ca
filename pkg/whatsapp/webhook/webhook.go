// Package webhook reads the WhatsApp Cloud API's webhooks: it checks Meta's
// X-Hub-Signature-256 and the verification handshake's token, and turns the
// `messages` field's payload into the pipeline's contracts, StatusEvent and
// InboundMessage. It holds no I/O, so every rule is unit- and fuzz-tested.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// SignatureHeader carries Meta's signature of a webhook body.
const SignatureHeader = "X-Hub-Signature-256"

// Reasons a signature is refused, fit for a metric label.
const (
	ReasonMissing   = "missing"
	ReasonMalformed = "malformed"
	ReasonMismatch  = "mismatch"
)

// SignatureError says why a body's signature was refused.
type SignatureError struct{ Reason string }

func (e *SignatureError) Error() string { return "webhook signature " + e.Reason }

// VerifySignature checks header ("sha256=<hex HMAC-SHA256 of body>") against
// body and the app secret, in constant time. A *SignatureError says why not.
func VerifySignature(appSecret, body []byte, header string) error {
	if header == "" {
		return &SignatureError{Reason: ReasonMissing}
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return &SignatureError{Reason: ReasonMalformed}
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return &SignatureError{Reason: ReasonMalformed}
	}
	mac := hmac.New(sha256.New, appSecret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return &SignatureError{Reason: ReasonMismatch}
	}
	return nil
}

// VerifyToken reports whether the handshake's hub.verify_token equals the
// configured one, in constant time. An empty configured token matches
// nothing, so an unconfigured endpoint cannot be subscribed.
func VerifyToken(configured, got string) bool {
	if configured == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(configured), []byte(got)) == 1
}

// Payload is what one webhook body says, in the pipeline's terms.
type Payload struct {
	Statuses []*wadispatchv1.StatusEvent
	Messages []*wadispatchv1.InboundMessage
	// Preferences are the user_preferences field's choices (stop or
	// resume marketing messages), without their leases.
	Preferences []*wadispatchv1.DriverPreference
	// Templates are the message_template_status_update and
	// template_category_update fields' changes, with their business
	// account and without its leases.
	Templates []*wadispatchv1.TemplateEvent
	// Skipped counts parts left out, by reason (other fields, statuses we
	// do not track, entries without an id): nothing to publish, but worth
	// a count.
	Skipped map[string]int
}

func (p *Payload) skip(reason string) {
	if p.Skipped == nil {
		p.Skipped = map[string]int{}
	}
	p.Skipped[reason]++
}

// Skip reasons.
const (
	SkipOtherField   = "other_field"
	SkipOtherStatus  = "other_status"
	SkipNoID         = "no_id"
	SkipBadSender    = "bad_sender"
	SkipBadTimestamp = "bad_timestamp"
	// SkipMalformed: a part whose own fields are not Meta's shape.
	SkipMalformed = "malformed"
	// SkipOtherPreference: a user preference other than stopping or
	// resuming marketing messages.
	SkipOtherPreference = "other_preference"
)

// Sources of a DriverPreference.
const (
	SourceUserPreferences = "user_preferences"
	SourceKeyword         = "keyword"
)

const (
	// maxIDLength bounds a wamid: real ones are about 60 characters.
	maxIDLength     = 512
	businessAccount = "whatsapp_business_account"
)

// Meta's shape (developers.facebook.com/docs/whatsapp/cloud-api/webhooks).
// Each level below the body is decoded part by part (json.RawMessage), so
// a part with a field of an unexpected type is skipped alone and never
// takes its siblings with it.
type (
	body struct {
		Object string            `json:"object"`
		Entry  []json.RawMessage `json:"entry"`
	}
	entry struct {
		// ID is the business account's id; Time when Meta sent it (Unix
		// seconds, a number). Both are decoded only by the changes that
		// use them, so that one of another type loses no status.
		ID      json.RawMessage   `json:"id"`
		Time    json.RawMessage   `json:"time"`
		Changes []json.RawMessage `json:"changes"`
	}
	change struct {
		Field string          `json:"field"`
		Value json.RawMessage `json:"value"`
	}
	value struct {
		Metadata    json.RawMessage   `json:"metadata"`
		Contacts    []json.RawMessage `json:"contacts"`
		Messages    []json.RawMessage `json:"messages"`
		Statuses    []json.RawMessage `json:"statuses"`
		Preferences []json.RawMessage `json:"user_preferences"`
	}
	// contact is a value.contacts entry: the WhatsApp id and, since
	// business-scoped user ids, the user's BSUID.
	contact struct {
		WaID   string `json:"wa_id"`
		UserID string `json:"user_id"`
	}
	metadata struct {
		PhoneNumberID string `json:"phone_number_id"`
	}
	status struct {
		ID          string     `json:"id"`
		Status      string     `json:"status"`
		Timestamp   string     `json:"timestamp"`
		RecipientID string     `json:"recipient_id"`
		Errors      []apiError `json:"errors"`
		// CallbackData is the send's biz_opaque_callback_data, echoed.
		CallbackData string `json:"biz_opaque_callback_data"`
		// Pricing is decoded on its own: one of an unexpected shape loses
		// the pricing, never the status.
		Pricing json.RawMessage `json:"pricing"`
	}
	// pricing is statuses[].pricing; its deprecated `billable` is not read.
	pricing struct {
		PricingModel string `json:"pricing_model"`
		Category     string `json:"category"`
		Type         string `json:"type"`
	}
	apiError struct {
		Code      int    `json:"code"`
		Title     string `json:"title"`
		Message   string `json:"message"`
		ErrorData struct {
			Details string `json:"details"`
		} `json:"error_data"`
	}
)

var statuses = map[string]wadispatchv1.MessageStatus{
	"sent":      wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT,
	"delivered": wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED,
	"read":      wadispatchv1.MessageStatus_MESSAGE_STATUS_READ,
	"failed":    wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED,
}

// Parse reads a webhook body. An error means the body is not a WhatsApp
// Business Account notification at all; parts of a valid one that carry
// nothing for the pipeline are counted in Skipped.
func Parse(data []byte) (Payload, error) {
	var b body
	if err := json.Unmarshal(data, &b); err != nil {
		return Payload{}, fmt.Errorf("webhook body: %w", err)
	}
	if b.Object != businessAccount {
		return Payload{}, fmt.Errorf("webhook object %q, want %q", dispatch.Clip(b.Object, 40), businessAccount)
	}
	var p Payload
	for _, raw := range b.Entry {
		var e entry
		if json.Unmarshal(raw, &e) != nil {
			p.skip(SkipMalformed)
			continue
		}
		for _, raw := range e.Changes {
			p.change(raw, e)
		}
	}
	return p, nil
}

// change reads one entry's change: its statuses and messages, each on its
// own.
func (p *Payload) change(raw json.RawMessage, e entry) {
	var c change
	if json.Unmarshal(raw, &c) != nil {
		p.skip(SkipMalformed)
		return
	}
	if c.Field == FieldTemplateStatus || c.Field == FieldTemplateCategory {
		if ev, reason := templateEvent(c, e); ev != nil {
			p.Templates = append(p.Templates, ev)
		} else {
			p.skip(reason)
		}
		return
	}
	if c.Field != "messages" && c.Field != "user_preferences" {
		p.skip(SkipOtherField)
		return
	}
	var v value
	if json.Unmarshal(c.Value, &v) != nil {
		p.skip(SkipMalformed)
		return
	}
	var md metadata
	if len(v.Metadata) > 0 && json.Unmarshal(v.Metadata, &md) != nil {
		md = metadata{}
	}
	phoneID := md.PhoneNumberID
	for _, raw := range v.Statuses {
		var s status
		if json.Unmarshal(raw, &s) != nil {
			p.skip(SkipMalformed)
			continue
		}
		if ev, reason := statusEvent(s, phoneID); ev != nil {
			p.Statuses = append(p.Statuses, ev)
		} else {
			p.skip(reason)
		}
	}
	bsuids := map[string]string{}
	for _, raw := range v.Contacts {
		var c contact
		if json.Unmarshal(raw, &c) == nil && validID(c.UserID) {
			bsuids[c.WaID] = c.UserID
		}
	}
	for _, raw := range v.Messages {
		if in, reason := inbound(raw, phoneID); in != nil {
			in.UserId = bsuids[strings.TrimPrefix(in.GetFrom(), "+")]
			p.Messages = append(p.Messages, in)
		} else {
			p.skip(reason)
		}
	}
	for _, raw := range v.Preferences {
		if pref, reason := preference(raw, phoneID); pref != nil {
			p.Preferences = append(p.Preferences, pref)
		} else {
			p.skip(reason)
		}
	}
}

func statusEvent(s status, phoneID string) (*wadispatchv1.StatusEvent, string) {
	st, ok := statuses[s.Status]
	if !ok {
		return nil, SkipOtherStatus
	}
	if !validID(s.ID) {
		return nil, SkipNoID
	}
	at, err := unixTime(s.Timestamp)
	if err != nil {
		return nil, SkipBadTimestamp
	}
	ev := &wadispatchv1.StatusEvent{
		WhatsappMessageId: s.ID,
		Status:            st,
		Timestamp:         at,
		RecipientId:       s.RecipientID,
		PhoneNumberId:     phoneID,
	}
	// Longer than any send may carry: not ours. The status stands without
	// it. (JSON decoding has made it valid UTF-8, as protobuf needs.)
	if len(s.CallbackData) <= dispatch.MaxCallbackLength {
		ev.BizOpaqueCallbackData = s.CallbackData
	}
	ev.Pricing = statusPricing(s.Pricing)
	for _, e := range s.Errors {
		reason, retryable := whatsapp.Classify(e.Code, 0)
		msg := e.Message
		if msg == "" {
			msg = e.Title
		}
		ev.Errors = append(ev.Errors, &wadispatchv1.WhatsAppError{
			Code: int32(e.Code), Message: msg, Details: e.ErrorData.Details, Reason: string(reason), Retryable: retryable,
		})
	}
	return ev, ""
}

// statusPricing reads a status's pricing, nil when it has none or none of
// Meta's shape. Its values become Firestore fields, document ids and metric
// labels, so each is a short printable word or "unknown"; a pricing with
// no category says nothing to count.
func statusPricing(raw json.RawMessage) *wadispatchv1.StatusPricing {
	var p pricing
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil || p.Category == "" {
		return nil
	}
	return &wadispatchv1.StatusPricing{
		PricingModel: pricingWord(p.PricingModel),
		Category:     pricingWord(p.Category),
		Type:         pricingWord(p.Type),
	}
}

// maxPricingWordLength bounds a pricing value: Meta's are at most about 30
// characters (authentication_international).
const maxPricingWordLength = 40

// pricingWord keeps a value of letters, digits and '_', as all of Meta's
// are ("PMP", "utility", "free_customer_service"), and makes anything
// else, or nothing, "unknown": such a value is safe unquoted in a Firestore
// field path and bounded as a label.
func pricingWord(w string) string {
	if w == "" || len(w) > maxPricingWordLength {
		return "unknown"
	}
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return "unknown"
		}
	}
	return w
}

// e164 turns a WhatsApp ID (the sender's number as digits) into E.164,
// the form the pipeline keys drivers by.
func e164(waID string) (string, bool) {
	d := strings.TrimPrefix(waID, "+")
	if len(d) < 7 || len(d) > 15 {
		return "", false
	}
	for _, r := range d {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return "+" + d, true
}

// validID accepts ids usable as (escaped) document ids and log fields.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLength {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// unixTime reads Meta's timestamps: Unix seconds as a decimal string. A
// missing one is "now" to the receiver, so it is left nil.
func unixTime(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 253402300799 { // up to 9999-12-31, what Timestamp allows
		return nil, fmt.Errorf("timestamp %q", dispatch.Clip(s, 20))
	}
	return timestamppb.New(time.Unix(n, 0)), nil
}
