package app

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func statusAt(wamid string, s wadispatchv1.MessageStatus, at time.Time) *wadispatchv1.StatusEvent {
	return &wadispatchv1.StatusEvent{WhatsappMessageId: wamid, Status: s, Timestamp: timestamppb.New(at)}
}

var (
	evSent      = wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT
	evDelivered = wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED
	evRead      = wadispatchv1.MessageStatus_MESSAGE_STATUS_READ
	evFailed    = wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED
)

func early(claim, wamid string, s dispatch.Status, at time.Time) EarlyStatus {
	return EarlyStatus{ClaimID: claim, Wamid: wamid, Status: string(s), At: at, ReceivedAt: at}
}

func TestKeptEarlyOncePerStatus(t *testing.T) {
	st := &State{Status: "SENDING", ClaimID: "c1"}
	next, added := keptEarly(st, "c1", statusAt("w1", evDelivered, t0), t0)
	if !added || len(next.EarlyStatuses) != 1 || len(st.EarlyStatuses) != 0 {
		t.Fatalf("kept %+v (added %v); the state read has %+v", next.EarlyStatuses, added, st.EarlyStatuses)
	}
	if e := next.EarlyStatuses[0]; e.ClaimID != "c1" || e.Wamid != "w1" || e.Status != "DELIVERED" || !e.At.Equal(t0) {
		t.Errorf("kept %+v", e)
	}
	if _, added := keptEarly(&next, "c1", statusAt("w1", evDelivered, t0.Add(time.Second)), t0); added {
		t.Error("a redelivered status kept twice")
	}
	failed := statusAt("w1", evFailed, t0)
	failed.Errors = []*wadispatchv1.WhatsAppError{{Code: 131026, Reason: "undeliverable"}}
	if n, _ := keptEarly(&next, "c1", failed, t0); len(n.EarlyStatuses) != 2 || n.EarlyStatuses[1].Error == nil || n.EarlyStatuses[1].Error.Code != 131026 {
		t.Errorf("failed status kept as %+v", n.EarlyStatuses)
	}
}

func TestSendEvidence(t *testing.T) {
	cases := []struct {
		name  string
		kept  []EarlyStatus
		ok    bool
		wamid string
		at    time.Time
	}{
		{"none", nil, false, "", time.Time{}},
		{"failed alone", []EarlyStatus{early("c1", "w1", dispatch.StatusFailed, t0)}, false, "", time.Time{}},
		{"another claim's", []EarlyStatus{early("c0", "w0", dispatch.StatusRead, t0)}, false, "", time.Time{}},
		{"delivered", []EarlyStatus{early("c1", "w1", dispatch.StatusDelivered, t0)}, true, "w1", t0},
		{"read, then sent earlier", []EarlyStatus{early("c1", "w1", dispatch.StatusRead, t0.Add(time.Minute)), early("c1", "w1", dispatch.StatusSent, t0)}, true, "w1", t0},
	}
	for _, c := range cases {
		wamid, at, ok := sendEvidence(&State{Status: "SENDING", ClaimID: "c1", EarlyStatuses: c.kept})
		if ok != c.ok || wamid != c.wamid || !at.Equal(c.at) {
			t.Errorf("%s: %q %v %v, want %q %v %v", c.name, wamid, at, ok, c.wamid, c.at, c.ok)
		}
	}
}

