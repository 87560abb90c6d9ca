package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/retry"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Config holds the recorder's settings.
type Config struct {
	// ClaimLease is how long a claim holds without an outcome when the
	// request names none. Default 2m.
	ClaimLease time.Duration
	// ExpiredClaimPolicy: PolicyUnknown (default) or PolicyResend.
	ExpiredClaimPolicy ExpiredClaimPolicy
	// MetricsDocPath is the template of the sending user's metrics document.
	// Default leasecompany/{leaseId}/performanceMetrics/{createdBy}.
	MetricsDocPath string
	// AncillaryAttemptTimeout bounds one try of the ancillary write, so a
	// hung connection is retried (and logged) instead of waited on. Default 10s.
	AncillaryAttemptTimeout time.Duration
	// PendingStatusTTL is how long status events of a wamid no result
	// recorded are kept after the last of them came, before the sweep
	// drops them as statuses of a message wadispatch never sent.
	// Default 1h.
	PendingStatusTTL time.Duration
	// StalledAge is how long ago a claim must have been released, its task
	// not back since, to count as stalled (ListStalled's default, and the
	// stalled-claims gauge). Default 10m: a released task normally comes
	// back within seconds.
	StalledAge time.Duration
	// Metrics; nil registers a set on a registry of its own.
	Metrics *Metrics
	// Clock tells the time of the recorder's own decisions (pending-status
	// TTL, stalled age, inbound receipt); default time.Now. A test of a TTL
	// moves it instead of sleeping through it.
	Clock func() time.Time
}

// DefaultMetricsDocPath is the metrics document of the seed flow.
const DefaultMetricsDocPath = "leasecompany/{leaseId}/performanceMetrics/{createdBy}"

func (c *Config) defaults() error {
	if c.ClaimLease <= 0 {
		c.ClaimLease = 2 * time.Minute
	}
	if c.ExpiredClaimPolicy == "" {
		c.ExpiredClaimPolicy = PolicyUnknown
	}
	if _, err := ParsePolicy(string(c.ExpiredClaimPolicy)); err != nil {
		return err
	}
	if c.MetricsDocPath == "" {
		c.MetricsDocPath = DefaultMetricsDocPath
	}
	if _, err := metricsPath(c.MetricsDocPath, "lease", "user"); err != nil {
		return fmt.Errorf("metrics document path template: %w", err)
	}
	if c.AncillaryAttemptTimeout <= 0 {
		c.AncillaryAttemptTimeout = 10 * time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.PendingStatusTTL <= 0 {
		c.PendingStatusTTL = time.Hour
	}
	if c.StalledAge <= 0 {
		c.StalledAge = 10 * time.Minute
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return nil
}

// Republisher puts a task back on the tasks topic for a resend, as
// sendtask.Publisher does, with extra attributes beside the standard ones.
type Republisher interface {
	Publish(ctx context.Context, task *wadispatchv1.SendTask, extra map[string]string) (string, error)
}

// Service implements wadispatchv1.RecorderServer on two Firestore databases.
type Service struct {
	wadispatchv1.UnimplementedRecorderServer

	cfg     Config
	store   Store // (default): state, message documents, metrics, index
	replies Replies
	drivers Drivers
	tmpl    Templates
	anc     Ancillary
	pub     Republisher
	media   MediaFetches
	log     *logrus.Entry
	m       *Metrics
	now     func() time.Time
}

// Ports are what the recorder works through; all are required.
type Ports struct {
	Store     Store
	Replies   Replies
	Drivers   Drivers
	Templates Templates
	Ancillary Ancillary
	// Republisher puts resent tasks on the tasks topic.
	Republisher Republisher
	// Media asks for drivers' media to be fetched.
	Media MediaFetches
}

// NewService returns the recorder over the default and ancillary databases.
func NewService(cfg Config, p Ports, log *logrus.Entry) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if p.Store == nil || p.Replies == nil || p.Drivers == nil || p.Templates == nil || p.Ancillary == nil || p.Republisher == nil || p.Media == nil || log == nil {
		return nil, errors.New("record: both databases, both publishers and a logger are required")
	}
	return &Service{
		cfg: cfg, store: p.Store, replies: p.Replies, drivers: p.Drivers, tmpl: p.Templates, anc: p.Ancillary, pub: p.Republisher, media: p.Media,
		log: log, m: cfg.Metrics, now: cfg.Clock,
	}, nil
}

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, format, a...)
}

