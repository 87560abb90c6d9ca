package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
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
	// MaxCommitAttempts bounds the tries of one decision when commits meet
	// contention or a changed state. Default 25.
	MaxCommitAttempts int
	// AncillaryAttemptTimeout bounds one try of the ancillary write, so a
	// hung connection is retried (and logged) instead of waited on. Default 10s.
	AncillaryAttemptTimeout time.Duration
	// IndexWait is how long a status event whose wamid is not indexed yet
	// waits for the result that indexes it (webhooks often overtake it)
	// before it is nacked. Default 5s.
	IndexWait time.Duration
	// StalledAge is how long ago a claim must have been released, its task
	// not back since, to count as stalled (ListStalled's default, and the
	// stalled-claims gauge). Default 10m: a released task normally comes
	// back within seconds.
	StalledAge time.Duration
	// Metrics; nil registers a set on a registry of its own.
	Metrics *Metrics
}

// DefaultMetricsDocPath is the metrics document of the seed flow.
const DefaultMetricsDocPath = "leasecompany/{leaseId}/performanceMetrics/{createdBy}"

// maxClaimLease bounds a requested lease: a longer one would hide a dead
// sender's claim from operators for too long.
const maxClaimLease = time.Hour

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
	if c.MaxCommitAttempts <= 0 {
		c.MaxCommitAttempts = 25
	}
	if c.AncillaryAttemptTimeout <= 0 {
		c.AncillaryAttemptTimeout = 10 * time.Second
	}
	if c.IndexWait <= 0 {
		c.IndexWait = 5 * time.Second
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

	cfg Config
	db  *firestore.Client // (default): state, message documents, metrics, index
	anc *firestore.Client // ancillary
	pub Republisher
	log *logrus.Entry
	m   *Metrics
	now func() time.Time
}

// NewService returns the recorder over the default and ancillary databases.
func NewService(cfg Config, defaultDB, ancillaryDB *firestore.Client, republisher Republisher, log *logrus.Entry) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if defaultDB == nil || ancillaryDB == nil || republisher == nil || log == nil {
		return nil, errors.New("record: both databases, a republisher and a logger are required")
	}
	return &Service{cfg: cfg, db: defaultDB, anc: ancillaryDB, pub: republisher, log: log, m: cfg.Metrics, now: time.Now}, nil
}

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, format, a...)
}

// storeErr turns a Firestore failure the recorder could not resolve into
// the caller's answer: transient (retry later) unless the caller gave up.
func storeErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Errorf(codes.Unavailable, "%s: firestore: %v", op, err)
}

// retryable reports whether a commit may succeed if simply tried again.
func retryable(err error) (string, bool) {
	switch status.Code(err) {
	case codes.Aborted:
		return "aborted", true
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Internal:
		return "unavailable", true
	}
	return "", false
}

// preconditionFailed reports a commit refused because a document changed
// (or appeared, or vanished) since it was read: read again and decide again.
func preconditionFailed(err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound:
		return true
	}
	return false
}

// exponential is the wait between tries, doubling up to max, jittered so
// that writers racing for one document spread out instead of colliding
// again.
func exponential(initial, max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: max}
}

