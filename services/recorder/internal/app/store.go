//lint:file-ignore SA1019 WriteBatch is the client's only atomic multi-document commit without a transaction: the recorder guards its commits with preconditions instead of read locks, which saves a BeginTransaction round trip per write and never holds a lock on the hot metrics document.

package app

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
)

// Plan is what one decision writes, in one commit.
type Plan struct {
	// State replaces the state read; nil leaves it as it is.
	State *State
	// Message is written only if the message document exists: a message
	// deleted by the web app keeps its state, for operators.
	Message *MessageUpdate
	// CountSentIn is the metrics document whose counter the commit
	// increments; "" counts nothing.
	CountSentIn string
	// Index is the wamid index entry the commit sets; nil sets none.
	Index *IndexEntry
}

// IndexEntry maps a wamid to the message it was sent for.
type IndexEntry struct {
	Wamid  string
	Ref    dispatch.MessageRef
	Driver string
}

// update is the recorder's one way to change a message's state: it reads
// the state and the message document (one BatchGetDocuments), lets decide
// plan from them and commits the plan guarded by a precondition (the state
// must not exist, or must be as read).
//
// A precondition that fails means the state changed since it was read (or
// our own commit landed and its answer was lost, which decide recognises):
// it is read and decided again. A commit Firestore could not take now
// (ABORTED under contention on a hot document, UNAVAILABLE) is tried again
// with backoff, the same plan: a burst becomes latency, not an error.
// Both share one budget of Config.MaxCommitAttempts commits.
//
// assumeAbsent skips the first read and decides on "no state, message
// present": the common first claim costs one commit and no read.
func (s *Service) update(ctx context.Context, op string, ref dispatch.MessageRef, assumeAbsent bool, decide func(st *State, messageExists bool) (Plan, error)) error {
	var (
		st      *State
		exists  = true
		read    = !assumeAbsent
		plan    Plan
		decided bool
		lastErr error
		bo      = exponential(10*time.Millisecond, time.Second)
	)
	for range s.cfg.MaxCommitAttempts {
		if !decided {
			if read {
				var err error
				if st, exists, err = s.readState(ctx, ref); err != nil {
					return storeErr(ctx, "read state", err)
				}
			}
			var err error
			if plan, err = decide(st, exists); err != nil {
				return err
			}
			decided = true
		}
		err := s.commitPlan(ctx, ref, st, exists, plan)
		if err == nil {
			return nil
		}
		lastErr = err
		if preconditionFailed(err) {
			// Only a plan decided on what was read counts: the first
			// claim's guess is expected to miss.
			if read {
				s.m.commitRetries.WithLabelValues("precondition").Inc()
			}
			read, decided, lastErr = true, false, nil
			continue
		}
		why, ok := retryable(err)
		if !ok {
			return storeErr(ctx, op, err)
		}
		s.m.commitRetries.WithLabelValues(why).Inc()
		if err := pause(ctx, bo); err != nil {
			return storeErr(ctx, op, err)
		}
	}
	if lastErr != nil {
		return storeErr(ctx, op, lastErr)
	}
	return status.Errorf(codes.Unavailable, "%s: state of %s kept changing; try again", op, ref.Path())
}

// commitPlan writes p in one Commit: all or nothing.
func (s *Service) commitPlan(ctx context.Context, ref dispatch.MessageRef, read *State, messageExists bool, p Plan) error {
	b := s.db.Batch()
	writes := 0
	if p.State != nil {
		doc := s.db.Doc(statePath(ref.Path()))
		if read == nil {
			b.Create(doc, createFields(p.State))
		} else {
			b.Update(doc, stateFields(p.State), firestore.LastUpdateTime(read.updateTime))
		}
		writes++
	}
	if p.Message != nil && messageExists {
		b.Update(s.db.Doc(ref.Path()), messageFields(p.Message))
		writes++
	}
	if p.CountSentIn != "" {
		b.Set(s.db.Doc(p.CountSentIn), map[string]any{fMetricsCounter: firestore.Increment(1)}, firestore.MergeAll)
		writes++
	}
	if p.Index != nil {
		b.Set(s.db.Doc(dispatch.IndexPath(p.Index.Wamid)), indexFields(p.Index))
		writes++
	}
	if writes == 0 {
		return nil
	}
	_, err := b.Commit(ctx)
	return err
}

