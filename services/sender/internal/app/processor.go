package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/retry"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Claimer claims sends and releases claims; the recorder's gRPC client
// satisfies it.
type Claimer interface {
	ClaimSend(ctx context.Context, in *wadispatchv1.ClaimSendRequest, opts ...grpc.CallOption) (*wadispatchv1.ClaimSendResponse, error)
	ReleaseClaim(ctx context.Context, in *wadispatchv1.ReleaseClaimRequest, opts ...grpc.CallOption) (*wadispatchv1.ReleaseClaimResponse, error)
}

// WhatsApp sends one message; *whatsapp.Client satisfies it. Failures are
// *whatsapp.Error; any other error is taken as an unknown outcome.
type WhatsApp interface {
	Send(ctx context.Context, s whatsapp.Sender, m whatsapp.Message) (whatsapp.Sent, error)
}

// TokenResolver returns the token a lease's token reference names; an error
// wrapping ErrTokenUnavailable is permanent, any other is transient.
type TokenResolver interface {
	Token(ctx context.Context, ref string) (whatsapp.Token, error)
}

// Publisher publishes one Pub/Sub message and returns once the server has
// confirmed it.
type Publisher interface {
	Publish(ctx context.Context, topic string, data []byte, attributes map[string]string) error
}

// Clock is the time source of retries and pacing.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done.
	Sleep(ctx context.Context, d time.Duration) error
}

// Config holds the procedure's settings.
type Config struct {
	// Claimant names this sender instance in claims.
	Claimant string
	// ClaimLease is how long a claim holds without an outcome.
	ClaimLease time.Duration
	// ClaimTimeout bounds one ClaimSend call.
	ClaimTimeout time.Duration
	// MaxAttempts bounds the WhatsApp calls of one task that fail with a
	// retryable error. Throughput and pair rate limit answers do not count:
	// a burst must slow sending down, not fail it; the lease bounds them.
	MaxAttempts int
	// InitialBackoff and MaxBackoff shape the exponential backoff (with
	// jitter) between attempts; Meta's Retry-After, when longer, wins.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// CallTimeout is how long one WhatsApp call may take (the client's
	// timeout): a retry starts only while a whole call still fits in the lease.
	CallTimeout time.Duration
	// PublishReserve is the end of the lease kept for publishing the result.
	PublishReserve time.Duration
	// PublishTimeout bounds one try of publishing a result or a dead
	// letter; PublishRetryFor all of them.
	PublishTimeout  time.Duration
	PublishRetryFor time.Duration
	// InFlightRecheck is how often a task whose send another sender holds
	// asks for the claim again, for at most a ClaimLease before it is nacked.
	InFlightRecheck time.Duration
	// DefaultAPIVersion is used when a lease carries no Graph API version.
	DefaultAPIVersion string
	// ResultsTopic receives the SendResults; DeadLetterTopic the tasks
	// whose retries ran out, beside those Pub/Sub dead-lettered.
	ResultsTopic    string
	DeadLetterTopic string
	// EnforceWindow fails a free-form message (text, interactive) to a driver who has not written
	// within CustomerServiceWindow (the claim says when they last did)
	// without calling WhatsApp, which would refuse it (131047).
	EnforceWindow bool
}

// CustomerServiceWindow is how long after a driver's last message WhatsApp
// accepts free-form messages (text, interactive) from the business;
// templates are accepted at any time.
const CustomerServiceWindow = 24 * time.Hour

// Processor runs the procedure; it is safe for concurrent use.
type Processor struct {
	cfg       Config
	claimer   Claimer
	wa        WhatsApp
	tokens    TokenResolver
	publisher Publisher
	limiters  *Limiters
	clock     Clock
	metrics   *Metrics
	log       *logrus.Entry
	media     *MediaOut
}

// NewProcessor builds a Processor.
func NewProcessor(cfg Config, claimer Claimer, wa WhatsApp, tokens TokenResolver, publisher Publisher, limiters *Limiters, clock Clock, metrics *Metrics, log *logrus.Entry) *Processor {
	return &Processor{cfg: cfg, claimer: claimer, wa: wa, tokens: tokens, publisher: publisher, limiters: limiters, clock: clock, metrics: metrics, log: log}
}