// pause waits bo's next interval, or until ctx ends.
func pause(ctx context.Context, bo backoff.BackOff) error {
	t := time.NewTimer(bo.NextBackOff())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// commitRetrying commits ops, trying again while Firestore answers that it
// could not now (ABORTED under contention on a hot document, UNAVAILABLE):
// a burst becomes latency, not an error. The ops are guarded by
// preconditions, so a try whose answer was lost but which landed makes the
// next try fail its precondition instead of writing twice.
func (s *Service) commitRetrying(ctx context.Context, c *firestore.Client, ops ...op) error {
	bo := exponential(10*time.Millisecond, time.Second)
	for try := 0; ; try++ {
		err := commit(ctx, c, ops...)
		why, ok := retryable(err)
		if !ok || try+1 >= s.cfg.MaxCommitAttempts {
			return err
		}
		s.m.commitRetries.WithLabelValues(why).Inc()
		if err := pause(ctx, bo); err != nil {
			return err
		}
	}
}

// readState reads a message's state and whether its document exists, in
// one BatchGetDocuments.
func (s *Service) readState(ctx context.Context, ref dispatch.MessageRef) (*stateDoc, bool, error) {
	snaps, err := s.db.GetAll(ctx, []*firestore.DocumentRef{
		s.db.Doc(statePath(ref.Path())), s.db.Doc(ref.Path()),
	})
	if err != nil {
		return nil, false, err
	}
	st, err := decodeState(snaps[0])
	if err != nil {
		return nil, false, err
	}
	return st, snaps[1].Exists(), nil
}

func decodeState(snap *firestore.DocumentSnapshot) (*stateDoc, error) {
	if !snap.Exists() {
		return nil, nil
	}
	var st stateDoc
	if err := snap.DataTo(&st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", snap.Ref.Path, err)
	}
	st.updateTime = snap.UpdateTime
	return &st, nil
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
		if err := l.CheckValid(); err != nil || l.AsDuration() <= 0 || l.AsDuration() > maxClaimLease {
			return nil, invalid("lease must be between 0 and %s", maxClaimLease)
		}
		c.Lease = l.AsDuration()
	}
	taskMap, err := taskFields(task)
	if err != nil {
		return nil, invalid("task: %v", err)
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": ref.Path(), "claimant": c.Claimant, "eventId": task.GetEventId()})
	// The sender checks WhatsApp's 24-hour window before sending free-form
	// text. Read before claiming: a failed read then leaves no claim behind.
	var lastInbound *timestamppb.Timestamp
	if task.GetType() == wadispatchv1.MessageType_MESSAGE_TYPE_TEXT {
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
	if resp.GetDecision() == wadispatchv1.ClaimSendResponse_DECISION_SEND && task.GetType() == wadispatchv1.MessageType_MESSAGE_TYPE_TEXT {
		resp.DriverLastInboundAt, resp.DriverWindowChecked = lastInbound, true
	}
	s.m.claims.WithLabelValues(dispatch.Label(resp.GetDecision())).Inc()
	log.WithFields(logrus.Fields{"decision": resp.GetDecision().String(), "reason": resp.GetReason()}).Info("claim decided")
	return resp, nil
}

func (s *Service) claim(ctx context.Context, c claim, taskMap map[string]any) (*wadispatchv1.ClaimSendResponse, error) {
	stateRef, msgRef := s.db.Doc(statePath(c.Ref.Path())), s.db.Doc(c.Ref.Path())
	var st *stateDoc
	// The first try assumes no state exists: the common case costs one commit.
	read := false
	for range s.cfg.MaxCommitAttempts {
		now := s.now()
		action, reason := claimCreate, ""
		if read {
			action, reason = decideClaim(st, now, s.cfg.ExpiredClaimPolicy)
		}
		var err error
		switch action {
		case claimCreate:
			err = s.commitRetrying(ctx, s.db,
				op{kind: opCreate, ref: stateRef, data: newStateFields(c, taskMap, now)},
				op{kind: opUpdate, ref: msgRef, data: claimMessageFields(now)})
		case claimTakeover:
			err = s.commitRetrying(ctx, s.db,
				op{kind: opUpdate, ref: stateRef, data: takeoverFields(c, taskMap, now), pre: []firestore.Precondition{firestore.LastUpdateTime(st.updateTime)}},
				op{kind: opUpdate, ref: msgRef, data: claimMessageFields(now)})
		case claimMarkUnknown:
			stFields, msgFields := unknownFields(reason, now)
			err = s.commitRetrying(ctx, s.db,
				op{kind: opUpdate, ref: stateRef, data: stFields, pre: []firestore.Precondition{firestore.LastUpdateTime(st.updateTime)}},
				op{kind: opUpdate, ref: msgRef, data: msgFields})
			if err == nil {
				logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": c.Ref.Path(), "reason": reason}).Warn("expired claim marked UNKNOWN")
				return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN, Reason: reason}, nil
			}
		case claimDone:
			return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_DONE, Result: st.result(), Reason: reason}, nil
		case claimInFlight:
			return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT, LeaseExpiresAt: ts(st.LeaseExpiresAt), Reason: reason}, nil
		case claimUnknown:
			return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN, Reason: reason}, nil
		}
		if err == nil {
			return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: c.ID,
				LeaseExpiresAt: ts(now.Add(c.Lease)), Reason: reason}, nil
		}
		if !preconditionFailed(err) {
			return nil, storeErr(ctx, "claim", err)
		}
		if read {
			s.m.commitRetries.WithLabelValues("precondition").Inc()
		}
		var exists bool
		st, exists, err = s.readState(ctx, c.Ref)
		if err != nil {
			return nil, storeErr(ctx, "read state", err)
		}
		if !exists {
			return nil, status.Errorf(codes.FailedPrecondition, "message document %s does not exist (deleted?): nothing to send", c.Ref.Path())
		}
		// The client library retries a commit whose answer was lost; if the
		// first one landed, the claim is ours.
		if st != nil && st.ClaimID == c.ID && st.Status == string(dispatch.StatusSending) {
			return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: c.ID, LeaseExpiresAt: ts(st.LeaseExpiresAt)}, nil
		}
		read = true
	}
	return nil, status.Errorf(codes.Unavailable, "claim: state of %s kept changing; try again", c.Ref.Path())
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
	stateRef := s.db.Doc(statePath(ref.Path()))
	for range s.cfg.MaxCommitAttempts {
		st, _, err := s.readState(ctx, ref)
		if err != nil {
			return nil, storeErr(ctx, "read state", err)
		}
		action, why := decideRelease(st, req.GetClaimId())
		switch action {
		case releaseRefuse:
			s.m.releases.WithLabelValues("refused").Inc()
			log.WithField("why", why).Info("claim release refused")
			return nil, status.Errorf(codes.FailedPrecondition, "release claim of %s: %s", ref.Path(), why)
		case releaseAlready:
			s.m.releases.WithLabelValues("already").Inc()
			return &wadispatchv1.ReleaseClaimResponse{State: st.messageState()}, nil
		}
		now := s.now()
		reason := orUnknown(dispatch.Clip(req.GetReason(), 200))
		err = s.commitRetrying(ctx, s.db, op{kind: opUpdate, ref: stateRef, data: releaseFields(reason, now),
			pre: []firestore.Precondition{firestore.LastUpdateTime(st.updateTime)}})
		if err == nil {
			s.m.releases.WithLabelValues("released").Inc()
			log.Info("claim released")
			st.Released, st.ReleasedAt, st.ReleaseReason, st.LeaseExpiresAt, st.UpdatedAt = true, now, reason, time.Time{}, now
			return &wadispatchv1.ReleaseClaimResponse{State: st.messageState(), Applied: true}, nil
		}
		if !preconditionFailed(err) {
			return nil, storeErr(ctx, "release claim", err)
		}
		// Changed since read (or our commit landed and its answer was
		// lost): decide again on what is there now.
		s.m.commitRetries.WithLabelValues("precondition").Inc()
	}
	return nil, status.Errorf(codes.Unavailable, "release claim: state of %s kept changing; try again", ref.Path())
}