// The result of a claim whose statuses came first records the send and
// then its statuses, in WhatsApp's order, in the same commit; it counts
// once, and the statuses kept go.
func TestResultAppliesTheStatusesKeptForIt(t *testing.T) {
	ref := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}
	// Webhooks in reverse, all within one second.
	st := &State{Status: "SENDING", ClaimID: "c1", EarlyStatuses: []EarlyStatus{
		early("c1", "wamid.A", dispatch.StatusRead, t0),
		early("c1", "wamid.A", dispatch.StatusDelivered, t0),
		early("c1", "wamid.A", dispatch.StatusSent, t0),
	}}
	r := sentResult()
	r.WhatsappMessageId = "wamid.A"
	r.CompletedAt = timestamppb.New(t0.Add(time.Second))
	p := decideRecord(st, true, r, ref, "rec", nil, t0.Add(time.Second))
	if !p.apply || !p.countSent || len(p.unapplied) != 0 {
		t.Fatalf("plan %+v", p)
	}
	if p.state.Status != "READ" || p.state.Outcome != "SENT" || p.state.WhatsappMessageID != "wamid.A" ||
		!p.state.DeliveredAt.Equal(t0) || !p.state.ReadAt.Equal(t0) || len(p.state.EarlyStatuses) != 0 {
		t.Errorf("state %+v", p.state)
	}
	// The sender heard a second after WhatsApp sent it.
	if m := p.message; m.Status != "READ" || m.WhatsappMessageID != "wamid.A" || !m.DeliveredAt.Equal(t0) || !m.ReadAt.Equal(t0) || !m.SentAt.Equal(t0) || !p.state.SentAt.Equal(t0) {
		t.Errorf("message update %+v", m)
	}
	// Redelivered, the result finds the outcome recorded.
	if again := decideRecord(&p.state, true, r, ref, "rec2", nil, t0); again.apply {
		t.Error("a redelivered result applied again")
	}

	// A FAILED result applies none of them: they are left for the log.
	p = decideRecord(st, true, failedResult(), ref, "rec", nil, t0)
	if p.state.Status != "FAILED" || len(p.unapplied) != 3 || len(p.state.EarlyStatuses) != 0 {
		t.Errorf("failed result: state %+v, unapplied %d", p.state, len(p.unapplied))
	}
	// A result of another wamid applies none of the first call's.
	r.WhatsappMessageId = "wamid.B"
	if p = decideRecord(st, true, r, ref, "rec", nil, t0); p.state.Status != "SENT" || len(p.unapplied) != 3 {
		t.Errorf("result of another wamid: state %+v, unapplied %d", p.state, len(p.unapplied))
	}
}

func TestResolvedByStatusesIsASentResult(t *testing.T) {
	ref := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}
	st := &State{Status: "UNKNOWN", ClaimID: "c1", Reason: "claim c1 expired", DriverMobileNumber: "+447700900123", CreatedBy: "u1",
		EarlyStatuses: []EarlyStatus{early("c1", "wamid.A", dispatch.StatusDelivered, t0)}}
	p, ok := resolvedBy(st, true, ref, "rec", nil, t0.Add(time.Minute))
	if !ok || !p.apply || !p.countSent {
		t.Fatalf("plan %+v, %v", p, ok)
	}
	if p.state.Outcome != "SENT" || p.state.Status != "DELIVERED" || p.state.WhatsappMessageID != "wamid.A" || !p.state.SentAt.Equal(t0) ||
		p.state.RecordID != "rec" || len(p.state.EarlyStatuses) != 0 {
		t.Errorf("state %+v", p.state)
	}
	if m := p.message; m.Status != "DELIVERED" || m.WhatsappMessageID != "wamid.A" || !m.ClearStatusReason || !m.DeliveredAt.Equal(t0) {
		t.Errorf("message update %+v", m)
	}
	// A late result of the same call finds the outcome recorded: counted once.
	r := sentResult()
	r.WhatsappMessageId = "wamid.A"
	if late := decideRecord(&p.state, true, r, ref, "rec2", nil, t0); late.apply || late.countSent {
		t.Errorf("late result after the resolution: %+v", late)
	}
	for name, st := range map[string]*State{
		"failed only":   {Status: "UNKNOWN", ClaimID: "c1", EarlyStatuses: []EarlyStatus{early("c1", "wamid.A", dispatch.StatusFailed, t0)}},
		"outcome known": {Status: "SENT", Outcome: "SENT", ClaimID: "c1", EarlyStatuses: []EarlyStatus{early("c1", "wamid.A", dispatch.StatusRead, t0)}},
	} {
		if _, ok := resolvedBy(st, true, ref, "rec", nil, t0); ok {
			t.Errorf("%s: resolved", name)
		}
	}
}

