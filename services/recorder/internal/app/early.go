package app

import (
	"fmt"
	"slices"
	"time"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// WhatsApp's status webhooks carry the claim a call was made under (the
// send's biz_opaque_callback_data, pkg/dispatch.Callback). The decisions
// here use that to resolve a send whose result never came and to keep the
// statuses that come before the result. They are pure, like decide.go's.

// maxEarlyStatuses bounds what one state keeps: a call has four statuses
// at most, and a state is one document.
const maxEarlyStatuses = 8

// progress orders statuses of one time as WhatsApp reports a message's
// progress; Meta's timestamps are whole seconds, so ties are common.
var progress = map[dispatch.Status]int{dispatch.StatusSent: 1, dispatch.StatusFailed: 2, dispatch.StatusDelivered: 3, dispatch.StatusRead: 4}

// eventTime is WhatsApp's time of a status, or now when it gave none.
func eventTime(ev *wadispatchv1.StatusEvent, now time.Time) time.Time {
	if t := ev.GetTimestamp(); t != nil {
		return t.AsTime()
	}
	return now
}

// sortEvents orders status events as WhatsApp reported them: by time, then
// by progress.
func sortEvents(evs []*wadispatchv1.StatusEvent) {
	slices.SortStableFunc(evs, func(a, b *wadispatchv1.StatusEvent) int {
		if c := a.GetTimestamp().AsTime().Compare(b.GetTimestamp().AsTime()); c != 0 {
			return c
		}
		return progress[dispatch.StatusFromProto(a.GetStatus())] - progress[dispatch.StatusFromProto(b.GetStatus())]
	})
}

// keptEarly is st keeping ev for the outcome of claimID, its current claim;
// false when it keeps that status of that wamid already (a redelivery).
func keptEarly(st *State, claimID string, ev *wadispatchv1.StatusEvent, now time.Time) (State, bool) {
	e := EarlyStatus{ClaimID: claimID, Wamid: ev.GetWhatsappMessageId(), Status: string(dispatch.StatusFromProto(ev.GetStatus())),
		At: eventTime(ev, now), ReceivedAt: now}
	if len(ev.GetErrors()) > 0 {
		e.Error = errorDocOf(ev.GetErrors()[0])
	}
	e.Pricing = pricingOf(ev, now)
	if slices.ContainsFunc(st.EarlyStatuses, func(k EarlyStatus) bool {
		return k.ClaimID == e.ClaimID && k.Wamid == e.Wamid && k.Status == e.Status
	}) {
		return *st, false
	}
	out := *st
	out.EarlyStatuses = append(slices.Clone(st.EarlyStatuses), e)
	out.UpdatedAt = now
	return out, true
}

// sendEvidence is WhatsApp's word that st's current claim's call went out:
// the wamid of the earliest sent, delivered or read status kept for that
// claim, and its time, taken as the send's. A failed status alone says
// nothing: Meta echoes no callback data in it.
func sendEvidence(st *State) (wamid string, sentAt time.Time, ok bool) {
	var evs []*wadispatchv1.StatusEvent
	for _, e := range st.EarlyStatuses {
		if e.ClaimID == st.ClaimID && dispatch.Status(e.Status) != dispatch.StatusFailed {
			evs = append(evs, e.event())
		}
	}
	if len(evs) == 0 {
		return "", time.Time{}, false
	}
	sortEvents(evs)
	return evs[0].GetWhatsappMessageId(), evs[0].GetTimestamp().AsTime(), true
}

// withEarly applies, to a plan that records wamid as sent, the statuses
// kept early for it and those kept on its index document (kept), in
// WhatsApp's order, and clears every kept status from the state. It
// returns the early ones it did not apply (another wamid, or a FAILED
// result: wamid ""), for the log: nothing will. The send time is then the
// earliest of the result's and WhatsApp's: a message is not delivered
// before it was sent, and the sender may hear of it later than WhatsApp
// says.
func withEarly(st State, msg *MessageUpdate, wamid string, kept []*wadispatchv1.StatusEvent, now time.Time) (State, *MessageUpdate, []EarlyStatus) {
	early := st.EarlyStatuses
	st.EarlyStatuses = nil
	evs := slices.Clone(kept)
	var unapplied []EarlyStatus
	for _, e := range early {
		if wamid != "" && e.Wamid == wamid {
			evs = append(evs, e.event())
		} else {
			unapplied = append(unapplied, e)
		}
	}
	sortEvents(evs)
	for _, ev := range evs {
		if at := ev.GetTimestamp().AsTime(); dispatch.StatusFromProto(ev.GetStatus()) != dispatch.StatusFailed && at.Before(st.SentAt) {
			st.SentAt = at
			if msg != nil {
				m := *msg
				m.SentAt = at
				msg = &m
			}
		}
	}
	st, msg, _ = withStatuses(st, msg, evs, now)
	return st, msg, unapplied
}

// withStatuses applies evs, in their order, to st and msg (nil when the
// message document does not exist); changed is false when none moved it.
func withStatuses(st State, msg *MessageUpdate, evs []*wadispatchv1.StatusEvent, now time.Time) (_ State, _ *MessageUpdate, changed bool) {
	for _, ev := range evs {
		p := decideStatus(&st, ev, now)
		if !p.apply {
			continue
		}
		st, changed = p.state, true
		if msg != nil {
			m := mergeMessage(*msg, p.message)
			msg = &m
		}
	}
	return st, msg, changed
}

// mergeMessage is a then b on the message document, in one write.
func mergeMessage(a, b MessageUpdate) MessageUpdate {
	if b.Status != "" {
		a.Status, a.StatusUpdatedAt = b.Status, b.StatusUpdatedAt
	}
	if b.StatusReason != "" {
		a.StatusReason = b.StatusReason
	}
	if b.WhatsappMessageID != "" {
		a.WhatsappMessageID = b.WhatsappMessageID
	}
	if b.Error != nil {
		a.Error, a.FailureReason = b.Error, b.FailureReason
	}
	for _, t := range []struct{ to, from *time.Time }{{&a.SentAt, &b.SentAt}, {&a.FailedAt, &b.FailedAt}, {&a.DeliveredAt, &b.DeliveredAt}, {&a.ReadAt, &b.ReadAt}} {
		if !t.from.IsZero() {
			*t.to = *t.from
		}
	}
	if b.Pricing != nil {
		a.Pricing = b.Pricing
	}
	a.ClearStatusReason = a.ClearStatusReason || b.ClearStatusReason
	a.ClearFailure = a.ClearFailure || b.ClearFailure
	return a
}

// resolvedBy plans resolving st's claim from WhatsApp's statuses kept for
// it (sendEvidence): what the SENT result of that call would have recorded
// (state, message, the sender's counter once, the wamid's index entry),
// then the statuses themselves, with those kept on the wamid's index
// document (kept). ok is false without evidence.
func resolvedBy(st *State, messageExists bool, ref dispatch.MessageRef, recordID string, kept []*wadispatchv1.StatusEvent, now time.Time) (recordPlan, bool) {
	wamid, sentAt, ok := sendEvidence(st)
	if !ok || st.Outcome != "" {
		return recordPlan{}, false
	}
	r := &wadispatchv1.SendResult{
		MessageDocId: ref.Path(), LeaseId: ref.LeaseID, EnquiryId: ref.EnquiryID, MessageId: ref.MessageID,
		DriverMobileNumber: st.DriverMobileNumber, CreatedBy: st.CreatedBy, ClaimId: st.ClaimID,
		Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: wamid, Attempts: int32(st.Attempts), CompletedAt: ts(sentAt),
	}
	p := decideRecord(st, messageExists, r, ref, recordID, kept, now)
	if !p.apply {
		return recordPlan{}, false
	}
	p.reason = fmt.Sprintf("WhatsApp reported the message of claim %s sent as %s", st.ClaimID, wamid)
	return p, true
}

type callbackAction int

const (
	// callbackNotOurs: the callback names no claim waiting for this
	// status; it is kept by wamid like one without a callback.
	callbackNotOurs callbackAction = iota
	// callbackApply: the claim's result recorded this wamid (after the
	// index was read); the status applies as usual.
	callbackApply
	// callbackKeep: kept on the state until the claim's outcome.
	callbackKeep
	// callbackKeptBefore: the same status is kept already.
	callbackKeptBefore
	// callbackResolve: the UNKNOWN message is resolved.
	callbackResolve
)

// callbackPlan is what a status whose wamid is not indexed does to the
// message its callback names.
type callbackPlan struct {
	action callbackAction
	reason string
	status statusPlan // callbackApply
	state  State      // callbackKeep
	record recordPlan // callbackResolve
}

// decideCallbackStatus plans a status event for a wamid no result
// recorded, whose callback names claimID of a message in state st (nil
// when none). A resolution is accepted only from the message's current
// claim, UNKNOWN: a status of an older claim's call says nothing of the
// current one. While the claim may still bring its result (SENDING) the
// status is kept for it. kept are the statuses kept on the index document
// of the wamid a resolution indexes (Decide).
func decideCallbackStatus(st *State, messageExists bool, claimID string, ev *wadispatchv1.StatusEvent, ref dispatch.MessageRef, recordID string, kept []*wadispatchv1.StatusEvent, now time.Time) callbackPlan {
	wamid := ev.GetWhatsappMessageId()
	switch {
	case st == nil:
		return callbackPlan{reason: "the message has no pipeline state"}
	case st.ClaimID != claimID:
		return callbackPlan{reason: "claim " + claimID + " is not the current claim (" + orUnknown(st.ClaimID) + ")"}
	case st.Outcome != "" && st.WhatsappMessageID == wamid:
		p := decideStatus(st, ev, now)
		return callbackPlan{action: callbackApply, reason: p.reason, status: p}
	case st.Outcome != "":
		return callbackPlan{reason: fmt.Sprintf("outcome %s recorded with wamid %q", st.Outcome, st.WhatsappMessageID)}
	case st.Status != string(dispatch.StatusSending) && st.Status != string(dispatch.StatusUnknown):
		return callbackPlan{reason: "status " + st.Status + " without an outcome"}
	}
	next, added := keptEarly(st, claimID, ev, now)
	if !added {
		return callbackPlan{action: callbackKeptBefore, reason: "kept before"}
	}
	if st.Status == string(dispatch.StatusUnknown) {
		if p, ok := resolvedBy(&next, messageExists, ref, recordID, kept, now); ok {
			return callbackPlan{action: callbackResolve, reason: p.reason, record: p}
		}
	}
	if len(st.EarlyStatuses) >= maxEarlyStatuses {
		return callbackPlan{reason: fmt.Sprintf("the state keeps %d statuses already", len(st.EarlyStatuses))}
	}
	return callbackPlan{action: callbackKeep, reason: "claim " + claimID + " is " + st.Status + " without an outcome", state: next}
}