// stateFields is a State as written: every field the recorder owns, a zero
// one deleted (so a takeover's cleared outcome, or a released claim's
// lease, is gone from the document, not left behind as an empty value).
// Counts are written even when zero. It is the only place a State becomes
// fields, so the document written and the state answered cannot differ.
func stateFields(st *State) []firestore.Update {
	var us []firestore.Update
	put := func(path string, v any, zero bool) {
		if zero {
			v = firestore.Delete
		}
		us = append(us, firestore.Update{Path: path, Value: v})
	}
	str := func(path, v string) { put(path, v, v == "") }
	at := func(path string, v time.Time) { put(path, v, v.IsZero()) }
	flag := func(path string, v bool) { put(path, v, !v) }

	str("messagePath", st.MessagePath)
	str("leaseId", st.LeaseID)
	str(fEnquiryID, st.EnquiryID)
	str("messageId", st.MessageID)
	str(fDriver, st.DriverMobileNumber)
	str("createdBy", st.CreatedBy)
	str(fStatus, st.Status)
	str(fOutcome, st.Outcome)
	str("claimId", st.ClaimID)
	str("claimant", st.Claimant)
	put("claims", st.Claims, false)
	at("claimedAt", st.ClaimedAt)
	at(fLeaseExpiresAt, st.LeaseExpiresAt)
	str("whatsappMessageId", st.WhatsappMessageID)
	put("error", st.Error, st.Error == nil)
	str("reason", st.Reason)
	put("attempts", st.Attempts, false)
	str("recordId", st.RecordID)
	flag("resendRequested", st.ResendRequested)
	str("resendRequestedBy", st.ResendRequestedBy)
	at("resendRequestedAt", st.ResendRequestedAt)
	flag(fReleased, st.Released)
	at(fReleasedAt, st.ReleasedAt)
	str("releaseReason", st.ReleaseReason)
	at("createdAt", st.CreatedAt)
	at("sentAt", st.SentAt)
	at("failedAt", st.FailedAt)
	at("deliveredAt", st.DeliveredAt)
	at("readAt", st.ReadAt)
	at(fUpdatedAt, st.UpdatedAt)
	put("task", st.Task, len(st.Task) == 0)
	return us
}

// createFields is a new state document: stateFields without the deletes,
// which a create has nothing to delete from.
func createFields(st *State) map[string]any {
	m := map[string]any{}
	for _, u := range stateFields(st) {
		if u.Value != firestore.Delete {
			m[u.Path] = u.Value
		}
	}
	return m
}

// messageFields is a MessageUpdate as written on the message document.
func messageFields(m *MessageUpdate) []firestore.Update {
	var us []firestore.Update
	set := func(path string, v any) { us = append(us, firestore.Update{Path: path, Value: v}) }
	if m.Status != "" {
		set(fStatus, string(m.Status))
		set(fStatusUpdatedAt, m.StatusUpdatedAt)
	}
	switch {
	case m.StatusReason != "":
		set(fStatusReason, m.StatusReason)
	case m.ClearStatusReason:
		set(fStatusReason, firestore.Delete)
	}
	switch {
	case m.Error != nil:
		set(fWhatsappError, m.Error)
		set(fFailureReason, m.FailureReason)
	case m.ClearFailure:
		set(fWhatsappError, firestore.Delete)
		set(fFailureReason, firestore.Delete)
	}
	if m.WhatsappMessageID != "" {
		set("whatsappMessageId", m.WhatsappMessageID)
	}
	for _, t := range []struct {
		path string
		at   time.Time
	}{{"sentAt", m.SentAt}, {"failedAt", m.FailedAt}, {"deliveredAt", m.DeliveredAt}, {"readAt", m.ReadAt}} {
		if !t.at.IsZero() {
			set(t.path, t.at)
		}
	}
	return us
}

// indexFields is the wamid index entry as stored.
func indexFields(e *IndexEntry) map[string]any {
	return map[string]any{
		"messagePath":        e.Ref.Path(),
		"leaseId":            e.Ref.LeaseID,
		"enquiryId":          e.Ref.EnquiryID,
		"driverMobileNumber": e.Driver,
	}
}

// ancillaryFields is the ancillary record's update for a sent message;
// written with merge, so repeating it changes nothing but lastMessageAt.
func ancillaryFields(ref dispatch.MessageRef, driver string, wamids []string) map[string]any {
	ids := make([]any, len(wamids))
	for i, w := range wamids {
		ids[i] = w
	}
	return map[string]any{
		fAncillaryIDs:       firestore.ArrayUnion(ids...),
		"driverPhoneNumber": driver,
		"leaseId":           ref.LeaseID,
		"enquiryId":         ref.EnquiryID,
		"lastMessagePath":   ref.Path(),
		"lastMessageAt":     firestore.ServerTimestamp,
	}
}

// readState reads a message's state and whether its document exists, in
// one BatchGetDocuments.
func (s *Service) readState(ctx context.Context, ref dispatch.MessageRef) (*State, bool, error) {
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

func decodeState(snap *firestore.DocumentSnapshot) (*State, error) {
	if !snap.Exists() {
		return nil, nil
	}
	var st State
	if err := snap.DataTo(&st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", snap.Ref.Path, err)
	}
	st.updateTime = snap.UpdateTime
	return &st, nil
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