func TestDecideCallbackStatus(t *testing.T) {
	ref := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}
	delivered := statusAt("wamid.A", evDelivered, t0)
	full := make([]EarlyStatus, maxEarlyStatuses)
	for i := range full {
		full[i] = early("c1", "wamid.X", dispatch.StatusDelivered, t0.Add(time.Duration(i)*time.Second))
		full[i].Wamid += string(rune('a' + i))
	}
	cases := []struct {
		name  string
		st    *State
		ev    *wadispatchv1.StatusEvent
		claim string
		want  callbackAction
	}{
		{"no state", nil, delivered, "c1", callbackNotOurs},
		{"another claim", &State{Status: "UNKNOWN", ClaimID: "c2"}, delivered, "c1", callbackNotOurs},
		{"sending", &State{Status: "SENDING", ClaimID: "c1"}, delivered, "c1", callbackKeep},
		{"sending, released", &State{Status: "SENDING", ClaimID: "c1", Released: true}, delivered, "c1", callbackKeep},
		{"sending, kept before", &State{Status: "SENDING", ClaimID: "c1", EarlyStatuses: []EarlyStatus{early("c1", "wamid.A", dispatch.StatusDelivered, t0)}}, delivered, "c1", callbackKeptBefore},
		{"sending, the state full", &State{Status: "SENDING", ClaimID: "c1", EarlyStatuses: full}, delivered, "c1", callbackNotOurs},
		{"unknown", &State{Status: "UNKNOWN", ClaimID: "c1"}, delivered, "c1", callbackResolve},
		{"unknown, sent", &State{Status: "UNKNOWN", ClaimID: "c1"}, statusAt("wamid.A", evSent, t0), "c1", callbackResolve},
		{"unknown, read", &State{Status: "UNKNOWN", ClaimID: "c1"}, statusAt("wamid.A", evRead, t0), "c1", callbackResolve},
		{"unknown, failed", &State{Status: "UNKNOWN", ClaimID: "c1"}, statusAt("wamid.A", evFailed, t0), "c1", callbackKeep},
		{"result recorded this wamid since", &State{Status: "SENT", Outcome: "SENT", ClaimID: "c1", WhatsappMessageID: "wamid.A"}, delivered, "c1", callbackApply},
		{"result recorded another wamid", &State{Status: "SENT", Outcome: "SENT", ClaimID: "c1", WhatsappMessageID: "wamid.B"}, delivered, "c1", callbackNotOurs},
		{"failed", &State{Status: "FAILED", Outcome: "FAILED", ClaimID: "c1"}, delivered, "c1", callbackNotOurs},
	}
	for _, c := range cases {
		p := decideCallbackStatus(c.st, true, c.claim, c.ev, ref, "rec", nil, t0)
		if p.action != c.want {
			t.Errorf("%s: action %v (%s), want %v", c.name, p.action, p.reason, c.want)
		}
		switch p.action {
		case callbackKeep:
			if n := len(p.state.EarlyStatuses); n != len(c.st.EarlyStatuses)+1 {
				t.Errorf("%s: %d kept", c.name, n)
			}
		case callbackResolve:
			if !p.record.countSent || p.record.state.WhatsappMessageID != "wamid.A" || p.record.state.Outcome != "SENT" {
				t.Errorf("%s: resolution %+v", c.name, p.record)
			}
		case callbackApply:
			if !p.status.apply || p.status.state.Status != "DELIVERED" {
				t.Errorf("%s: status plan %+v", c.name, p.status)
			}
		}
	}
}

// A claim left behind (lease run out, or released for a retry wait) whose
// call WhatsApp reported sent is resolved, not marked UNKNOWN nor sent
// again; a live one still waits for its result.
func TestDecideClaimResolvesFromWhatsAppsWord(t *testing.T) {
	sent := []EarlyStatus{early("c1", "wamid.A", dispatch.StatusSent, t0)}
	cases := []struct {
		name   string
		st     *State
		policy ExpiredClaimPolicy
		want   claimAction
	}{
		{"expired", &State{Status: "SENDING", ClaimID: "c1", LeaseExpiresAt: t0.Add(-time.Second), EarlyStatuses: sent}, PolicyUnknown, claimResolve},
		{"expired, policy resend", &State{Status: "SENDING", ClaimID: "c1", LeaseExpiresAt: t0.Add(-time.Second), EarlyStatuses: sent}, PolicyResend, claimResolve},
		{"released", &State{Status: "SENDING", ClaimID: "c1", Released: true, EarlyStatuses: sent}, PolicyUnknown, claimResolve},
		{"live", &State{Status: "SENDING", ClaimID: "c1", LeaseExpiresAt: t0.Add(time.Minute), EarlyStatuses: sent}, PolicyUnknown, claimInFlight},
		{"expired, failed only", &State{Status: "SENDING", ClaimID: "c1", LeaseExpiresAt: t0.Add(-time.Second),
			EarlyStatuses: []EarlyStatus{early("c1", "wamid.A", dispatch.StatusFailed, t0)}}, PolicyUnknown, claimMarkUnknown},
	}
	for _, c := range cases {
		if got, _ := decideClaim(c.st, t0, c.policy); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	// A takeover is a new call: what the previous one reported goes.
	st := &State{Status: "SENDING", ClaimID: "c1", Released: true, EarlyStatuses: []EarlyStatus{early("c1", "wamid.A", dispatch.StatusFailed, t0)}}
	if next := claimed(st, claim{ID: "c2", Task: &wadispatchv1.SendTask{}}, nil, t0); len(next.EarlyStatuses) != 0 {
		t.Errorf("takeover kept %+v", next.EarlyStatuses)
	}
}