// Outcome names how a task ended, as a metric label.
type Outcome string

// Outcomes of Process.
const (
	OutcomeSent   Outcome = "sent"
	OutcomeFailed Outcome = "failed"
	// OutcomeRetriesExhausted is a FAILED result whose task also went to the
	// dead-letter topic.
	OutcomeRetriesExhausted Outcome = "retries_exhausted"
	// OutcomeDuplicate: the outcome was recorded before; it was republished.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeInFlight: another sender holds the send.
	OutcomeInFlight Outcome = "in_flight"
	// OutcomeUnknown: the recorder marked the send UNKNOWN; nothing is sent.
	OutcomeUnknown Outcome = "unknown"
	// OutcomeOutcomeUnknown: WhatsApp may have accepted the message but did
	// not say; nothing is published, the claim expires into UNKNOWN.
	OutcomeOutcomeUnknown      Outcome = "outcome_unknown"
	OutcomePoison              Outcome = "poison"
	OutcomeRecorderUnavailable Outcome = "recorder_unavailable"
	OutcomeTokenLookupFailed   Outcome = "token_lookup_failed"
	OutcomePublishFailed       Outcome = "publish_failed"
	// OutcomeCanceled: the sender stopped before claiming.
	OutcomeCanceled Outcome = "canceled"
	// OutcomeMessageGone: the message document was deleted before its
	// send was claimed.
	OutcomeMessageGone Outcome = "message_gone"
	// OutcomeMediaUnavailable: Cloud Storage could not describe a media
	// task's object; the task is held.
	OutcomeMediaUnavailable Outcome = "media_unavailable"
)

// Reasons of FAILED results that are not WhatsApp's.
const (
	ReasonTokenUnavailable = "token_unavailable"
	ReasonRetriesExhausted = "retries_exhausted"
	// ReasonOutsideWindow: a free-form message to a driver who has not written
	// within CustomerServiceWindow; not sent.
	ReasonOutsideWindow = "outside_24h_window"
)

// Process handles one delivery. It never panics on bad input, and acks
// only once the task's outcome is durable (published and confirmed) or
// known to need nothing more. The verdict's reason is the Outcome.
func (p *Processor) Process(ctx context.Context, d consume.Message) consume.Verdict {
	p.metrics.inFlight.Inc()
	defer p.metrics.inFlight.Dec()
	outcome := p.process(ctx, d)
	v := verdictOf(outcome)
	p.metrics.tasks.WithLabelValues(string(outcome), strconv.FormatBool(v.Ack)).Inc()
	return v
}

// verdictOf is what Pub/Sub is told of a task that ended with o. A
// recorder or Secret Manager that cannot answer is an outage, not a fault
// of the task: the task is held (consume.Gate) rather than nacked, so the
// outage does not spend its delivery attempts.
func verdictOf(o Outcome) consume.Verdict {
	v := consume.Verdict{Reason: string(o)}
	switch o {
	case OutcomeSent, OutcomeFailed, OutcomeRetriesExhausted, OutcomeDuplicate, OutcomeUnknown, OutcomeMessageGone:
		v.Ack = true
	case OutcomePoison:
		v.Poison = true
	case OutcomeRecorderUnavailable, OutcomeTokenLookupFailed, OutcomeMediaUnavailable:
		v.Unavailable = true
	}
	return v
}

