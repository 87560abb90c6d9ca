package adapters

import (
	"errors"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/pkg/whatsapp/webhook"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// WebhookPath is where Meta posts the WhatsApp Cloud API's webhooks.
const WebhookPath = "/whatsapp/webhook"

// maxWebhookBytes bounds a webhook body. Meta batches at most a few
// hundred KiB of statuses and messages in one.
const maxWebhookBytes = 1 << 20

// WebhookHandler is Meta's webhook endpoint: the verification handshake
// (GET) and signed notifications (POST). Meta retries a webhook that is not
// answered 200 quickly, so the answer comes as soon as the events are
// published, and is 5xx only when a retry can succeed.
type WebhookHandler struct {
	in       *app.Ingester
	requests *prometheus.CounterVec
	log      *logrus.Entry
}

// NewWebhookHandler serves in's webhook use cases, registering the request
// metric on reg.
func NewWebhookHandler(in *app.Ingester, reg prometheus.Registerer, log *logrus.Entry) *WebhookHandler {
	h := &WebhookHandler{
		in: in,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_requests_total",
			Help: "WhatsApp webhook requests, by answer: published, duplicate, verified, unauthorized, forbidden, ignored, retry, malformed.",
		}, []string{"outcome"}),
		log: log,
	}
	reg.MustRegister(h.requests)
	return h
}

// webhookAnswers are the answer to, and the request metric's label of, each
// outcome of app.ReceiveWebhook.
var webhookAnswers = map[string]struct {
	code  int
	text  string
	label string
}{
	app.WebhookPublished:    {http.StatusOK, "", "published"},
	app.WebhookDuplicate:    {http.StatusOK, "", "duplicate"},
	app.WebhookIgnored:      {http.StatusOK, "", "ignored"},
	app.WebhookUnauthorized: {http.StatusUnauthorized, "bad signature", "unauthorized"},
	app.WebhookUnconfigured: {http.StatusServiceUnavailable, "webhook not configured", "retry"},
	app.WebhookRetry:        {http.StatusServiceUnavailable, "not published", "retry"},
}

func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		h.handshake(w, r)
	case http.MethodPost:
		h.notification(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		h.requests.WithLabelValues("malformed").Inc()
		http.Error(w, "GET (verification) or POST (notifications)", http.StatusMethodNotAllowed)
	}
}

func (h *WebhookHandler) handshake(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// Meta's challenge is an integer; echoing anything else would let this
	// endpoint serve a caller's content under our name.
	challenge := q.Get("hub.challenge")
	if !isChallenge(challenge) {
		h.requests.WithLabelValues("malformed").Inc()
		http.Error(w, "hub.challenge must be digits", http.StatusBadRequest)
		return
	}
	if !h.in.VerifySubscription(q.Get("hub.mode"), q.Get("hub.verify_token")) {
		h.requests.WithLabelValues("forbidden").Inc()
		http.Error(w, "verification refused", http.StatusForbidden)
		return
	}
	h.requests.WithLabelValues("verified").Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = io.WriteString(w, challenge)
}

func (h *WebhookHandler) notification(w http.ResponseWriter, r *http.Request) {
	// Meta sends no trace context: each notification starts a trace, which
	// the published events carry on to the recorder.
	ctx, span := tracing.Tracer().Start(r.Context(), "whatsapp webhook", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
	if err != nil {
		code := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		h.requests.WithLabelValues("malformed").Inc()
		logging.WithContext(ctx, h.log).WithError(err).WithField("status", code).Warn("webhook body unreadable")
		http.Error(w, "body unreadable", code)
		return
	}
	answer := webhookAnswers[h.in.ReceiveWebhook(ctx, body, r.Header.Get(webhook.SignatureHeader))]
	h.requests.WithLabelValues(answer.label).Inc()
	if answer.text == "" {
		w.WriteHeader(answer.code)
		return
	}
	http.Error(w, answer.text, answer.code)
}

// isChallenge accepts what Meta sends as hub.challenge: a decimal integer.
func isChallenge(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