// RecordResult implements wadispatchv1.RecorderServer.
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
	s.m.results.WithLabelValues(st.Outcome, fmt.Sprint(applied)).Inc()
	s.m.recordLatency.Observe(time.Since(start).Seconds())
	log.WithField("applied", applied).Info("result recorded")
	return &wadispatchv1.RecordResultResponse{State: st.messageState(), Applied: applied}, nil
}

// recordOutcome commits the outcome on the default database and returns
// the state as recorded.
func (s *Service) recordOutcome(ctx context.Context, ref dispatch.MessageRef, r *wadispatchv1.SendResult, log *logrus.Entry) (*stateDoc, bool, error) {
	recordID := uuid.NewString()
	stateRef, msgRef := s.db.Doc(statePath(ref.Path())), s.db.Doc(ref.Path())
	for range s.cfg.MaxCommitAttempts {
		st, exists, err := s.readState(ctx, ref)
		if err != nil {
			return nil, false, storeErr(ctx, "read state", err)
		}
		if st != nil && st.RecordID == recordID {
			return st, true, nil // our commit landed; its answer was lost
		}
		now := s.now()
		plan := decideRecord(st, exists, r, ref, recordID, now)
		if !plan.apply { // only with a state: a missing one is always created
			log.WithField("reason", plan.reason).Info("result recorded before; nothing to change")
			if err := s.indexDuplicate(ctx, st, ref, r, log); err != nil {
				return nil, false, err
			}
			return st, false, nil
		}
		var ops []op
		if plan.create {
			ops = append(ops, op{kind: opCreate, ref: stateRef, data: plan.state})
		} else {
			ops = append(ops, op{kind: opUpdate, ref: stateRef, data: plan.state, pre: []firestore.Precondition{firestore.LastUpdateTime(st.updateTime)}})
		}
		if plan.message != nil {
			ops = append(ops, op{kind: opUpdate, ref: msgRef, data: plan.message})
		} else {
			log.Warn("message document does not exist; outcome recorded on the state only")
		}
		if plan.countSent {
			createdBy := r.GetCreatedBy()
			if createdBy == "" && st != nil {
				createdBy = st.CreatedBy
			}
			if p, err := metricsPath(s.cfg.MetricsDocPath, ref.LeaseID, createdBy); err != nil {
				log.WithError(err).Error("sent message not counted: no metrics document for its sender")
			} else {
				ops = append(ops, op{kind: opSetMerge, ref: s.db.Doc(p), data: map[string]any{fMetricsCounter: firestore.Increment(1)}})
			}
			ops = append(ops, op{kind: opSet, ref: s.db.Doc(dispatch.IndexPath(r.GetWhatsappMessageId())), data: indexFields(ref, r.GetDriverMobileNumber())})
		}
		err = s.commitRetrying(ctx, s.db, ops...)
		if err == nil {
			return recordedState(st, ref, r, recordID, now), true, nil
		}
		if !preconditionFailed(err) {
			return nil, false, storeErr(ctx, "record", err)
		}
		s.m.commitRetries.WithLabelValues("precondition").Inc()
	}
	return nil, false, status.Errorf(codes.Unavailable, "record: state of %s kept changing; try again", ref.Path())
}