func (p *Processor) process(ctx context.Context, d consume.Message) Outcome {
	log := logging.WithContext(ctx, p.log).WithField("deliveryAttempt", d.DeliveryAttempt)
	task := &wadispatchv1.SendTask{}
	if err := proto.Unmarshal(d.Data, task); err != nil {
		return p.poison(log.WithField("messagePath", d.Attributes["messagePath"]), "undecodable", err)
	}
	if _, err := dispatch.ParseMessagePath(task.GetMessageDocId()); err != nil {
		return p.poison(log.WithField("messagePath", task.GetMessageDocId()), "invalid_message_path", err)
	}
	log = log.WithFields(logrus.Fields{"messagePath": task.GetMessageDocId(), "eventId": task.GetEventId()})

	// A task that can never be sent still gets a claim and a FAILED result,
	// so the message document shows why.
	sender, msg, invalid := sendtask.Message(task, p.cfg.DefaultAPIVersion)
	var tokenErr error
	if invalid == nil {
		tok, err := p.tokens.Token(ctx, task.GetLeaseWhatsappDetails().GetTokenRef())
		switch {
		case errors.Is(err, ErrTokenUnavailable):
			tokenErr = err
		case err != nil:
			log.WithError(err).Warn("token lookup failed; will retry")
			return OutcomeTokenLookupFailed
		default:
			sender.Token = tok
		}
	}
	var (
		media        *outboundMedia
		mediaRefused *wadispatchv1.WhatsAppError
	)
	if invalid == nil && tokenErr == nil {
		var err error
		if media, mediaRefused, err = p.prepareMedia(ctx, task); err != nil {
			log.WithError(err).Warn("Cloud Storage could not describe the media object; will retry")
			return OutcomeMediaUnavailable
		}
	}
	if invalid == nil && tokenErr == nil {
		// Pace before claiming: a wait after the claim would eat its lease.
		if err := p.pace(ctx, sender.PhoneNumberID, time.Duration(math.MaxInt64)); err != nil {
			log.WithError(err).Info("stopped while waiting for the rate limiter")
			return OutcomeCanceled
		}
	}

	if ctx.Err() != nil {
		log.Info("stopping; task left for redelivery")
		return OutcomeCanceled
	}
	claim, err := p.claimWaiting(ctx, log, task)
	if err != nil {
		return p.claimFailed(log, err)
	}
	decision := claim.GetDecision()
	log = log.WithFields(logrus.Fields{"claimId": claim.GetClaimId(), "decision": dispatch.Label(decision)})
	if decision != wadispatchv1.ClaimSendResponse_DECISION_SEND {
		return p.notSending(ctx, log, d, task, claim)
	}
	log.Info("claimed the send")

	// From here the claim must end in a published result: shutdown no longer
	// cancels, the lease bounds the work.
	expires := p.clock.Now().Add(p.cfg.ClaimLease)
	if exp := claim.GetLeaseExpiresAt(); exp != nil {
		expires = exp.AsTime()
	}
	workDeadline := expires.Add(-p.cfg.PublishReserve)
	work, cancel := context.WithDeadline(context.WithoutCancel(ctx), workDeadline)
	defer cancel()

	result := newResult(task, claim.GetClaimId())
	result.ClaimStateVersion = claim.GetStateVersion()
	held := &heldClaim{task: task, id: claim.GetClaimId(), version: claim.GetStateVersion()}
	var call callOutcome
	switch {
	case invalid != nil:
		log.WithError(invalid).Warn("task cannot be sent; recording FAILED")
		result.Error = &wadispatchv1.WhatsAppError{Reason: string(whatsapp.ReasonInvalidMessage), Message: invalid.Error()}
	case tokenErr != nil:
		log.WithError(tokenErr).Warn("no token for the lease; recording FAILED")
		result.Error = &wadispatchv1.WhatsAppError{Reason: ReasonTokenUnavailable, Message: tokenErr.Error()}
	case mediaRefused != nil:
		log.WithField("reason", mediaRefused.GetReason()).Warn("media refused before any call; recording FAILED")
		result.Error = mediaRefused
	case p.cfg.EnforceWindow && dispatch.FreeForm(task.GetType()) && claim.GetDriverWindowChecked() &&
		outsideWindow(claim.GetDriverLastInboundAt(), p.clock.Now()):
		msg := windowMessage(claim.GetDriverLastInboundAt())
		log.WithField("reason", ReasonOutsideWindow).Warn(msg + "; recording FAILED without calling WhatsApp")
		result.Error = &wadispatchv1.WhatsAppError{Reason: ReasonOutsideWindow, Message: msg}
	default:
		if media != nil {
			if result.Error = p.attachMedia(work, sender, msg, media); result.Error != nil {
				log.WithField("reason", result.Error.GetReason()).Warn("uploading the media failed; recording FAILED")
				break
			}
		}
		call = p.call(work, log, held, sender, msg, workDeadline)
		if held.id != result.ClaimId {
			result.ClaimId, result.ClaimStateVersion = held.id, held.version
			log = log.WithField("claimId", held.id)
		}
		switch {
		case call.reclaimErr != nil:
			log.WithError(call.reclaimErr).Warn("claiming again after the released wait failed; the redelivery takes the send over")
			return OutcomeRecorderUnavailable
		case call.reclaim != nil:
			return p.notSending(ctx, log.WithField("decision", dispatch.Label(call.reclaim.GetDecision())), d, task, call.reclaim)
		}
		if call.unknown {
			log.WithError(call.err).Error("WhatsApp may have accepted the message but gave no usable answer; publishing nothing, the claim will expire into UNKNOWN")
			return OutcomeOutcomeUnknown
		}
		result.Attempts = int32(call.attempts)
		result.CalledAt = timestamppb.New(call.calledAt)
		if call.err == nil {
			result.Outcome = wadispatchv1.Outcome_OUTCOME_SENT
			result.WhatsappMessageId = call.sent.MessageID
			log = log.WithField("wamid", call.sent.MessageID)
		} else {
			result.Error = whatsAppError(call.werr)
			if call.exhausted {
				result.Error.Reason = ReasonRetriesExhausted
			}
		}
	}
	result.CompletedAt = timestamppb.New(p.clock.Now())
	if result.Outcome != wadispatchv1.Outcome_OUTCOME_SENT {
		result.Outcome = wadispatchv1.Outcome_OUTCOME_FAILED
	}

	if err := p.publishResult(ctx, task, result); err != nil {
		log.WithError(err).Error("publishing the result failed; will retry")
		return OutcomePublishFailed
	}
	log.WithField("outcome", result.Outcome.String()).Info("result published")
	if call.exhausted {
		if err := p.deadLetter(ctx, d, result.GetError()); err != nil {
			log.WithError(err).Error("publishing to the dead-letter topic failed; will retry")
			return OutcomePublishFailed
		}
		log.Warn("retries exhausted; task published to the dead-letter topic")
		return OutcomeRetriesExhausted
	}
	if result.Outcome == wadispatchv1.Outcome_OUTCOME_SENT {
		return OutcomeSent
	}
	return OutcomeFailed
}

