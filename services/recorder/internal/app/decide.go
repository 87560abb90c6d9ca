package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// ExpiredClaimPolicy says what a claim that expired without an outcome
// becomes: nobody can know whether WhatsApp got the message.
type ExpiredClaimPolicy string

const (
	// PolicyUnknown marks it UNKNOWN and sends nothing; an operator decides.
	PolicyUnknown ExpiredClaimPolicy = "unknown"
	// PolicyResend lets the next claim take it over and send again, at the
	// risk of the driver getting the message twice.
	PolicyResend ExpiredClaimPolicy = "resend"
)

// ParsePolicy reads RECORDER_EXPIRED_CLAIM_POLICY.
func ParsePolicy(s string) (ExpiredClaimPolicy, error) {
	switch p := ExpiredClaimPolicy(strings.ToLower(s)); p {
	case PolicyUnknown, PolicyResend:
		return p, nil
	}
	return "", fmt.Errorf("expired claim policy %q: want %q or %q", s, PolicyUnknown, PolicyResend)
}

type claimAction int

const (
	claimCreate      claimAction = iota // no state yet: create it, precondition "does not exist"
	claimTakeover                       // replace the claim, precondition update_time
	claimDone                           // outcome recorded: return it
	claimInFlight                       // a live claim holds the send
	claimMarkUnknown                    // expired without outcome: mark UNKNOWN first
	claimUnknown                        // already UNKNOWN
	claimResolve                        // left behind, but WhatsApp said its call went out: record that (resolvedBy)
)

// decideClaim decides a claim for a message whose state is st (nil when
// none exists) at now.
func decideClaim(st *State, now time.Time, policy ExpiredClaimPolicy) (claimAction, string) {
	if st == nil {
		return claimCreate, ""
	}
	status := dispatch.Status(st.Status)
	if st.ResendRequested && (status == dispatch.StatusUnknown || status == dispatch.StatusFailed) {
		return claimTakeover, "resend requested by " + orUnknown(st.ResendRequestedBy)
	}
	if st.Outcome != "" {
		return claimDone, "outcome " + st.Outcome + " recorded"
	}
	switch status {
	case dispatch.StatusSending:
		live := !st.Released && st.LeaseExpiresAt.After(now)
		if _, _, sent := sendEvidence(st); sent && !live {
			// WhatsApp's statuses of the claim's call came, its result did
			// not: the message went out, and sending it again would be a
			// duplicate.
			return claimResolve, "claim " + st.ClaimID + " by " + orUnknown(st.Claimant) + " left no outcome; WhatsApp reported its message sent"
		}
		if st.Released {
			// Its holder said no call of its was in flight: sending now
			// cannot duplicate, whatever the lease says.
			return claimTakeover, "claim " + st.ClaimID + " released by " + orUnknown(st.Claimant)
		}
		if live {
			return claimInFlight, "claimed by " + orUnknown(st.Claimant)
		}
		if policy == PolicyResend {
			return claimTakeover, "claim by " + orUnknown(st.Claimant) + " expired; policy resend"
		}
		return claimMarkUnknown, unknownReason(st)
	case dispatch.StatusUnknown:
		if policy == PolicyResend {
			return claimTakeover, "outcome unknown; policy resend"
		}
		return claimUnknown, st.Reason
	}
	// A final status reached without a recorded outcome (nothing writes one
	// today) is treated as done: sending again could only duplicate.
	return claimDone, "status " + st.Status
}