// sentIDs are the wamids a result makes known: the recorded one and, when
// a second send of the message reached WhatsApp (a resend after UNKNOWN that
// was not lost after all), the result's own.
func sentIDs(st *stateDoc, r *wadispatchv1.SendResult) []string {
	var ids []string
	if st.Outcome == string(dispatch.StatusSent) && st.WhatsappMessageID != "" {
		ids = append(ids, st.WhatsappMessageID)
	}
	if w := r.GetWhatsappMessageId(); outcomeStatus(r.GetOutcome()) == dispatch.StatusSent && !slices.Contains(ids, w) {
		ids = append(ids, w)
	}
	return ids
}

// indexDuplicate indexes the wamid of a SENT result that did not change the
// recorded outcome: the driver got that message too, and its status
// webhooks must find the message instead of being retried into the
// dead-letter topic.
func (s *Service) indexDuplicate(ctx context.Context, st *stateDoc, ref dispatch.MessageRef, r *wadispatchv1.SendResult, log *logrus.Entry) error {
	w := r.GetWhatsappMessageId()
	if outcomeStatus(r.GetOutcome()) != dispatch.StatusSent || w == st.WhatsappMessageID {
		return nil
	}
	log.WithField("recordedWamid", st.WhatsappMessageID).Warn("another send of this message reached WhatsApp; indexing its wamid too")
	if err := s.commitRetrying(ctx, s.db, op{kind: opSet, ref: s.db.Doc(dispatch.IndexPath(w)), data: indexFields(ref, r.GetDriverMobileNumber())}); err != nil {
		return storeErr(ctx, "index duplicate wamid", err)
	}
	return nil
}

// recordedState is the state after recording r on st, as the commit wrote it.
func recordedState(st *stateDoc, ref dispatch.MessageRef, r *wadispatchv1.SendResult, recordID string, now time.Time) *stateDoc {
	var out stateDoc
	if st != nil {
		out = *st
	} else {
		out = stateDoc{MessagePath: ref.Path(), LeaseID: ref.LeaseID, EnquiryID: ref.EnquiryID, MessageID: ref.MessageID,
			DriverMobileNumber: r.GetDriverMobileNumber(), CreatedBy: r.GetCreatedBy()}
		if t := r.GetCreatedAt(); t != nil {
			out.CreatedAt = t.AsTime()
		}
	}
	to := outcomeStatus(r.GetOutcome())
	out.Status, out.Outcome, out.RecordID = string(to), string(to), recordID
	out.Attempts, out.UpdatedAt, out.LeaseExpiresAt, out.ResendRequested = int64(r.GetAttempts()), now, time.Time{}, false
	if r.GetClaimId() != "" {
		out.ClaimID = r.GetClaimId()
	}
	completed := now
	if t := r.GetCompletedAt(); t != nil {
		completed = t.AsTime()
	}
	if to == dispatch.StatusSent {
		out.WhatsappMessageID, out.SentAt = r.GetWhatsappMessageId(), completed
		if out.DriverMobileNumber == "" {
			out.DriverMobileNumber = r.GetDriverMobileNumber()
		}
	} else {
		out.Error, out.Reason, out.FailedAt = errorDocOf(r.GetError()), failureReason(r.GetError()), completed
	}
	return &out
}

func errorDocOf(e *wadispatchv1.WhatsAppError) *errorDoc {
	return &errorDoc{Code: int64(e.GetCode()), Subcode: int64(e.GetSubcode()), Type: e.GetType(), Message: e.GetMessage(),
		Details: e.GetDetails(), FbtraceID: e.GetFbtraceId(), HTTPStatus: int64(e.GetHttpStatus()), Retryable: e.GetRetryable(), Reason: e.GetReason()}
}