// notSending handles a claim answer other than SEND, first or after a
// released wait.
func (p *Processor) notSending(ctx context.Context, log *logrus.Entry, d consume.Message, task *wadispatchv1.SendTask, claim *wadispatchv1.ClaimSendResponse) Outcome {
	switch claim.GetDecision() {
	case wadispatchv1.ClaimSendResponse_DECISION_DONE:
		return p.republish(ctx, log, d, task, claim)
	case wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT:
		log.WithField("reason", claim.GetReason()).Info("another sender holds the send; nacked")
		return OutcomeInFlight
	case wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN:
		log.WithField("reason", claim.GetReason()).Warn("send outcome is UNKNOWN after an expired claim; sending nothing (an operator may resend)")
		return OutcomeUnknown
	}
	log.Error("recorder answered without a decision; will retry")
	return OutcomeRecorderUnavailable
}

// claimFailed classifies a ClaimSend error: the recorder's refusal of the
// task is final, anything else (the recorder or Firestore behind it down,
// a deadline, a credential) is an outage that holds the task.
func (p *Processor) claimFailed(log *logrus.Entry, err error) Outcome {
	log = log.WithError(err).WithField("grpcCode", status.Code(err).String())
	switch status.Code(err) {
	case codes.InvalidArgument:
		return p.poison(log, "claim_refused", err)
	case codes.NotFound:
		log.Warn("the message document is gone; nothing to send")
		return OutcomeMessageGone
	}
	log.Warn("claim failed; holding the task until the recorder answers")
	return OutcomeRecorderUnavailable
}

func (p *Processor) poison(log *logrus.Entry, reason string, err error) Outcome {
	p.metrics.poison.WithLabelValues(reason).Inc()
	log.WithError(err).WithField("reason", reason).Error("poison task; nacking until the subscription dead-letters it")
	return OutcomePoison
}