// ClaimSend implements wadispatchv1.RecorderServer.
func (s *Service) ClaimSend(ctx context.Context, req *wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
	task := req.GetTask()
	if task == nil {
		return nil, invalid("task is required")
	}
	ref, err := dispatch.ParseMessagePath(task.GetMessageDocId())
	if err != nil {
		return nil, invalid("task.message_doc_id: %v", err)
	}
	if err := checkDocID("task.driver_mobile_number", task.GetDriverMobileNumber()); err != nil {
		return nil, invalid("%v", err)
	}
	if task.GetLeaseId() != "" && task.GetLeaseId() != ref.LeaseID || task.GetEnquiryId() != "" && task.GetEnquiryId() != ref.EnquiryID {
		return nil, invalid("task lease_id/enquiry_id do not match message_doc_id")
	}
	c := claim{ID: uuid.NewString(), Claimant: orUnknown(req.GetClaimant()), Lease: s.cfg.ClaimLease, Task: task, Ref: ref}
	if l := req.GetLease(); l != nil {
		if err := l.CheckValid(); err != nil || l.AsDuration() <= 0 {
			return nil, invalid("lease must be positive")
		}
		// The recorder's own setting caps it: a longer lease would hide a
		// dead sender's claim from the sweeper and operators.
		c.Lease = min(l.AsDuration(), s.cfg.ClaimLease)
	}
	taskMap, err := taskFields(task)
	if err != nil {
		return nil, invalid("task: %v", err)
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": ref.Path(), "claimant": c.Claimant, "eventId": task.GetEventId()})
	// The sender checks WhatsApp's 24-hour window before sending a free-form
	// message. Read before claiming: a failed read then leaves no claim behind.
	var lastInbound *timestamppb.Timestamp
	if dispatch.FreeForm(task.GetType()) {
		if lastInbound, err = s.lastInbound(ctx, task.GetDriverMobileNumber(), task.GetLeaseWhatsappDetails().GetPhoneNumberId()); err != nil {
			log.WithError(err).Warn("claim not decided")
			return nil, err
		}
	}
	resp, err := s.claim(ctx, c, taskMap)
	if err != nil {
		log.WithError(err).Warn("claim not decided")
		return nil, err
	}
	if resp.GetDecision() == wadispatchv1.ClaimSendResponse_DECISION_SEND && dispatch.FreeForm(task.GetType()) {
		resp.DriverLastInboundAt, resp.DriverWindowChecked = lastInbound, true
	}
	s.m.claims.WithLabelValues(dispatch.Label(resp.GetDecision())).Inc()
	log.WithFields(logrus.Fields{"decision": resp.GetDecision().String(), "reason": resp.GetReason()}).Info("claim decided")
	return resp, nil
}

func (s *Service) claim(ctx context.Context, c claim, task map[string]any) (*wadispatchv1.ClaimSendResponse, error) {
	var (
		resp     *wadispatchv1.ClaimSendResponse
		marked   bool
		resolved string
		created  bool
	)
	version, err := s.commit(ctx, c.Ref, "claim", absent, func(st *State, exists bool, kept []*wadispatchv1.StatusEvent) (Plan, error) {
		marked, resolved, created = false, "", false
		if !exists {
			return Plan{}, status.Errorf(codes.NotFound, "message document %s does not exist (deleted?): nothing to send", c.Ref.Path())
		}
		// The client library retries a commit whose answer was lost; if the
		// first one landed, the claim is ours.
		if st != nil && st.ClaimID == c.ID && st.Status == string(dispatch.StatusSending) {
			resp = &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: c.ID, LeaseExpiresAt: ts(st.LeaseExpiresAt)}
			return Plan{}, nil
		}
		now := s.now()
		action, reason := decideClaim(st, now, s.cfg.ExpiredClaimPolicy)
		switch action {
		case claimCreate, claimTakeover:
			created = action == claimCreate
			next := claimed(st, c, task, now)
			resp = &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: c.ID,
				LeaseExpiresAt: ts(next.LeaseExpiresAt), Reason: reason}
			return Plan{State: &next, Message: claimMessage(now)}, nil
		case claimMarkUnknown:
			next, msg := markedUnknown(st, reason, now)
			resp, marked = &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN, Reason: reason}, true
			return Plan{State: &next, Message: msg}, nil
		case claimResolve:
			// Answered DONE: the caller republishes the result, whose
			// recording writes the ancillary record, as for any DONE.
			p, _ := resolvedBy(st, exists, c.Ref, uuid.NewString(), kept, now)
			resp, resolved = &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_DONE, Result: p.state.result(), Reason: reason}, resolvedFrom(st)
			return s.recordedPlan(c.Ref, p, p.state.CreatedBy, p.state.WhatsappMessageID, p.state.DriverMobileNumber, s.log), nil
		case claimDone:
			resp = &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_DONE, Result: st.result(), Reason: reason}
		case claimInFlight:
			resp = &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT, LeaseExpiresAt: ts(st.LeaseExpiresAt), Reason: reason}
		case claimUnknown:
			resp = &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN, Reason: reason}
		}
		return Plan{}, nil
	})
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	if created {
		// The result's commit is preconditioned on it (recordOutcome).
		resp.StateVersion = timestamppb.New(version)
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": c.Ref.Path(), "reason": resp.GetReason()})
	if marked {
		log.Warn("expired claim marked UNKNOWN")
	}
	if resolved != "" {
		s.resolvedSend(resp.GetResult().GetWhatsappMessageId(), resolved, log)
	}
	return resp, nil
}

