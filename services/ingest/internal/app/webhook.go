package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/chatmessage"
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
		n, placed, err := in.placeInbound(ctx, m.GetPhoneNumberId(), m.GetWhatsappMessageId())
		if err != nil {
			return err
		}
		if !placed {
			continue
		}
		m.LeaseIds = n.LeaseIDs
		m.LeaseWhatsappDetails = n.Config.Details()
		if err := add(m, "inbound", m.GetWhatsappMessageId(), fields); err != nil {
			return err
		}
		// A stop or start keyword is recorded as the message it is, and
		// also kept as the driver's choice.
		if pref := keywordPreference(m, n.OptOut); pref != nil {
			if err := add(pref, "preference", m.GetWhatsappMessageId(), logrus.Fields{"choice": pref.GetChoice().String(), "source": pref.GetSource()}); err != nil {
				return err
			}
		}
	}
	for _, pref := range p.Preferences {
		n, placed, err := in.placeInbound(ctx, pref.GetPhoneNumberId(), "")
		if err != nil {
			return err
		}
		if !placed {
			continue
		}
		pref.LeaseIds = n.LeaseIDs
		if err := add(pref, "preference", "", logrus.Fields{"choice": pref.GetChoice().String(), "source": pref.GetSource()}); err != nil {
			return err
		}
	}
	for _, ev := range p.Templates {
		n, err := in.leases.BusinessAccount(ctx, ev.GetBusinessAccountId())
		if err != nil {
			return fmt.Errorf("leases of business account: %w", err)
		}
		fields := logrus.Fields{"businessAccountId": ev.GetBusinessAccountId(), "template": ev.GetName(), "language": ev.GetLanguage(), "source": ev.GetSource()}
		if n.Problem != "" {
			// Not the pipeline's account: its templates are no lease's.
			in.metrics.partsSkipped.WithLabelValues(AccountUnknown).Inc()
			log.WithFields(fields).WithField("reason", n.Problem).Warn("template event dropped: no lease has its business account")
			continue
		}
		ev.LeaseIds = n.LeaseIDs
		if err := add(ev, "template", "", fields); err != nil {
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

// AccountUnknown: a template event of a business account no lease
// names, or that too many do (a skip reason of webhook parts).
const AccountUnknown = "unknown_business_account"

// placeInbound finds the leases of the business number a driver's part
// was written to. A number no lease has is refused: the part is counted
// and logged, never attached to another lease. false means refused; an
// error, that the leases could not be read (Meta retries).
func (in *Ingester) placeInbound(ctx context.Context, phoneNumberID, wamid string) (NumberLeases, bool, error) {
	n, err := in.leases.BusinessNumber(ctx, phoneNumberID)
	if err != nil {
		return NumberLeases{}, false, fmt.Errorf("lease of business number: %w", err)
	}
	if n.Problem != "" {
		in.metrics.partsSkipped.WithLabelValues(n.Problem).Inc()
		logging.WithContext(ctx, in.webhookLog).WithFields(logrus.Fields{
			"wamid": wamid, "phoneNumberId": phoneNumberID, "reason": n.Problem,
		}).Warn("driver's message refused: no lease has its business number")
		return NumberLeases{}, false, nil
	}
	return n, true, nil
}

// keywordPreference is the driver's choice a text part states with one of
// the lease's keywords; nil for any other part.
func keywordPreference(m *wadispatchv1.InboundMessage, o chatmessage.OptOut) *wadispatchv1.DriverPreference {
	if m.GetType() != "text" {
		return nil
	}
	stop, keyword, ok := o.Choice(m.GetText())
	if !ok {
		return nil
	}
	choice := wadispatchv1.DriverPreference_CHOICE_RESUME
	if stop {
		choice = wadispatchv1.DriverPreference_CHOICE_STOP
	}
	return &wadispatchv1.DriverPreference{
		Driver: m.GetFrom(), LeaseIds: m.GetLeaseIds(), Choice: choice, Source: webhook.SourceKeyword, Detail: keyword,
		WhatsappMessageId: m.GetWhatsappMessageId(), Timestamp: m.GetTimestamp(), PhoneNumberId: m.GetPhoneNumberId(),
	}
}