// claimWaiting claims the send and, while another sender holds it, asks
// again every InFlightRecheck (sooner when that claim's lease ends first),
// keeping the task in hand: a nack would spend a delivery attempt each
// time, and a claim lives for a whole lease. It gives up with the last
// answer after a lease's worth of waiting, or when the sender stops.
func (p *Processor) claimWaiting(ctx context.Context, log *logrus.Entry, task *wadispatchv1.SendTask) (*wadispatchv1.ClaimSendResponse, error) {
	giveUp := p.clock.Now().Add(p.cfg.ClaimLease)
	for {
		claim, err := p.claim(ctx, task)
		if err != nil {
			p.metrics.claims.WithLabelValues("error").Inc()
			return nil, err
		}
		p.metrics.claims.WithLabelValues(dispatch.Label(claim.GetDecision())).Inc()
		if claim.GetDecision() != wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT || !p.clock.Now().Before(giveUp) {
			return claim, nil
		}
		wait := p.cfg.InFlightRecheck
		if exp := claim.GetLeaseExpiresAt(); exp != nil {
			wait = min(wait, max(exp.AsTime().Sub(p.clock.Now()), 0))
		}
		log.WithField("reason", claim.GetReason()).Infof("another sender holds the send; asking again in %s", wait)
		if p.clock.Sleep(ctx, wait) != nil {
			return claim, nil
		}
	}
}

// claim asks the recorder for the send. A claim under way is not cancelled by
// shutdown: the recorder may grant it, and a granted claim left unanswered
// would expire into UNKNOWN for a message nobody sent.
func (p *Processor) claim(ctx context.Context, task *wadispatchv1.SendTask) (*wadispatchv1.ClaimSendResponse, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ClaimTimeout)
	defer cancel()
	resp, err := p.claimer.ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{
		Task:     task,
		Claimant: p.cfg.Claimant,
		Lease:    durationpb.New(p.cfg.ClaimLease),
	})
	if err != nil {
		return nil, fmt.Errorf("claim send: %w", err)
	}
	return resp, nil
}

// republish publishes a recorded outcome again, since the earlier delivery
// may have died before its publish was confirmed; the recorder applies a
// result once. A task that had exhausted its retries goes to the dead-letter
// topic again for the same reason.
func (p *Processor) republish(ctx context.Context, log *logrus.Entry, d consume.Message, task *wadispatchv1.SendTask, claim *wadispatchv1.ClaimSendResponse) Outcome {
	result := claim.GetResult()
	if result == nil {
		log.Warn("send already done but the recorder returned no result; nothing to republish")
		return OutcomeDuplicate
	}
	log = log.WithField("wamid", result.GetWhatsappMessageId())
	if err := p.publishResult(ctx, task, result); err != nil {
		log.WithError(err).Error("republishing the recorded result failed; will retry")
		return OutcomePublishFailed
	}
	if result.GetOutcome() == wadispatchv1.Outcome_OUTCOME_FAILED && result.GetError().GetReason() == ReasonRetriesExhausted {
		if err := p.deadLetter(ctx, d, result.GetError()); err != nil {
			log.WithError(err).Error("publishing to the dead-letter topic failed; will retry")
			return OutcomePublishFailed
		}
	}
	log.WithField("outcome", result.GetOutcome().String()).Info("send already done; recorded result republished, nothing sent")
	return OutcomeDuplicate
}

// callOutcome is how the WhatsApp calls of one task ended.
type callOutcome struct {
	sent     whatsapp.Sent
	err      error
	werr     *whatsapp.Error
	attempts int
	calledAt time.Time
	// exhausted: the last error was retryable but no attempt is left.
	exhausted bool
	// unknown: WhatsApp may have accepted the message.
	unknown bool
	// reclaim is the answer, other than SEND, to claiming again after a
	// released wait; reclaimErr the failure of that claim. Either way no
	// claim is held any more.
	reclaim    *wadispatchv1.ClaimSendResponse
	reclaimErr error
}

// heldClaim is the claim a task's WhatsApp calls are made under; a released
// wait replaces it.
type heldClaim struct {
	task *wadispatchv1.SendTask
	id   string
	// version is the state version the claim was answered with, which the
	// result carries back (SendResult.claim_state_version); nil when none.
	version *timestamppb.Timestamp
}

// releaseResult is how a ReleaseClaim call ended.
type releaseResult int

