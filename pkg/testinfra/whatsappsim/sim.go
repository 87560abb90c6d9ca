// Package whatsappsim simulates the WhatsApp Cloud API messages endpoint for
// tests and local runs, following Meta's contract: bearer-token auth, payload
// validation with Meta's error codes, throughput and pair rate limits, the
// 24-hour customer-service window, injected faults, and signed status and
// inbound-message webhooks. Admin routes live under /_sim/ and mirror the
// methods of Simulator.
package whatsappsim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// Simulator is an in-memory WhatsApp Cloud API. Serve Handler() over HTTP
// (httptest.NewServer in tests, or the whatsapp-simulator program); call Close
// when done to stop pending webhooks.
type Simulator struct {
	opts      Options
	log       logrus.FieldLogger
	templates map[string]TemplateSpec
	// categories are the templates' categories by name (pricing.go).
	categories map[string]string
	idPrefix   []byte
	idSeq      atomic.Uint64
	hooks      *http.Client
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	pending    atomic.Int64
	media      *media

	mu sync.Mutex
	// status is the templates' status by name and language, as
	// SetTemplateStatus changes it (templates.go).
	status     map[string]string
	tokens     map[string]string
	faults     []Fault
	rng        *mrand.Rand
	messages   []Accepted
	counts     Counts
	windows    map[string]time.Time
	throughput map[string]*rate.Limiter
	pairs      map[string]*rate.Limiter
}

// Accepted is a message the simulator accepted, as recorded for assertions.
type Accepted struct {
	Seq           int                  `json:"seq"`
	WAMID         string               `json:"wamid"`
	PhoneNumberID string               `json:"phone_number_id"`
	To            string               `json:"to"`
	WaID          string               `json:"wa_id"`
	Type          string               `json:"type"`
	Text          *AcceptedText        `json:"text,omitempty"`
	Template      *AcceptedTemplate    `json:"template,omitempty"`
	Interactive   *AcceptedInteractive `json:"interactive,omitempty"`
	// Media is the object of an image, document, video or audio message.
	Media *AcceptedMedia `json:"media,omitempty"`
	// CallbackData is the request's biz_opaque_callback_data, which the
	// sent, delivered and read statuses echo.
	CallbackData string `json:"biz_opaque_callback_data,omitempty"`
	// Body is the request body as received.
	Body       json.RawMessage `json:"body"`
	AcceptedAt time.Time       `json:"accepted_at"`
	// Pricing is how WhatsApp priced it, as its statuses state.
	Pricing Pricing `json:"pricing"`
}

// AcceptedText is the text of an accepted text message.
type AcceptedText struct {
	Body       string `json:"body"`
	PreviewURL bool   `json:"preview_url"`
}

// AcceptedTemplate is the template of an accepted template message, with its
// parameters flattened and its quick-reply buttons' payloads.
type AcceptedTemplate struct {
	Name       string           `json:"name"`
	Language   string           `json:"language"`
	Parameters []TemplateParam  `json:"parameters"`
	Buttons    []TemplateButton `json:"buttons,omitempty"`
}

// TemplateParam is one text parameter of a template component.
type TemplateParam struct {
	Component string `json:"component"`
	Name      string `json:"name,omitempty"`
	Text      string `json:"text"`
}

// Counts are the simulator's counters since start or the last Reset. Every
// accepted call counts, duplicates included: AcceptedByRecipient is how tests
// prove a message reached a driver exactly once.
type Counts struct {
	Requests              int            `json:"requests"`
	Accepted              int            `json:"accepted"`
	RejectedByCode        map[int]int    `json:"rejected_by_code"`
	HTTPStatusFaults      int            `json:"http_status_faults"`
	Dropped               int            `json:"dropped"`
	AcceptedByRecipient   map[string]int `json:"accepted_by_recipient"`
	WebhooksDelivered     int            `json:"webhooks_delivered"`
	WebhookAttemptsFailed int            `json:"webhook_attempts_failed"`
	WebhooksAbandoned     int            `json:"webhooks_abandoned"`
	WebhooksPending       int            `json:"webhooks_pending"`
}

