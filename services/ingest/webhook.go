package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/pkg/whatsapp/webhook"
)

// WebhookPath is where Meta posts the WhatsApp Cloud API's webhooks.
const WebhookPath = "/whatsapp/webhook"

// maxWebhookBytes bounds a webhook body. Meta batches at most a few
// hundred KiB of statuses and messages in one.
const maxWebhookBytes = 1 << 20

// webhookReceiver handles Meta's webhooks: the verification handshake, and
// signed notifications turned into StatusEvents and InboundMessages on the
// status events topic. Meta retries a webhook that is not answered 200
// quickly, so the answer comes as soon as the messages are published, and
// is 5xx only when publishing failed (a retry can then succeed).
type webhookReceiver struct {
	appSecret   []byte
	verifyToken string
	publisher   *pubsub.Publisher
	timeout     time.Duration
	metrics     *webhookMetrics
	log         *logrus.Entry
}

type webhookMetrics struct {
	requests  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	published *prometheus.CounterVec
	skipped   *prometheus.CounterVec
}

func newWebhookMetrics(reg prometheus.Registerer) *webhookMetrics {
	m := &webhookMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_requests_total",
			Help: "WhatsApp webhook requests, by answer: published, verified, unauthorized, forbidden, ignored, retry, malformed.",
		}, []string{"outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_signature_failures_total",
			Help: "Webhook POSTs answered 401, by reason: missing, malformed or mismatched X-Hub-Signature-256.",
		}, []string{"reason"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_events_published_total",
			Help: "Events published from webhooks to the status events topic, by kind (status, inbound).",
		}, []string{"kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_parts_skipped_total",
			Help: "Parts of signed webhooks with nothing to publish, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.requests, m.refused, m.published, m.skipped)
	for _, r := range []string{webhook.ReasonMissing, webhook.ReasonMalformed, webhook.ReasonMismatch} {
		m.refused.WithLabelValues(r)
	}
	for _, k := range []string{"status", "inbound"} {
		m.published.WithLabelValues(k)
	}
	return m
}

// newStatusPublisher publishes webhook events. No ordering: the recorder
// applies statuses forward-only, so their order does not matter.
func newStatusPublisher(ps *pubsub.Client, cfg spec) *pubsub.Publisher {
	p := ps.Publisher(cfg.StatusTopic)
	p.PublishSettings.Timeout = cfg.HandlerTimeout
	return p
}

func (wr *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		wr.handshake(w, r)
	case http.MethodPost:
		wr.notification(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		wr.metrics.requests.WithLabelValues("malformed").Inc()
		http.Error(w, "GET (verification) or POST (notifications)", http.StatusMethodNotAllowed)
	}
}

// handshake answers Meta's subscription check: the challenge is echoed only
// to a caller that knows the verify token.
func (wr *webhookReceiver) handshake(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("hub.mode") != "subscribe" || !webhook.VerifyToken(wr.verifyToken, q.Get("hub.verify_token")) {
		wr.metrics.requests.WithLabelValues("forbidden").Inc()
		wr.log.WithField("mode", q.Get("hub.mode")).Warn("webhook verification refused")
		http.Error(w, "verification refused", http.StatusForbidden)
		return
	}
	wr.metrics.requests.WithLabelValues("verified").Inc()
	wr.log.Info("webhook verification answered")
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, q.Get("hub.challenge"))
}

func (wr *webhookReceiver) notification(w http.ResponseWriter, r *http.Request) {
	// Meta sends no trace context: each notification starts a trace, which
	// the published events carry on to the recorder.
	ctx, span := tracing.Tracer().Start(r.Context(), "whatsapp webhook", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	r = r.WithContext(ctx)
	log := logging.WithContext(r.Context(), wr.log)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
	if err != nil {
		code := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		wr.metrics.requests.WithLabelValues("malformed").Inc()
		log.WithError(err).WithField("status", code).Warn("webhook body unreadable")
		http.Error(w, "body unreadable", code)
		return
	}
	if len(wr.appSecret) == 0 {
		// Unconfigured: Meta keeps retrying until a fixed deployment can
		// verify what it sent.
		wr.metrics.requests.WithLabelValues("retry").Inc()
		log.Error("webhook received but INGEST_WEBHOOK_APP_SECRET is not set; answering 503")
		http.Error(w, "webhook not configured", http.StatusServiceUnavailable)
		return
	}
	if err := webhook.VerifySignature(wr.appSecret, body, r.Header.Get(webhook.SignatureHeader)); err != nil {
		var se *webhook.SignatureError
		reason := "invalid"
		if errors.As(err, &se) {
			reason = se.Reason
		}
		wr.metrics.requests.WithLabelValues("unauthorized").Inc()
		wr.metrics.refused.WithLabelValues(reason).Inc()
		log.WithField("reason", reason).Warn("webhook refused: bad signature")
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	p, err := webhook.Parse(body)
	if err != nil {
		// Signed by Meta yet not a notification we read: a retry would
		// bring the same body.
		wr.metrics.requests.WithLabelValues("ignored").Inc()
		log.WithError(err).Warn("signed webhook is not a WhatsApp Business Account notification; acknowledged")
		w.WriteHeader(http.StatusOK)
		return
	}
	for reason, n := range p.Skipped {
		wr.metrics.skipped.WithLabelValues(reason).Add(float64(n))
	}
	ctx, cancel := context.WithTimeout(r.Context(), wr.timeout)
	defer cancel()
	if err := wr.publish(ctx, p, log); err != nil {
		wr.metrics.requests.WithLabelValues("retry").Inc()
		log.WithError(err).Warn("webhook events not published; answering 503 so that Meta retries")
		http.Error(w, "not published", http.StatusServiceUnavailable)
		return
	}
	wr.metrics.requests.WithLabelValues("published").Inc()
	w.WriteHeader(http.StatusOK)
}

// publish publishes every event of p at once and waits for all; a repeat
// of a published one after a failure is harmless (the recorder is
// idempotent for both kinds).
func (wr *webhookReceiver) publish(ctx context.Context, p webhook.Payload, log *logrus.Entry) error {
	type pending struct {
		res  *pubsub.PublishResult
		kind string
		log  *logrus.Entry
	}
	var all []pending
	add := func(m proto.Message, kind, wamid string, fields logrus.Fields) error {
		data, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("marshal %s: %w", kind, err)
		}
		res := wr.publisher.Publish(ctx, &pubsub.Message{Data: data, Attributes: tracing.Inject(ctx, map[string]string{
			"schema": string(proto.MessageName(m)),
			"wamid":  wamid,
		})})
		all = append(all, pending{res: res, kind: kind, log: log.WithField("wamid", wamid).WithFields(fields)})
		return nil
	}
	for _, s := range p.Statuses {
		if err := add(s, "status", s.GetWhatsappMessageId(), logrus.Fields{"status": s.GetStatus().String()}); err != nil {
			return err
		}
	}
	for _, m := range p.Messages {
		if err := add(m, "inbound", m.GetWhatsappMessageId(), logrus.Fields{"type": m.GetType(), "contextWamid": m.GetContextMessageId()}); err != nil {
			return err
		}
	}
	var errs []error
	for _, pm := range all {
		id, err := pm.res.Get(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("publish %s event: %w", pm.kind, err))
			continue
		}
		wr.metrics.published.WithLabelValues(pm.kind).Inc()
		pm.log.WithField("pubsubMessageId", id).Info("webhook event published")
	}
	return errors.Join(errs...)
}