const (
	// releaseKept: the recorder did not release (it predates ReleaseClaim);
	// the claim is still held, as before releases existed.
	releaseKept releaseResult = iota
	// releaseUnsure: the call failed without saying whether the release
	// landed (timeout, recorder unavailable). If it did, a redelivery may
	// hold the send now, so calling under the old claim could send twice.
	releaseUnsure
	// releaseDone: the recorder marked the claim released.
	releaseDone
	// releaseLost: the recorder refused, because the claim is no longer the
	// current one or an outcome is recorded: it is not this sender's to
	// call under any more.
	releaseLost
)

func (r releaseResult) label() string {
	switch r {
	case releaseDone:
		return "released"
	case releaseLost:
		return "refused"
	case releaseUnsure:
		return "unsure"
	}
	return "error"
}

// classifyRelease turns a ReleaseClaim error into what the sender may do.
func classifyRelease(err error) releaseResult {
	switch {
	case err == nil:
		return releaseDone
	case status.Code(err) == codes.FailedPrecondition:
		return releaseLost
	case status.Code(err) == codes.Unimplemented:
		return releaseKept
	}
	return releaseUnsure
}

// release tells the recorder that no call of this claim is in flight and
// none succeeded, so that if this sender dies while it waits the next
// delivery sends at once instead of the claim expiring into UNKNOWN.
func (p *Processor) release(ctx context.Context, log *logrus.Entry, c *heldClaim, reason string) releaseResult {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ClaimTimeout)
	defer cancel()
	_, err := p.claimer.ReleaseClaim(ctx, &wadispatchv1.ReleaseClaimRequest{
		MessageDocId: c.task.GetMessageDocId(), ClaimId: c.id, Reason: reason,
	})
	r := classifyRelease(err)
	p.metrics.releases.WithLabelValues(r.label()).Inc()
	if err != nil {
		log.WithError(err).WithField("grpcCode", status.Code(err).String()).Warn("releasing the claim for the retry wait failed")
	}
	return r
}