// ReleaseClaim implements wadispatchv1.RecorderServer.
func (s *Service) ReleaseClaim(ctx context.Context, req *wadispatchv1.ReleaseClaimRequest) (*wadispatchv1.ReleaseClaimResponse, error) {
	ref, err := dispatch.ParseMessagePath(req.GetMessageDocId())
	if err != nil {
		return nil, invalid("message_doc_id: %v", err)
	}
	if req.GetClaimId() == "" {
		return nil, invalid("claim_id is required")
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": ref.Path(), "claimId": req.GetClaimId(), "reason": req.GetReason()})
	reason := orUnknown(dispatch.Clip(req.GetReason(), 200))
	var resp *wadispatchv1.ReleaseClaimResponse
	err = s.update(ctx, "release claim", ref, nil, func(st *State, _ bool, _ []*wadispatchv1.StatusEvent) (Plan, error) {
		action, why := decideRelease(st, req.GetClaimId())
		switch action {
		case releaseRefuse:
			s.m.releases.WithLabelValues("refused").Inc()
			log.WithField("why", why).Info("claim release refused")
			return Plan{}, status.Errorf(codes.FailedPrecondition, "release claim of %s: %s", ref.Path(), why)
		case releaseAlready:
			resp = &wadispatchv1.ReleaseClaimResponse{State: st.messageState()}
			return Plan{}, nil
		}
		next := released(st, reason, s.now())
		resp = &wadispatchv1.ReleaseClaimResponse{State: next.messageState(), Applied: true}
		return Plan{State: &next}, nil
	})
	if err != nil {
		return nil, err
	}
	if resp.GetApplied() {
		s.m.releases.WithLabelValues("released").Inc()
		log.Info("claim released")
	} else {
		s.m.releases.WithLabelValues("already").Inc()
	}
	return resp, nil
}

// RecordResult records a result from whatsapp-message-results (HandleResult).
func (s *Service) RecordResult(ctx context.Context, req *wadispatchv1.RecordResultRequest) (*wadispatchv1.RecordResultResponse, error) {
	start := time.Now()
	r := req.GetResult()
	ref, err := validateResult(r)
	if err != nil {
		return nil, invalid("result: %v", err)
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": ref.Path(), "wamid": r.GetWhatsappMessageId(), "outcome": r.GetOutcome().String()})
	st, applied, err := s.recordOutcome(ctx, ref, r, log)
	if err != nil {
		log.WithError(err).Warn("result not recorded")
		return nil, err
	}
	if wamids := sentIDs(st, r); len(wamids) > 0 {
		driver := st.DriverMobileNumber
		if driver == "" {
			driver = r.GetDriverMobileNumber()
		}
		if err := s.writeAncillary(ctx, ref, driver, wamids, log); err != nil {
			log.WithError(err).Warn("ancillary record not written")
			return nil, err
		}
	}
	if r.GetOutcome() == wadispatchv1.Outcome_OUTCOME_FAILED && r.GetError() != nil {
		at := s.now()
		if t := r.GetCalledAt(); t.IsValid() {
			at = t.AsTime()
		}
		if err := s.noteFailure(ctx, ref, st.DriverMobileNumber, []*wadispatchv1.WhatsAppError{r.GetError()}, at, log); err != nil {
			log.WithError(err).Warn("driver's record not updated")
			return nil, err
		}
	}
	s.m.results.WithLabelValues(st.Outcome, fmt.Sprint(applied)).Inc()
	s.m.recordLatency.Observe(time.Since(start).Seconds())
	log.WithField("applied", applied).Info("result recorded")
	return &wadispatchv1.RecordResultResponse{State: st.messageState(), Applied: applied}, nil
}

// recordOutcome commits the outcome on the default database and returns
// the state as recorded.
func (s *Service) recordOutcome(ctx context.Context, ref dispatch.MessageRef, r *wadispatchv1.SendResult, log *logrus.Entry) (*State, bool, error) {
	recordID := uuid.NewString()
	var (
		out       *State
		applied   bool
		unapplied []EarlyStatus
		keptFirst int // statuses kept on the wamid's index document, applied with it
	)
	err := s.update(ctx, "record", ref, assumedClaim(ref, r), func(st *State, exists bool, kept []*wadispatchv1.StatusEvent) (Plan, error) {
		unapplied, keptFirst = nil, len(kept)
		if st != nil && st.RecordID == recordID {
			out, applied = st, true // our commit landed; its answer was lost
			return Plan{}, nil
		}
		now := s.now()
		p := decideRecord(st, exists, r, ref, recordID, kept, now)
		if !p.apply { // only with a state: a missing one is always created
			log.WithField("reason", p.reason).Info("result recorded before; nothing to change")
			out, applied = st, false
			plan := Plan{Index: duplicateIndex(st, ref, r, log)}
			if plan.Index == nil {
				return plan, nil
			}
			// Statuses kept for the other send's wamid move the message as
			// they would once it is indexed.
			evs := slices.Clone(kept)
			sortEvents(evs)
			if next, msg, changed := withStatuses(*st, &MessageUpdate{}, evs, now); changed {
				plan.State, plan.Message, out = &next, msg, &next
			}
			return plan, nil
		}
		if !exists {
			log.Warn("message document does not exist; outcome recorded on the state only")
		}
		createdBy := r.GetCreatedBy()
		if createdBy == "" && st != nil {
			createdBy = st.CreatedBy
		}
		unapplied = p.unapplied
		out, applied = &p.state, true
		return s.recordedPlan(ref, p, createdBy, r.GetWhatsappMessageId(), r.GetDriverMobileNumber(), log), nil
	})
	if err != nil {
		return nil, false, err
	}
	if keptFirst > 0 {
		log.WithField("statuses", keptFirst).Info("statuses kept for the wamid before its result applied with it")
	}
	if len(unapplied) > 0 {
		log.WithField("statuses", earlySummary(unapplied)).Warn("statuses WhatsApp reported for this claim's call do not match its result (another wamid, or FAILED); not applied")
	}
	return out, applied, nil
}

// assumedClaim is the state r's claim left, when that claim answered its
// version (ClaimSendResponse.state_version: it created the state), for
// recording r without a read; nil otherwise.
//
// The version is proof enough; no MAC is needed. The commit that records
// r is preconditioned on the state's update time being that version, so
// it lands only if nothing wrote the state since the claim did: no status
// kept, no release, no takeover, no sweep, no earlier recording of r. A
// replayed result then fails the precondition, and so does one carrying a
// version that is not the state's current one (forged, stale, another
// message's): the state is read and decided on as before. A result that
// passes carries the version only the claim's caller was told, together
// with the claim id it was told with it; whoever can publish such a
// result on the results topic could publish one with the true claim id,
// which the read would accept as well, so a MAC over the version would
// prove nothing the topic's permissions do not. What is assumed besides
// the version is what every first claim writes the same way (claimed from
// no state: SENDING, a lease, no outcome, nothing kept, nothing released),
// and what the result carries from the task the claim was made with (its
// claim id, driver, creator), which recording takes from the result on the
// read path too. The fields the claim wrote that recording leaves as they
// are (the task, the claim's times) are not known here and not needed:
// the commit writes only what the decision changed.
func assumedClaim(ref dispatch.MessageRef, r *wadispatchv1.SendResult) *Assumed {
	v := r.GetClaimStateVersion()
	if !v.IsValid() || r.GetClaimId() == "" {
		return nil
	}
	st := claimedState(ref, r, v.AsTime())
	return &Assumed{State: &st, Version: v.AsTime()}
}

// recordedPlan is the commit of p, which records a send: its state and
// message and, when p counts the send, the sender's counter (once) and the
// wamid's index entry.
func (s *Service) recordedPlan(ref dispatch.MessageRef, p recordPlan, createdBy, wamid, driver string, log *logrus.Entry) Plan {
	plan := Plan{State: &p.state, Message: p.message}
	if !p.countSent {
		return plan
	}
	if path, err := metricsPath(s.cfg.MetricsDocPath, ref.LeaseID, createdBy); err != nil {
		log.WithError(err).Error("sent message not counted: no metrics document for its sender")
	} else {
		plan.CountSentIn = path
	}
	plan.Index = &IndexEntry{Wamid: wamid, Ref: ref, Driver: driver}
	return plan
}

// sentIDs are the wamids a result makes known: the recorded one and, when
// a second send of the message reached WhatsApp (a resend after UNKNOWN that
// was not lost after all), the result's own.
func sentIDs(st *State, r *wadispatchv1.SendResult) []string {
	var ids []string
	if st.Outcome == string(dispatch.StatusSent) && st.WhatsappMessageID != "" {
		ids = append(ids, st.WhatsappMessageID)
	}
	if w := r.GetWhatsappMessageId(); outcomeStatus(r.GetOutcome()) == dispatch.StatusSent && !slices.Contains(ids, w) {
		ids = append(ids, w)
	}
	return ids
}

// duplicateIndex is the index entry of the wamid of a SENT result that did
// not change the recorded outcome: the driver got that message too, and
// its status webhooks must find the message instead of being retried into
// the dead-letter topic.
func duplicateIndex(st *State, ref dispatch.MessageRef, r *wadispatchv1.SendResult, log *logrus.Entry) *IndexEntry {
	w := r.GetWhatsappMessageId()
	if outcomeStatus(r.GetOutcome()) != dispatch.StatusSent || w == st.WhatsappMessageID {
		return nil
	}
	log.WithField("recordedWamid", st.WhatsappMessageID).Warn("another send of this message reached WhatsApp; indexing its wamid too")
	return &IndexEntry{Wamid: w, Ref: ref, Driver: r.GetDriverMobileNumber()}
}

// writeAncillary adds the wamids to the ancillary record, trying until it
// lands or ctx ends: the result is not recorded until both databases hold
// it, and adding them again changes nothing.
func (s *Service) writeAncillary(ctx context.Context, ref dispatch.MessageRef, driver string, wamids []string, log *logrus.Entry) error {
	if err := checkDocID("driver_mobile_number", driver); err != nil {
		return status.Errorf(codes.FailedPrecondition, "ancillary record: %v", err)
	}
	bo := retry.Backoff(50*time.Millisecond, 5*time.Second)
	for try := 0; ; try++ {
		attempt, cancel := context.WithTimeout(ctx, s.cfg.AncillaryAttemptTimeout)
		err := s.anc.AddWamids(attempt, ref, driver, wamids)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return storeErr(ctx, err)
		}
		s.m.ancillaryRetry.Inc()
		log.WithError(err).WithField("try", try+1).Warn("ancillary record write failed; retrying")
		if retry.Pause(ctx, bo) != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}