func unknownReason(st *State) string {
	return fmt.Sprintf("claim %s by %s expired at %s without an outcome", st.ClaimID, orUnknown(st.Claimant),
		st.LeaseExpiresAt.UTC().Format(time.RFC3339))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

type releaseAction int

const (
	releaseApply   releaseAction = iota // mark the claim released, precondition update_time
	releaseAlready                      // released before: answer so, write nothing
	releaseRefuse                       // not the caller's to release
)

// decideRelease decides a release of claimID on a message whose state is
// st (nil when none). Only the current claim, still SENDING without an
// outcome, may be released: anything else means the send moved on without
// the caller, and marking it would hide that.
func decideRelease(st *State, claimID string) (releaseAction, string) {
	switch {
	case st == nil:
		return releaseRefuse, "no claim exists"
	case st.Outcome != "":
		return releaseRefuse, "outcome " + st.Outcome + " recorded"
	case st.ClaimID != claimID:
		return releaseRefuse, "claim " + claimID + " is not the current claim (" + orUnknown(st.ClaimID) + ")"
	case st.Status != string(dispatch.StatusSending):
		return releaseRefuse, "status is " + st.Status
	case st.Released:
		return releaseAlready, "released before"
	}
	return releaseApply, ""
}

// resendable reports whether an operator may have a message sent again:
// UNKNOWN or FAILED, or SENDING under a released claim whose task never
// came back (nothing of it is in flight, and republishing its task lets
// the next claim take it over).
func resendable(st *State) bool {
	switch dispatch.Status(st.Status) {
	case dispatch.StatusUnknown, dispatch.StatusFailed:
		return true
	case dispatch.StatusSending:
		return st.Released && st.Outcome == ""
	}
	return false
}

// released is st once its claim's holder released it. The lease goes with
// it, so the sweeper, which looks for expired leases, never finds a
// released claim: nothing of its was in flight, so it must not become
// UNKNOWN.
func released(st *State, reason string, now time.Time) State {
	out := *st
	out.Released, out.ReleasedAt, out.ReleaseReason = true, now, reason
	out.LeaseExpiresAt, out.UpdatedAt = time.Time{}, now
	return out
}

// resendRequested is st once an operator asked for it to be sent again;
// the next claim takes it over.
func resendRequested(st *State, by string, now time.Time) State {
	out := *st
	out.ResendRequested, out.ResendRequestedBy, out.ResendRequestedAt, out.UpdatedAt = true, by, now, now
	return out
}

// claim is a new claim on a message.
type claim struct {
	ID       string
	Claimant string
	Lease    time.Duration
	Task     *wadispatchv1.SendTask
	Ref      dispatch.MessageRef
}

// claimed is the state once c holds the send: the first claim creates it
// from the task; a takeover of an expired or resend-requested claim is a
// new send attempt, so the previous attempt's outcome, error and release go.
func claimed(st *State, c claim, task map[string]any, now time.Time) State {
	var out State
	if st == nil {
		out = State{MessagePath: c.Ref.Path(), LeaseID: c.Ref.LeaseID, EnquiryID: c.Ref.EnquiryID, MessageID: c.Ref.MessageID,
			DriverMobileNumber: c.Task.GetDriverMobileNumber(), CreatedBy: c.Task.GetCreatedBy()}
		if t := c.Task.GetCreatedAt(); t != nil {
			out.CreatedAt = t.AsTime()
		}
	} else {
		out = *st
		out.Outcome, out.Error, out.Reason, out.WhatsappMessageID, out.RecordID = "", nil, "", "", ""
		out.ResendRequested, out.ResendRequestedBy = false, ""
		out.Released, out.ReleasedAt, out.ReleaseReason = false, time.Time{}, ""
		// What the previous claim's call reported alone (a failure) is
		// not the new call's.
		out.EarlyStatuses = nil
	}
	out.Claims++
	out.ClaimID, out.Claimant, out.ClaimedAt, out.LeaseExpiresAt = c.ID, c.Claimant, now, now.Add(c.Lease)
	out.Status, out.Task, out.UpdatedAt = string(dispatch.StatusSending), task, now
	return out
}

// claimedState is, as far as recording r decides on it, the state the
// first claim of r's message (claimed from no state) wrote at version:
// SENDING under r's claim, with the task's driver and creator. The claim's
// lease ended after its commit, so version stands in for its end: the
// recording only clears it.
func claimedState(ref dispatch.MessageRef, r *wadispatchv1.SendResult, version time.Time) State {
	st := State{MessagePath: ref.Path(), LeaseID: ref.LeaseID, EnquiryID: ref.EnquiryID, MessageID: ref.MessageID,
		DriverMobileNumber: r.GetDriverMobileNumber(), CreatedBy: r.GetCreatedBy(), Status: string(dispatch.StatusSending),
		ClaimID: r.GetClaimId(), Claims: 1, LeaseExpiresAt: version}
	if t := r.GetCreatedAt(); t != nil {
		st.CreatedAt = t.AsTime()
	}
	return st
}

// claimMessage is what a claim changes on the message document.
func claimMessage(now time.Time) *MessageUpdate {
	return &MessageUpdate{Status: dispatch.StatusSending, StatusUpdatedAt: now, ClearStatusReason: true, ClearFailure: true}
}

// markedUnknown is an expired claim marked UNKNOWN, on the state and the
// message.
func markedUnknown(st *State, reason string, now time.Time) (State, *MessageUpdate) {
	out := *st
	out.Status, out.Reason, out.LeaseExpiresAt, out.UpdatedAt = string(dispatch.StatusUnknown), reason, time.Time{}, now
	return out, &MessageUpdate{Status: dispatch.StatusUnknown, StatusReason: reason, StatusUpdatedAt: now}
}

// recordPlan is what recording a result does, decided from the state read.
type recordPlan struct {
	// apply is false when the outcome is recorded already (or the status
	// may not move): nothing is written but the ancillary record.
	apply  bool
	reason string
	state  State
	// message is nil when the message document does not exist.
	message *MessageUpdate
	// countSent: increment the user's counter and index the wamid.
	countSent bool
	// unapplied are the statuses kept early that the outcome leaves
	// unapplied (withEarly), for the log.
	unapplied []EarlyStatus
}

// outcomeStatus is the status a result's outcome moves the message to.
func outcomeStatus(o wadispatchv1.Outcome) dispatch.Status {
	switch o {
	case wadispatchv1.Outcome_OUTCOME_SENT:
		return dispatch.StatusSent
	case wadispatchv1.Outcome_OUTCOME_FAILED:
		return dispatch.StatusFailed
	}
	return ""
}

// validateResult checks what recording needs; the error is the caller's fault.
func validateResult(r *wadispatchv1.SendResult) (dispatch.MessageRef, error) {
	if r == nil {
		return dispatch.MessageRef{}, fmt.Errorf("result is required")
	}
	ref, err := dispatch.ParseMessagePath(r.GetMessageDocId())
	if err != nil {
		return ref, fmt.Errorf("message_doc_id: %w", err)
	}
	switch outcomeStatus(r.GetOutcome()) {
	case dispatch.StatusSent:
		if r.GetWhatsappMessageId() == "" {
			return ref, fmt.Errorf("a SENT result needs whatsapp_message_id")
		}
		if err := checkDocID("driver_mobile_number", r.GetDriverMobileNumber()); err != nil {
			return ref, err
		}
	case dispatch.StatusFailed:
	default:
		return ref, fmt.Errorf("outcome %v: want SENT or FAILED", r.GetOutcome())
	}
	if r.GetLeaseId() != "" && r.GetLeaseId() != ref.LeaseID || r.GetEnquiryId() != "" && r.GetEnquiryId() != ref.EnquiryID {
		return ref, fmt.Errorf("lease_id/enquiry_id do not match message_doc_id")
	}
	return ref, nil
}

// checkDocID refuses a value that names a document by Firestore's rules.
// The value is quoted by its first characters only: it is often a
// driver's phone number, which has no place in logs.
func checkDocID(name, v string) error {
	if err := dispatch.CheckDocumentID(v); err != nil {
		return fmt.Errorf("%s %q as a document id %w", name, dispatch.Clip(v, 6), err)
	}
	return nil
}

// decideRecord plans recording r on a message whose state is st (nil when
// none: a result without a claim creates it) and whose document exists or
// not. recordID marks this attempt so a commit retried by the client
// library is recognised as ours. kept are the statuses kept on the index
// document of a SENT result's wamid (Decide), applied with the outcome.
func decideRecord(st *State, messageExists bool, r *wadispatchv1.SendResult, ref dispatch.MessageRef, recordID string, kept []*wadispatchv1.StatusEvent, now time.Time) recordPlan {
	to := outcomeStatus(r.GetOutcome())
	if st != nil && st.Outcome != "" {
		return recordPlan{reason: "outcome " + st.Outcome + " recorded before"}
	}
	if st != nil && to == dispatch.StatusFailed && st.Status == string(dispatch.StatusSending) &&
		r.GetClaimId() != "" && r.GetClaimId() != st.ClaimID {
		// A newer claim took the send over; its own result decides. (A
		// superseded claim's SENT is applied: that message did go out.)
		return recordPlan{reason: "failure of superseded claim " + r.GetClaimId() + "; claim " + st.ClaimID + " is in flight"}
	}
	if st != nil && !dispatch.CanMove(dispatch.Status(st.Status), to) {
		return recordPlan{reason: fmt.Sprintf("status %s may not move to %s", st.Status, to)}
	}
	p := recordPlan{apply: true, countSent: to == dispatch.StatusSent}
	if st != nil {
		p.state = *st
	} else {
		p.state = State{MessagePath: ref.Path(), LeaseID: ref.LeaseID, EnquiryID: ref.EnquiryID, MessageID: ref.MessageID,
			DriverMobileNumber: r.GetDriverMobileNumber(), CreatedBy: r.GetCreatedBy()}
		if t := r.GetCreatedAt(); t != nil {
			p.state.CreatedAt = t.AsTime()
		}
	}
	out := &p.state
	out.Status, out.Outcome, out.RecordID = string(to), string(to), recordID
	out.Attempts, out.UpdatedAt, out.LeaseExpiresAt, out.ResendRequested = int64(r.GetAttempts()), now, time.Time{}, false
	if r.GetClaimId() != "" {
		out.ClaimID = r.GetClaimId()
	}
	completed := now
	if t := r.GetCompletedAt(); t != nil {
		completed = t.AsTime()
	}
	msg := &MessageUpdate{Status: to, StatusUpdatedAt: now}
	if to == dispatch.StatusSent {
		out.WhatsappMessageID, out.SentAt = r.GetWhatsappMessageId(), completed
		if out.DriverMobileNumber == "" {
			out.DriverMobileNumber = r.GetDriverMobileNumber()
		}
		msg.WhatsappMessageID, msg.SentAt = r.GetWhatsappMessageId(), completed
		msg.ClearFailure, msg.ClearStatusReason = st != nil, st != nil
	} else {
		out.Error, out.Reason, out.FailedAt = errorDocOf(r.GetError()), failureReason(r.GetError()), completed
		msg.Error, msg.FailureReason, msg.FailedAt = out.Error, out.Reason, completed
		msg.ClearStatusReason = st != nil
	}
	if messageExists {
		p.message = msg
	}
	sentWamid := ""
	if to == dispatch.StatusSent {
		sentWamid = r.GetWhatsappMessageId()
	}
	p.state, p.message, p.unapplied = withEarly(p.state, p.message, sentWamid, kept, now)
	return p
}

func failureReason(e *wadispatchv1.WhatsAppError) string {
	switch {
	case e.GetReason() != "":
		return e.GetReason()
	case e.GetCode() != 0:
		return fmt.Sprintf("whatsapp_error_%d", e.GetCode())
	}
	return "unspecified"
}

// metricsPath fills the metrics document path template.
func metricsPath(template, leaseID, createdBy string) (string, error) {
	if err := checkDocID("createdBy", createdBy); err != nil {
		return "", err
	}
	p := strings.NewReplacer("{leaseId}", leaseID, "{createdBy}", createdBy).Replace(template)
	if err := checkDocPath(p); err != nil {
		return "", fmt.Errorf("metrics document path %q: %w", p, err)
	}
	return p, nil
}

// checkDocPath checks p names a document: an even number of non-empty segments.
func checkDocPath(p string) error {
	segs := strings.Split(p, "/")
	if len(segs)%2 != 0 {
		return fmt.Errorf("odd number of segments")
	}
	for _, s := range segs {
		if s == "" || strings.ContainsAny(s, "{}") {
			return fmt.Errorf("empty or unfilled segment")
		}
	}
	return nil
}

// statusPlan is what applying a status event does.
type statusPlan struct {
	apply   bool
	reason  string
	state   State
	message MessageUpdate
}

// decideStatus plans applying a webhook status to a message in state st:
// its move, and its pricing (priced).
func decideStatus(st *State, ev *wadispatchv1.StatusEvent, now time.Time) statusPlan {
	return priced(st, decideMove(st, ev, now), ev, now)
}

// decideMove plans the move of a message in state st a webhook status
// makes.
func decideMove(st *State, ev *wadispatchv1.StatusEvent, now time.Time) statusPlan {
	to := dispatch.StatusFromProto(ev.GetStatus())
	from := dispatch.Status(st.Status)
	at := now
	if t := ev.GetTimestamp(); t != nil {
		at = t.AsTime()
	}
	if !dispatch.CanMove(from, to) {
		if from == dispatch.StatusRead && to == dispatch.StatusDelivered && st.DeliveredAt.IsZero() {
			// Webhooks out of order: read came first. The status stays,
			// the delivery time is still worth knowing.
			p := statusPlan{apply: true, reason: "delivered after read: deliveredAt filled, status kept", state: *st,
				message: MessageUpdate{DeliveredAt: at}}
			p.state.DeliveredAt, p.state.UpdatedAt = at, now
			return p
		}
		return statusPlan{reason: fmt.Sprintf("status %s may not move to %s", from, to)}
	}
	p := statusPlan{apply: true, state: *st, message: MessageUpdate{Status: to, StatusUpdatedAt: now}}
	p.state.Status, p.state.UpdatedAt = string(to), now
	switch to {
	case dispatch.StatusSent:
		// Evidence that an UNKNOWN send went out.
		p.state.SentAt, p.message.SentAt = at, at
	case dispatch.StatusDelivered:
		p.state.DeliveredAt, p.message.DeliveredAt = at, at
	case dispatch.StatusRead:
		p.state.ReadAt, p.message.ReadAt = at, at
	case dispatch.StatusFailed:
		var e *wadispatchv1.WhatsAppError
		if len(ev.GetErrors()) > 0 {
			e = ev.GetErrors()[0]
		}
		p.state.Error, p.state.Reason, p.state.FailedAt = errorDocOf(e), failureReason(e), at
		p.message.Error, p.message.FailureReason, p.message.FailedAt = p.state.Error, p.state.Reason, at
	}
	p.message.ClearStatusReason = from == dispatch.StatusUnknown || from == dispatch.StatusFailed
	return p
}