// New builds a Simulator. Fields of opts left zero keep their zero meaning
// (limits off); start from DefaultOptions for Meta's behaviour.
func New(opts Options) (*Simulator, error) {
	log := opts.Logger
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		// Entries below the level are never formatted, so discarding costs nothing.
		l.SetLevel(logrus.PanicLevel)
		log = l
	}
	if opts.ThrottleStatus == 0 {
		opts.ThrottleStatus = http.StatusTooManyRequests
	}
	if opts.Window == 0 {
		opts.Window = 24 * time.Hour
	}
	if opts.PairBurst <= 0 {
		opts.PairBurst = 1
	}
	if opts.Throughput < 0 || opts.PairInterval < 0 || opts.Latency < 0 {
		return nil, fmt.Errorf("whatsappsim: negative limit or latency")
	}
	w := &opts.Webhook
	if w.URL != "" && w.AppSecret == "" {
		return nil, fmt.Errorf("whatsappsim: a webhook URL needs an app secret to sign with")
	}
	if w.MaxAttempts <= 0 {
		w.MaxAttempts = 1
	}
	if w.Timeout <= 0 {
		w.Timeout = 5 * time.Second
	}
	categories := map[string]string{}
	for name, c := range opts.TemplateCategories {
		if err := checkTemplateCategory(name, c); err != nil {
			return nil, fmt.Errorf("whatsappsim: %w", err)
		}
		categories[name] = c
	}
	templates := map[string]TemplateSpec{}
	for _, t := range opts.Templates {
		if t.Name == "" || t.Language == "" {
			return nil, fmt.Errorf("whatsappsim: template %+v needs a name and a language", t)
		}
		if t.Status == "" {
			t.Status = TemplateApproved
		}
		templates[t.Name+"\x00"+t.Language] = t
	}
	for _, f := range opts.Faults {
		if err := f.validate(); err != nil {
			return nil, fmt.Errorf("whatsappsim: %w", err)
		}
	}
	prefix := make([]byte, 6)
	if _, err := rand.Read(prefix); err != nil {
		return nil, fmt.Errorf("whatsappsim: random id prefix: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Simulator{
		opts:       opts,
		log:        log,
		templates:  templates,
		status:     templateStatuses(templates),
		categories: categories,
		idPrefix:   prefix,
		hooks:      &http.Client{Timeout: w.Timeout},
		ctx:        ctx,
		cancel:     cancel,
		tokens:     map[string]string{},
		rng:        mrand.New(mrand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		media:      newMedia(opts.MediaURLTTL),
	}
	for id, tok := range opts.PhoneNumbers {
		s.tokens[id] = tok
	}
	s.resetLocked()
	return s, nil
}

// Close stops pending webhooks and waits for their goroutines.
func (s *Simulator) Close() {
	s.cancel()
	s.wg.Wait()
}

// AddPhoneNumber accepts token for phoneNumberID (replacing any previous one).
func (s *Simulator) AddPhoneNumber(phoneNumberID, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[phoneNumberID] = token
}

// Reset forgets accepted messages, counters, open windows, rate-limit state,
// media and faults (the faults of Options are reinstalled). Webhooks already
// scheduled still go out.
func (s *Simulator) Reset() {
	s.media.reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

func (s *Simulator) resetLocked() {
	s.faults = append([]Fault(nil), s.opts.Faults...)
	s.messages = nil
	s.counts = Counts{}
	s.windows = map[string]time.Time{}
	s.throughput = map[string]*rate.Limiter{}
	s.pairs = map[string]*rate.Limiter{}
}

// Messages returns the accepted messages in order, optionally only those from
// phoneNumberID and/or to a recipient (empty matches all).
func (s *Simulator) Messages(phoneNumberID, to string) []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Accepted{}
	for _, m := range s.messages {
		if (phoneNumberID == "" || m.PhoneNumberID == phoneNumberID) && (to == "" || m.To == to || m.WaID == to) {
			out = append(out, m)
		}
	}
	return out
}

// Counts returns a copy of the counters.
func (s *Simulator) Counts() Counts {
	s.mu.Lock()
	c := s.counts
	c.RejectedByCode = copyMap(s.counts.RejectedByCode)
	c.AcceptedByRecipient = copyMap(s.counts.AcceptedByRecipient)
	s.mu.Unlock()
	c.WebhooksPending = int(s.pending.Load())
	return c
}

func copyMap[K comparable](m map[K]int) map[K]int {
	out := make(map[K]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// AddFault installs a fault after those already installed.
func (s *Simulator) AddFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
	return nil
}

// Faults returns the installed faults, with their remaining Times.
func (s *Simulator) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Fault{}, s.faults...)
}

// ClearFaults removes every fault.
func (s *Simulator) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// WaitWebhooks blocks until no webhook is scheduled or being delivered.
func (s *Simulator) WaitWebhooks(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("whatsappsim: %d webhooks still pending: %w", s.pending.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// newWAMID returns a unique message id shaped like Meta's ("wamid." and
// base64).
func (s *Simulator) newWAMID() string {
	var b [18]byte
	copy(b[:6], s.idPrefix)
	binary.BigEndian.PutUint64(b[6:14], s.idSeq.Add(1))
	binary.BigEndian.PutUint32(b[14:], uint32(time.Now().UnixNano()))
	return "wamid.HBgL" + base64.StdEncoding.EncodeToString(b[:])
}

// fbtraceID returns a random trace id like Meta's.
func fbtraceID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
