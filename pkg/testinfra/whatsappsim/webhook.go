package whatsappsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/visn/wadispatch/pkg/whatsapp"
)

// SignatureHeader is the header Meta signs webhook bodies in.
const SignatureHeader = "X-Hub-Signature-256"

// maxRetryBackoff caps the doubling wait between webhook deliveries.
const maxRetryBackoff = 5 * time.Second

// Sign returns the X-Hub-Signature-256 value of body for appSecret:
// "sha256=" and the hex HMAC-SHA256.
func Sign(appSecret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Webhook payload, in Meta's shape.
type (
	webhookPayload struct {
		Object string         `json:"object"`
		Entry  []webhookEntry `json:"entry"`
	}
	webhookEntry struct {
		ID      string          `json:"id"`
		Changes []webhookChange `json:"changes"`
	}
	webhookChange struct {
		Value webhookValue `json:"value"`
		Field string       `json:"field"`
	}
	webhookValue struct {
		MessagingProduct string           `json:"messaging_product"`
		Metadata         webhookMetadata  `json:"metadata"`
		Contacts         []webhookContact `json:"contacts,omitempty"`
		Messages         []InboundMessage `json:"messages,omitempty"`
		Statuses         []StatusEvent    `json:"statuses,omitempty"`
	}
	webhookMetadata struct {
		DisplayPhoneNumber string `json:"display_phone_number"`
		PhoneNumberID      string `json:"phone_number_id"`
	}
	webhookContact struct {
		Profile struct {
			Name string `json:"name"`
		} `json:"profile"`
		WaID string `json:"wa_id"`
	}
)

// StatusEvent is one entry of value.statuses.
type StatusEvent struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Timestamp   string `json:"timestamp"`
	RecipientID string `json:"recipient_id"`
	// BizOpaqueCallbackData echoes the send's biz_opaque_callback_data:
	// Meta documents it in sent, delivered and read statuses (not failed).
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`
	// Pricing is in sent and delivered statuses. (The conversation object
	// Meta sends only for free entry point conversations under per-message
	// pricing, which are not simulated.)
	Pricing *statusPricing `json:"pricing,omitempty"`
	Errors  []WebhookError `json:"errors,omitempty"`
}

// statusPricing is statuses[].pricing: the message's Pricing, with the
// deprecated billable Meta still sends (true for a regular, charged one).
type statusPricing struct {
	Billable bool `json:"billable"`
	Pricing
}

// WebhookError is an entry of statuses[].errors.
type WebhookError struct {
	Code      int    `json:"code"`
	Title     string `json:"title"`
	Message   string `json:"message"`
	ErrorData struct {
		Details string `json:"details"`
	} `json:"error_data"`
}

// InboundMessage is an entry of value.messages: a message from a user.
// Its type's object sits under the type's own key ("text": {"body"},
// "interactive": {"type", "button_reply"}, "location": {...}), so it is
// marshalled by MarshalJSON rather than by struct tags.
type InboundMessage struct {
	From      string
	ID        string
	Timestamp string
	Type      string
	// Part is the type's object.
	Part    any
	Context *InboundContext
}

// InboundContext names the message a user replied to.
type InboundContext struct {
	From string `json:"from,omitempty"`
	ID   string `json:"id"`
}

// MarshalJSON writes Meta's shape.
func (m InboundMessage) MarshalJSON() ([]byte, error) {
	out := map[string]any{"from": m.From, "id": m.ID, "timestamp": m.Timestamp, "type": m.Type, m.Type: m.Part}
	if m.Context != nil {
		out["context"] = m.Context
	}
	return json.Marshal(out)
}

func (s *Simulator) payload(phoneID string, v webhookValue) webhookPayload {
	v.MessagingProduct = "whatsapp"
	v.Metadata = webhookMetadata{DisplayPhoneNumber: s.opts.Webhook.DisplayPhoneNumber, PhoneNumberID: phoneID}
	return webhookPayload{
		Object: "whatsapp_business_account",
		Entry: []webhookEntry{{
			ID:      s.opts.Webhook.WABAID,
			Changes: []webhookChange{{Value: v, Field: "messages"}},
		}},
	}
}

// scheduleStatuses sends the status webhooks of an accepted message: sent,
// delivered, read; or sent then failed with failCode.
func (s *Simulator) scheduleStatuses(acc Accepted, failCode int) {
	w := s.opts.Webhook
	if w.URL == "" || w.NoStatuses {
		return
	}
	type step struct {
		status string
		delay  time.Duration
	}
	steps := []step{{"sent", w.SentDelay}}
	if failCode != 0 {
		steps = append(steps, step{"failed", w.DeliveredDelay})
	} else {
		steps = append(steps, step{"delivered", w.DeliveredDelay})
		if !w.NoRead {
			steps = append(steps, step{"read", w.ReadDelay})
		}
	}
	// Timestamps follow the real progression even when posts are reordered.
	events := make([]StatusEvent, len(steps))
	var total time.Duration
	for i, st := range steps {
		total += st.delay
		ev := StatusEvent{
			ID:          acc.WAMID,
			Status:      st.status,
			Timestamp:   strconv.FormatInt(acc.AcceptedAt.Add(total).Unix(), 10),
			RecipientID: acc.WaID,
		}
		if st.status != "failed" {
			ev.BizOpaqueCallbackData = acc.CallbackData
		}
		if st.status == "sent" || st.status == "delivered" {
			ev.Pricing = &statusPricing{Billable: acc.Pricing.Type == "regular", Pricing: acc.Pricing}
		}
		if st.status == "failed" {
			title, _, _ := whatsapp.Documented(failCode)
			we := WebhookError{Code: failCode, Title: title, Message: title}
			we.ErrorData.Details = "Injected by the simulator (fail_later)."
			ev.Errors = []WebhookError{we}
		}
		events[i] = ev
	}
	if w.Reorder {
		for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
			events[i], events[j] = events[j], events[i]
		}
	}
	s.pending.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.pending.Add(-1)
		for i, ev := range events {
			if !s.wait(steps[i].delay) {
				return
			}
			body, err := json.Marshal(s.payload(acc.PhoneNumberID, webhookValue{Statuses: []StatusEvent{ev}}))
			if err != nil {
				s.log.WithError(err).Error("encode status webhook")
				return
			}
			copies := 1
			if w.Duplicate {
				copies = 2
			}
			for range copies {
				s.deliver(body, "status "+ev.Status+" of "+ev.ID)
			}
		}
	}()
}

// wait sleeps d unless the simulator closes first.
func (s *Simulator) wait(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// deliver posts one signed webhook, retrying a failure with doubling backoff.
func (s *Simulator) deliver(body []byte, what string) {
	w := s.opts.Webhook
	backoff := w.RetryBackoff
	for attempt := 1; attempt <= w.MaxAttempts; attempt++ {
		err := s.post(body)
		if err == nil {
			s.mu.Lock()
			s.counts.WebhooksDelivered++
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.counts.WebhookAttemptsFailed++
		s.mu.Unlock()
		s.log.WithError(err).WithField("webhook", what).WithField("attempt", attempt).Warn("webhook delivery failed")
		if attempt == w.MaxAttempts || !s.wait(backoff) {
			break
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
	s.mu.Lock()
	s.counts.WebhooksAbandoned++
	s.mu.Unlock()
}

func (s *Simulator) post(body []byte) error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.opts.Webhook.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(s.opts.Webhook.AppSecret, body))
	resp, err := s.hooks.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// Inbound is a message from a user (a driver) to a business phone number.
type Inbound struct {
	PhoneNumberID string `json:"phone_number_id"`
	// From is the user's number; it is normalised to a WhatsApp ID.
	From string `json:"from"`
	Name string `json:"name,omitempty"`
	Text string `json:"text"`
	// Type is the message's type, "text" when empty; Part its object as
	// Meta's webhook reference shows it for that type (for "text" it is
	// built from Text). Replies to buttons: type "interactive" with
	// {"type": "button_reply", "button_reply": {"id", "title"}} or
	// list_reply; template quick replies: type "button" with {"text",
	// "payload"}; reactions: {"message_id", "emoji"}; locations, contacts,
	// edits and revokes likewise.
	Type string          `json:"type,omitempty"`
	Part json.RawMessage `json:"part,omitempty"`
	// ContextID is the wamid the user replied to, if any.
	ContextID string `json:"context_id,omitempty"`
	// At is when the user sent it; zero means now. A past time lets tests
	// open a window that has already expired.
	At time.Time `json:"at,omitempty"`
	// MediaID (from AddMedia) with a media Type (image, document, audio,
	// video, sticker) builds Part from the media (media.go); Caption,
	// Filename and Voice go in it where Meta's shape has them.
	MediaID  string `json:"media_id,omitempty"`
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
	Voice    bool   `json:"voice,omitempty"`
}

// RecordInbound records a message from a user: it opens the customer-service
// window between the phone number and the user and, when a webhook URL is
// configured, posts the inbound-message webhook as Meta does. It returns the
// inbound message's wamid.
func (s *Simulator) RecordInbound(in Inbound) (string, error) {
	waID := normalize(in.From)
	if !digits.MatchString(waID) {
		return "", fmt.Errorf("whatsappsim: inbound from %q is not a phone number", in.From)
	}
	if in.PhoneNumberID == "" {
		return "", fmt.Errorf("whatsappsim: inbound message needs a phone_number_id")
	}
	if in.Type != "" && in.Type != "text" && in.MediaID == "" && !json.Valid(in.Part) {
		return "", fmt.Errorf("whatsappsim: an inbound %q message needs its part, the type's object as JSON", in.Type)
	}
	at := in.At
	if at.IsZero() {
		at = time.Now()
	}
	s.mu.Lock()
	key := in.PhoneNumberID + "/" + waID
	if at.After(s.windows[key]) {
		s.windows[key] = at
	}
	s.mu.Unlock()
	id := s.newWAMID()
	if s.opts.Webhook.URL == "" {
		return id, nil
	}
	msg := InboundMessage{From: waID, ID: id, Timestamp: strconv.FormatInt(at.Unix(), 10), Type: in.Type, Part: in.Part}
	if in.Type == "" || in.Type == "text" {
		msg.Type, msg.Part = "text", map[string]string{"body": in.Text}
	}
	if err := s.attachMedia(&msg, in); err != nil {
		return "", err
	}
	if in.ContextID != "" {
		msg.Context = &InboundContext{From: s.opts.Webhook.DisplayPhoneNumber, ID: in.ContextID}
	}
	contact := webhookContact{WaID: waID}
	contact.Profile.Name = in.Name
	body, err := json.Marshal(s.payload(in.PhoneNumberID, webhookValue{Contacts: []webhookContact{contact}, Messages: []InboundMessage{msg}}))
	if err != nil {
		return "", fmt.Errorf("whatsappsim: encode inbound webhook: %w", err)
	}
	s.pending.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.pending.Add(-1)
		s.deliver(body, "inbound "+id)
	}()
	return id, nil
}

// VerifyWebhook performs Meta's verification handshake against a receiver: GET
// url?hub.mode=subscribe&hub.verify_token=...&hub.challenge=..., which must
// answer 200 with the challenge as body.
func VerifyWebhook(ctx context.Context, client *http.Client, endpoint, verifyToken string) error {
	if client == nil {
		client = http.DefaultClient
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("whatsappsim: webhook URL: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	challenge := strconv.FormatUint(binary.BigEndian.Uint64(b[:]), 10)
	q := u.Query()
	q.Set("hub.mode", "subscribe")
	q.Set("hub.verify_token", verifyToken)
	q.Set("hub.challenge", challenge)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("whatsappsim: verification request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("whatsappsim: verification request: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return fmt.Errorf("whatsappsim: read verification answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(bytes.TrimSpace(got)) != challenge {
		return fmt.Errorf("whatsappsim: verification failed: HTTP %d, body %q, want the challenge %q", resp.StatusCode, got, challenge)
	}
	return nil
}