// call calls WhatsApp until it answers for good, retrying retryable errors
// while attempts and the lease allow. The first call's rate-limiter slot was
// taken before claiming.
//
// The deadline, from the first claim, bounds all the retries, also those
// made under later claims. Before each wait the claim is released and after
// it claimed again: a sender killed while it waits then leaves a message
// the next delivery sends, not an UNKNOWN one.
func (p *Processor) call(ctx context.Context, log *logrus.Entry, held *heldClaim, s whatsapp.Sender, m whatsapp.Message, deadline time.Time) callOutcome {
	bo := retry.Backoff(p.cfg.InitialBackoff, p.cfg.MaxBackoff)
	var out callOutcome
	counted := 0
	for {
		out.attempts++
		out.calledAt = p.clock.Now()
		sent, err := p.wa.Send(ctx, s, withCallback(m, held))
		latency := p.clock.Now().Sub(out.calledAt)
		p.metrics.callDuration.Observe(latency.Seconds())
		clog := log.WithFields(logrus.Fields{"attempt": out.attempts, "latencyMs": latency.Milliseconds()})
		if err == nil {
			p.metrics.calls.WithLabelValues("ok", "").Inc()
			clog.WithFields(logrus.Fields{"wamid": sent.MessageID, "phoneNumberId": s.PhoneNumberID}).Info("WhatsApp accepted the message")
			out.sent, out.err, out.werr = sent, nil, nil
			return out
		}
		var werr *whatsapp.Error
		if !errors.As(err, &werr) {
			// Not the client's classification: nothing says the message was
			// not sent, so it must not be sent again.
			p.metrics.calls.WithLabelValues("", "unclassified").Inc()
			clog.WithError(err).Warn("WhatsApp call failed without a classification; the message may have been sent")
			out.err, out.unknown = err, true
			return out
		}
		out.err, out.werr = err, werr
		code := ""
		if werr.HasCode {
			code = strconv.Itoa(werr.Code)
		}
		p.metrics.calls.WithLabelValues(code, string(werr.Reason)).Inc()
		clog = clog.WithFields(logrus.Fields{"code": code, "reason": werr.Reason, "httpStatus": werr.HTTPStatus, "fbtraceId": werr.FBTraceID, "retryable": werr.Retryable()})
		if werr.OutcomeUnknown() {
			clog.WithError(err).Warn("WhatsApp gave no usable answer; the message may have been sent")
			out.unknown = true
			return out
		}
		if !werr.Retryable() {
			clog.WithError(err).Warn("WhatsApp refused the message")
			return out
		}
		rateLimited := werr.Reason == whatsapp.ReasonThroughputLimit || werr.Reason == whatsapp.ReasonPairRateLimit
		if werr.Reason == whatsapp.ReasonThroughputLimit {
			p.limiters.SlowDown(s.PhoneNumberID, p.clock.Now())
		}
		if !rateLimited {
			counted++
			if counted >= p.cfg.MaxAttempts {
				clog.WithError(err).Warn("WhatsApp call failed; no attempt left")
				out.exhausted = true
				return out
			}
		}
		wait := max(bo.NextBackOff(), werr.RetryAfter())
		// Another call must fit in the lease after the wait.
		if p.clock.Now().Add(wait + p.cfg.CallTimeout).After(deadline) {
			clog.WithError(err).Warn("WhatsApp call failed; the claim's lease leaves no time for another attempt")
			out.exhausted = true
			return out
		}
		p.metrics.retries.WithLabelValues(string(werr.Reason)).Inc()
		rel := p.release(ctx, clog, held, string(werr.Reason))
		clog.WithField("claimReleased", rel == releaseDone).WithError(err).Infof("WhatsApp call failed; retrying in %s", wait.Round(time.Millisecond))
		if err := p.clock.Sleep(ctx, wait); err != nil {
			out.exhausted = true
			return out
		}
		if err := p.pace(ctx, s.PhoneNumberID, deadline.Sub(p.clock.Now())-p.cfg.CallTimeout); err != nil {
			clog.WithError(err).Warn("the rate limiter leaves no time for another attempt within the claim's lease")
			out.exhausted = true
			return out
		}
		// Releasing is idempotent: while the recorder cannot say whether the
		// claim is free, ask again as long as the lease leaves time for a
		// call; no call of this claim is in flight meanwhile.
		for rel == releaseUnsure {
			if rel = p.release(ctx, clog, held, string(werr.Reason)); rel != releaseUnsure {
				break
			}
			if p.clock.Now().Add(p.cfg.ClaimTimeout + p.cfg.CallTimeout).After(deadline) {
				out.reclaimErr = errors.New("the claim's release is unconfirmed; not calling under it")
				return out
			}
			_ = p.clock.Sleep(ctx, bo.NextBackOff())
		}
		if rel == releaseKept {
			continue
		}
		claim, err := p.claim(ctx, held.task)
		if err != nil {
			p.metrics.claims.WithLabelValues("error").Inc()
			out.reclaimErr = err
			return out
		}
		p.metrics.claims.WithLabelValues(dispatch.Label(claim.GetDecision())).Inc()
		if claim.GetDecision() != wadispatchv1.ClaimSendResponse_DECISION_SEND {
			out.reclaim = claim
			return out
		}
		held.id, held.version = claim.GetClaimId(), claim.GetStateVersion()
		log = log.WithField("claimId", held.id)
		clog.WithField("newClaimId", held.id).Info("claimed the send again after the wait")
	}
}

// errNoSlot: the rate limiter has no slot within the time allowed.
var errNoSlot = errors.New("no rate limiter slot in time")

// pace waits for the phone number's next slot, at most maxWait.
func (p *Processor) pace(ctx context.Context, phoneNumberID string, maxWait time.Duration) error {
	wait, ok := p.limiters.Reserve(phoneNumberID, p.clock.Now(), maxWait)
	if !ok {
		return fmt.Errorf("%w (next slot in %s)", errNoSlot, wait)
	}
	if wait <= 0 {
		return nil
	}
	p.metrics.rateWaits.Observe(wait.Seconds())
	return p.clock.Sleep(ctx, wait)
}

func newResult(task *wadispatchv1.SendTask, claimID string) *wadispatchv1.SendResult {
	return &wadispatchv1.SendResult{
		MessageDocId:       task.GetMessageDocId(),
		LeaseId:            task.GetLeaseId(),
		EnquiryId:          task.GetEnquiryId(),
		MessageId:          task.GetMessageId(),
		DriverMobileNumber: task.GetDriverMobileNumber(),
		CreatedBy:          task.GetCreatedBy(),
		ClaimId:            claimID,
		CreatedAt:          task.GetCreatedAt(),
	}
}

