package app

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/firestore"

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
)

// decideClaim decides a claim for a message whose state is st (nil when
// none exists) at now.
func decideClaim(st *stateDoc, now time.Time, policy ExpiredClaimPolicy) (claimAction, string) {
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
		if st.Released {
			// Its holder said no call of its was in flight: sending now
			// cannot duplicate, whatever the lease says.
			return claimTakeover, "claim " + st.ClaimID + " released by " + orUnknown(st.Claimant)
		}
		if st.LeaseExpiresAt.After(now) {
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

func unknownReason(st *stateDoc) string {
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
func decideRelease(st *stateDoc, claimID string) (releaseAction, string) {
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
func resendable(st *stateDoc) bool {
	switch dispatch.Status(st.Status) {
	case dispatch.StatusUnknown, dispatch.StatusFailed:
		return true
	case dispatch.StatusSending:
		return st.Released && st.Outcome == ""
	}
	return false
}

// releaseFields mark a claim released. The lease goes with it, so the
// sweeper, which looks for expired leases, never finds a released claim:
// nothing of its was in flight, so it must not become UNKNOWN.
func releaseFields(reason string, now time.Time) map[string]any {
	return map[string]any{
		fReleased:       true,
		fReleasedAt:     now,
		"releaseReason": reason,
		fLeaseExpiresAt: firestore.Delete,
		fUpdatedAt:      now,
	}
}

// claim is a new claim on a message.
type claim struct {
	ID       string
	Claimant string
	Lease    time.Duration
	Task     *wadispatchv1.SendTask
	Ref      dispatch.MessageRef
}

// newStateFields is the state document a first claim creates.
func newStateFields(c claim, task map[string]any, now time.Time) map[string]any {
	m := map[string]any{
		"messagePath":        c.Ref.Path(),
		"leaseId":            c.Ref.LeaseID,
		"enquiryId":          c.Ref.EnquiryID,
		"messageId":          c.Ref.MessageID,
		"driverMobileNumber": c.Task.GetDriverMobileNumber(),
		"createdBy":          c.Task.GetCreatedBy(),
		"task":               task,
		"claims":             int64(1),
		fUpdatedAt:           now,
	}
	if t := c.Task.GetCreatedAt(); t != nil {
		m["createdAt"] = t.AsTime()
	}
	for k, v := range claimFields(c, now) {
		m[k] = v
	}
	return m
}

func claimFields(c claim, now time.Time) map[string]any {
	return map[string]any{
		"claimId":       c.ID,
		"claimant":      c.Claimant,
		"claimedAt":     now,
		fLeaseExpiresAt: now.Add(c.Lease),
		fStatus:         string(dispatch.StatusSending),
	}
}

// takeoverFields replace an expired or resend-requested claim: a new send
// attempt, so the previous attempt's outcome and error go.
func takeoverFields(c claim, task map[string]any, now time.Time) map[string]any {
	m := claimFields(c, now)
	m["claims"] = firestore.Increment(1)
	m["task"] = task
	m[fUpdatedAt] = now
	for _, f := range []string{fOutcome, "error", "reason", "whatsappMessageId", "resendRequested", "resendRequestedBy", "recordId",
		fReleased, fReleasedAt, "releaseReason"} {
		m[f] = firestore.Delete
	}
	return m
}

// claimMessageFields is what a claim writes on the message document.
func claimMessageFields(now time.Time) map[string]any {
	return map[string]any{
		fStatus:          string(dispatch.StatusSending),
		fStatusUpdatedAt: now,
		fStatusReason:    firestore.Delete,
		fFailureReason:   firestore.Delete,
		fWhatsappError:   firestore.Delete,
	}
}

// unknownFields mark an expired claim UNKNOWN, on the state and the message.
func unknownFields(reason string, now time.Time) (state, message map[string]any) {
	state = map[string]any{
		fStatus:         string(dispatch.StatusUnknown),
		"reason":        reason,
		fLeaseExpiresAt: firestore.Delete,
		fUpdatedAt:      now,
	}
	message = map[string]any{
		fStatus:          string(dispatch.StatusUnknown),
		fStatusReason:    reason,
		fStatusUpdatedAt: now,
	}
	return state, message
}

// recordPlan is what recording a result does, decided from the state read.
type recordPlan struct {
	// apply is false when the outcome is recorded already (or the status
	// may not move): nothing is written but the ancillary record.
	apply  bool
	reason string
	// create: no state exists (a result without a claim); created with the
	// precondition "does not exist".
	create  bool
	state   map[string]any
	message map[string]any // nil when the message document does not exist
	// countSent: increment the user's counter and index the wamid.
	countSent bool
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
// none) and whose document exists or not. recordID marks this attempt so a
// commit retried by the client library is recognised as ours.
func decideRecord(st *stateDoc, messageExists bool, r *wadispatchv1.SendResult, ref dispatch.MessageRef, recordID string, now time.Time) recordPlan {
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
	p := recordPlan{apply: true, create: st == nil, countSent: to == dispatch.StatusSent}
	p.state = map[string]any{
		fStatus:           string(to),
		fOutcome:          string(to),
		"attempts":        int64(r.GetAttempts()),
		"recordId":        recordID,
		fUpdatedAt:        now,
		"resendRequested": false,
	}
	if r.GetClaimId() != "" {
		p.state["claimId"] = r.GetClaimId()
	}
	completed := now
	if t := r.GetCompletedAt(); t != nil {
		completed = t.AsTime()
	}
	msg := map[string]any{fStatus: string(to), fStatusUpdatedAt: now}
	if to == dispatch.StatusSent {
		p.state["whatsappMessageId"] = r.GetWhatsappMessageId()
		p.state["sentAt"] = completed
		msg["whatsappMessageId"] = r.GetWhatsappMessageId()
		msg["sentAt"] = completed
		if !p.create {
			msg[fWhatsappError] = firestore.Delete
			msg[fFailureReason] = firestore.Delete
			msg[fStatusReason] = firestore.Delete
		}
	} else {
		reason := failureReason(r.GetError())
		p.state["error"] = errorFields(r.GetError())
		p.state["reason"] = reason
		p.state["failedAt"] = completed
		msg[fWhatsappError] = errorFields(r.GetError())
		msg[fFailureReason] = reason
		msg["failedAt"] = completed
		if !p.create {
			msg[fStatusReason] = firestore.Delete
		}
	}
	if p.create {
		for k, v := range map[string]any{
			"messagePath": ref.Path(), "leaseId": ref.LeaseID, "enquiryId": ref.EnquiryID,
			"messageId": ref.MessageID, "driverMobileNumber": r.GetDriverMobileNumber(),
			"createdBy": r.GetCreatedBy(), "claims": int64(0),
		} {
			p.state[k] = v
		}
		if t := r.GetCreatedAt(); t != nil {
			p.state["createdAt"] = t.AsTime()
		}
	} else {
		p.state[fLeaseExpiresAt] = firestore.Delete
	}
	if messageExists {
		p.message = msg
	}
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

// indexFields is the wamid index entry.
func indexFields(ref dispatch.MessageRef, driver string) map[string]any {
	return map[string]any{
		"messagePath":        ref.Path(),
		"leaseId":            ref.LeaseID,
		"enquiryId":          ref.EnquiryID,
		"driverMobileNumber": driver,
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
	state   map[string]any
	message map[string]any
	after   stateDoc // the state once applied
}

// decideStatus plans applying a webhook status to a message in state st.
func decideStatus(st *stateDoc, ev *wadispatchv1.StatusEvent, now time.Time) statusPlan {
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
			p := statusPlan{
				apply:   true,
				reason:  "delivered after read: deliveredAt filled, status kept",
				state:   map[string]any{"deliveredAt": at, fUpdatedAt: now},
				message: map[string]any{"deliveredAt": at},
				after:   *st,
			}
			p.after.DeliveredAt, p.after.UpdatedAt = at, now
			return p
		}
		return statusPlan{reason: fmt.Sprintf("status %s may not move to %s", from, to)}
	}
	p := statusPlan{
		apply:   true,
		state:   map[string]any{fStatus: string(to), fUpdatedAt: now},
		message: map[string]any{fStatus: string(to), fStatusUpdatedAt: now},
		after:   *st,
	}
	p.after.Status, p.after.UpdatedAt = string(to), now
	switch to {
	case dispatch.StatusSent:
		// Evidence that an UNKNOWN send went out.
		p.state["sentAt"], p.message["sentAt"], p.after.SentAt = at, at, at
	case dispatch.StatusDelivered:
		p.state["deliveredAt"], p.message["deliveredAt"], p.after.DeliveredAt = at, at, at
	case dispatch.StatusRead:
		p.state["readAt"], p.message["readAt"], p.after.ReadAt = at, at, at
	case dispatch.StatusFailed:
		var e *wadispatchv1.WhatsAppError
		if len(ev.GetErrors()) > 0 {
			e = ev.GetErrors()[0]
		}
		reason := failureReason(e)
		p.state["error"], p.message[fWhatsappError], p.after.Error = errorFields(e), errorFields(e), errorDocOf(e)
		p.state["reason"], p.message[fFailureReason], p.after.Reason = reason, reason, reason
		p.state["failedAt"], p.message["failedAt"], p.after.FailedAt = at, at, at
	}
	if from == dispatch.StatusUnknown || from == dispatch.StatusFailed {
		p.message[fStatusReason] = firestore.Delete
	}
	return p
}

// updates turns a field map into an Update's field list, in a stable order.
func updates(m map[string]any) []firestore.Update {
	us := make([]firestore.Update, 0, len(m))
	for k, v := range m {
		us = append(us, firestore.Update{Path: k, Value: v})
	}
	slices.SortFunc(us, func(a, b firestore.Update) int { return strings.Compare(a.Path, b.Path) })
	return us
}
