package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/whatsapp/webhook"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// How a webhook notification ended.
const (
	// WebhookPublished: every event in it was published.
	WebhookPublished = "published"
	// WebhookIgnored: signed by Meta, yet nothing ingest reads; a retry
	// would bring the same body.
	WebhookIgnored = "ignored"
	// WebhookUnauthorized: no or a bad signature.
	WebhookUnauthorized = "unauthorized"
	// WebhookUnconfigured: no app secret to verify with; Meta's retries
	// can succeed once a fixed deployment has one.
	WebhookUnconfigured = "unconfigured"
	// WebhookRetry: publishing failed; a retry by Meta can succeed.
	WebhookRetry = "retry"
	// WebhookDuplicate: the same signed body was published within the
	// replay TTL (Meta's retry, or somebody replaying a captured body);
	// answered as a success, published again never.
	WebhookDuplicate = "duplicate"
)

// VerifySubscription answers Meta's subscription check: the challenge may
// be echoed only to a caller that knows the verify token.
func (in *Ingester) VerifySubscription(mode, token string) bool {
	if mode != "subscribe" || !webhook.VerifyToken(in.cfg.WebhookVerifyToken, token) {
		in.webhookLog.WithField("mode", mode).Warn("webhook verification refused")
		return false
	}
	in.webhookLog.Info("webhook verification answered")
	return true
}

// ReceiveWebhook verifies one notification body against its
// X-Hub-Signature-256 and publishes its statuses and messages for the
// recorder. ctx carries the notification's span.
func (in *Ingester) ReceiveWebhook(ctx context.Context, body []byte, signature string) string {
	log := logging.WithContext(ctx, in.webhookLog)
	if len(in.cfg.WebhookAppSecret) == 0 {
		// Unconfigured: Meta keeps retrying until a fixed deployment can
		// verify what it sent.
		log.Error("webhook received but INGEST_WEBHOOK_APP_SECRET is not set; answering 503")
		return WebhookUnconfigured
	}
	if err := webhook.VerifySignature(in.cfg.WebhookAppSecret, body, signature); err != nil {
		var se *webhook.SignatureError
		reason := "invalid"
		if errors.As(err, &se) {
			reason = se.Reason
		}
		in.metrics.signatureFailures.WithLabelValues(reason).Inc()
		log.WithField("reason", reason).Warn("webhook refused: bad signature")
		return WebhookUnauthorized
	}
	// A body is its own identity: Meta signs it whole, so a replayed body
	// is the same bytes.
	sum := sha256.Sum256(body)
	res, dup := in.webhooks.do(ctx, hex.EncodeToString(sum[:]), func() Result {
		outcome := in.publishNotification(ctx, body, log)
		switch outcome {
		case WebhookPublished:
			return Result{Outcome: OutcomePublished, Reason: outcome}
		case WebhookRetry:
			return Result{Outcome: OutcomeRetry, Reason: outcome}
		}
		return Result{Outcome: OutcomeRejected, Reason: outcome}
	})
	if !dup {
		return res.Reason
	}
	if res.Outcome == OutcomePublished {
		log.Info("webhook body published before; acknowledged without publishing again")
		return WebhookDuplicate
	}
	// The first copy is still in flight past our deadline: Meta retries.
	return WebhookRetry
}

// publishNotification parses a verified body and publishes its events.
func (in *Ingester) publishNotification(ctx context.Context, body []byte, log *logrus.Entry) string {
	p, err := webhook.Parse(body)
	if err != nil {
		log.WithError(err).Warn("signed webhook is not a WhatsApp Business Account notification; acknowledged")
		return WebhookIgnored
	}
	for reason, n := range p.Skipped {
		in.metrics.partsSkipped.WithLabelValues(reason).Add(float64(n))
	}
	ctx, cancel := context.WithTimeout(ctx, in.cfg.Timeout)
	defer cancel()
	if err := in.publishWebhook(ctx, p, log); err != nil {
		log.WithError(err).Warn("webhook events not published; answering 503 so that Meta retries")
		return WebhookRetry
	}
	return WebhookPublished
}

// publishWebhook publishes every event of p at once and waits for all; a
// repeat of a published one after a failure is harmless (the recorder is
// idempotent for both kinds).
func (in *Ingester) publishWebhook(ctx context.Context, p webhook.Payload, log *logrus.Entry) error {
	type pending struct {
		res  Pending
		kind string
		log  *logrus.Entry
	}
	var all []pending
	add := func(m proto.Message, kind, wamid string, fields logrus.Fields) error {
		res, err := in.events.PublishEvent(ctx, m, wamid)
		if err != nil {
			return fmt.Errorf("%s event: %w", kind, err)
		}
		all = append(all, pending{res: res, kind: kind, log: log.WithField("wamid", wamid).WithFields(fields)})
		return nil
	}
	for _, s := range p.Statuses {
		if err := add(s, "status", s.GetWhatsappMessageId(), logrus.Fields{"status": s.GetStatus().String()}); err != nil {
			return err
		}
	}
	for _, m := range p.Messages {
		fields := logrus.Fields{"type": m.GetType(), "contextWamid": m.GetContextMessageId(), "phoneNumberId": m.GetPhoneNumberId()}
		placed, err := in.placeInbound(ctx, m)
		if err != nil {
			return err
		}
		if !placed {
			continue
		}
		if err := add(m, "inbound", m.GetWhatsappMessageId(), fields); err != nil {
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
		in.metrics.eventsPublished.WithLabelValues(pm.kind).Inc()
		pm.log.WithField("pubsubMessageId", id).Info("webhook event published")
	}
	return errors.Join(errs...)
}

// placeInbound gives a driver's message the leases of the business number
// it was written to. A number no lease has is refused: the
// message is counted and logged, never attached to another lease's
// enquiries. false means refused; an error, that the leases could not be
// read (Meta retries).
func (in *Ingester) placeInbound(ctx context.Context, m *wadispatchv1.InboundMessage) (bool, error) {
	n, err := in.leases.BusinessNumber(ctx, m.GetPhoneNumberId())
	if err != nil {
		return false, fmt.Errorf("lease of business number: %w", err)
	}
	if n.Problem != "" {
		in.metrics.partsSkipped.WithLabelValues(n.Problem).Inc()
		logging.WithContext(ctx, in.webhookLog).WithFields(logrus.Fields{
			"wamid": m.GetWhatsappMessageId(), "phoneNumberId": m.GetPhoneNumberId(), "reason": n.Problem,
		}).Warn("driver's message refused: no lease has its business number")
		return false, nil
	}
	m.LeaseIds = n.LeaseIDs
	m.LeaseWhatsappDetails = n.Config.Details()
	return true, nil
}