func whatsAppError(e *whatsapp.Error) *wadispatchv1.WhatsAppError {
	out := &wadispatchv1.WhatsAppError{
		Code:       int32(e.Code),
		Subcode:    int32(e.Subcode),
		Type:       e.Type,
		Message:    e.Message,
		Details:    e.Details,
		FbtraceId:  e.FBTraceID,
		HttpStatus: int32(e.HTTPStatus),
		Retryable:  e.Retryable(),
		Reason:     string(e.Reason),
	}
	if !e.HasCode {
		// A transport failure has no Meta message; its error string (which
		// never holds the token) says what happened.
		out.Message = e.Error()
	}
	return out
}

// publishResult publishes and waits for the confirmation. The result is the
// truth about a send, so it is published even while the sender stops.
func (p *Processor) publishResult(ctx context.Context, task *wadispatchv1.SendTask, r *wadispatchv1.SendResult) error {
	data, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	attrs := map[string]string{
		"messagePath": r.GetMessageDocId(),
		"leaseId":     r.GetLeaseId(),
		"type":        dispatch.Label(task.GetType()),
		"outcome":     dispatch.Label(r.GetOutcome()),
		"schema":      string(proto.MessageName(r)),
	}
	return p.publish(ctx, p.cfg.ResultsTopic, data, tracing.Inject(ctx, attrs))
}

// publish publishes and waits for the server's confirmation, trying again
// with backoff for up to PublishRetryFor, also while the sender stops: a
// result given up on is a send the recorder never hears of, and a nack
// would bring a redelivery that finds this claim still in flight.
func (p *Processor) publish(ctx context.Context, topic string, data []byte, attrs map[string]string) error {
	ctx = context.WithoutCancel(ctx)
	giveUp := p.clock.Now().Add(p.cfg.PublishRetryFor)
	bo := retry.Backoff(p.cfg.InitialBackoff, p.cfg.MaxBackoff)
	for {
		attempt, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
		err := p.publisher.Publish(attempt, topic, data, attrs)
		cancel()
		if err == nil {
			return nil
		}
		wait := bo.NextBackOff()
		if p.clock.Now().Add(wait).After(giveUp) {
			return fmt.Errorf("publish to %s: %w", topic, err)
		}
		p.metrics.publishRetries.WithLabelValues(topic).Inc()
		p.log.WithError(err).WithFields(logrus.Fields{"topic": topic, "messagePath": attrs["messagePath"]}).Warnf("publish failed; trying again in %s", wait.Round(time.Millisecond))
		_ = p.clock.Sleep(ctx, wait)
	}
}

// deadLetter publishes the task as received, with why it failed, so
// operators see it next to the tasks Pub/Sub dead-lettered (wadispatchctl
// deadletters reads these attributes).
func (p *Processor) deadLetter(ctx context.Context, d consume.Message, e *wadispatchv1.WhatsAppError) error {
	attrs := maps.Clone(d.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs[sendtask.AttrFailureReason] = ReasonRetriesExhausted
	attrs[sendtask.AttrLastErrorReason] = e.GetReason()
	if e.GetCode() != 0 {
		attrs[sendtask.AttrLastErrorCode] = strconv.Itoa(int(e.GetCode()))
	}
	if err := p.publish(ctx, p.cfg.DeadLetterTopic, d.Data, attrs); err != nil {
		return err
	}
	p.metrics.deadLetters.Inc()
	return nil
}

// outsideWindow reports whether a driver who last wrote at last (nil:
// never) is outside the customer-service window at now.
func outsideWindow(last *timestamppb.Timestamp, now time.Time) bool {
	return last == nil || now.Sub(last.AsTime()) >= CustomerServiceWindow
}

func windowMessage(last *timestamppb.Timestamp) string {
	if last == nil {
		return "free-form message to a driver who never wrote to this business number; only templates may open the conversation"
	}
	return "free-form message to a driver whose last message (" + last.AsTime().UTC().Format(time.RFC3339) +
		") is more than 24 hours old; only templates may reopen the conversation"
}