// writeAncillary adds the wamid to the ancillary record, trying until it
// lands or ctx ends: the result is not recorded until both databases hold
// it, and arrayUnion makes every repetition harmless.
func (s *Service) writeAncillary(ctx context.Context, ref dispatch.MessageRef, driver string, wamids []string, log *logrus.Entry) error {
	if err := checkDocID("driver_mobile_number", driver); err != nil {
		return status.Errorf(codes.FailedPrecondition, "ancillary record: %v", err)
	}
	doc := s.anc.Doc(dispatch.AncillaryPath(driver, ref.EnquiryID))
	bo := exponential(50*time.Millisecond, 5*time.Second)
	for try := 0; ; try++ {
		attempt, cancel := context.WithTimeout(ctx, s.cfg.AncillaryAttemptTimeout)
		err := commit(attempt, s.anc, op{kind: opSetMerge, ref: doc, data: ancillaryFields(ref, driver, wamids)})
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return storeErr(ctx, "ancillary record", err)
		}
		s.m.ancillaryRetry.Inc()
		log.WithError(err).WithField("try", try+1).Warn("ancillary record write failed; retrying")
		if err := pause(ctx, bo); err != nil {
			return storeErr(ctx, "ancillary record", err)
		}
	}
}

// ApplyStatus implements wadispatchv1.RecorderServer.
func (s *Service) ApplyStatus(ctx context.Context, req *wadispatchv1.ApplyStatusRequest) (*wadispatchv1.ApplyStatusResponse, error) {
	ev := req.GetEvent()
	wamid := ev.GetWhatsappMessageId()
	if wamid == "" || len(wamid) > 1500 {
		return nil, invalid("event.whatsapp_message_id is required")
	}
	switch dispatch.StatusFromProto(ev.GetStatus()) {
	case dispatch.StatusSent, dispatch.StatusDelivered, dispatch.StatusRead, dispatch.StatusFailed:
	default:
		return nil, invalid("event.status %v: want SENT, DELIVERED, READ or FAILED", ev.GetStatus())
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"wamid": wamid, "status": ev.GetStatus().String()})
	snap, err := s.readIndex(ctx, wamid)
	if status.Code(err) == codes.NotFound {
		s.m.statusEvents.WithLabelValues("not_indexed").Inc()
		// The result that indexes the wamid may still be on its way.
		return nil, status.Errorf(codes.Unavailable, "no message recorded for wamid %s yet", wamid)
	}
	if err != nil {
		return nil, storeErr(ctx, "read wamid index", err)
	}
	path, _ := snap.Data()["messagePath"].(string)
	ref, err := dispatch.ParseMessagePath(path)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "wamid index entry %s: %v", snap.Ref.ID, err)
	}
	log = log.WithField("messagePath", ref.Path())
	stateRef, msgRef := s.db.Doc(statePath(ref.Path())), s.db.Doc(ref.Path())
	for range s.cfg.MaxCommitAttempts {
		st, exists, err := s.readState(ctx, ref)
		if err != nil {
			return nil, storeErr(ctx, "read state", err)
		}
		if st == nil {
			return nil, status.Errorf(codes.FailedPrecondition, "message %s has no pipeline state", ref.Path())
		}
		plan := decideStatus(st, ev, s.now())
		if !plan.apply {
			s.m.statusEvents.WithLabelValues("ignored").Inc()
			log.WithField("reason", plan.reason).Info("status event changes nothing")
			return &wadispatchv1.ApplyStatusResponse{State: st.messageState()}, nil
		}
		ops := []op{{kind: opUpdate, ref: stateRef, data: plan.state, pre: []firestore.Precondition{firestore.LastUpdateTime(st.updateTime)}}}
		if exists {
			ops = append(ops, op{kind: opUpdate, ref: msgRef, data: plan.message})
		}
		err = s.commitRetrying(ctx, s.db, ops...)
		if err == nil {
			s.m.statusEvents.WithLabelValues("applied").Inc()
			log.Info("status applied")
			return &wadispatchv1.ApplyStatusResponse{State: plan.after.messageState(), Applied: true}, nil
		}
		if !preconditionFailed(err) {
			return nil, storeErr(ctx, "apply status", err)
		}
		s.m.commitRetries.WithLabelValues("precondition").Inc()
	}
	return nil, status.Errorf(codes.Unavailable, "apply status: state of %s kept changing; try again", ref.Path())
}
