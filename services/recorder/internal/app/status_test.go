package app_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	recorderfs "github.com/visn/wadispatch/services/recorder/internal/adapters/firestore"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// callbackStatus is a status webhook of the call made under claimID for
// task's message, as WhatsApp echoes its biz_opaque_callback_data.
func callbackStatus(t testing.TB, task *wadispatchv1.SendTask, claimID, wamid string, s wadispatchv1.MessageStatus, at time.Time) *wadispatchv1.StatusEvent {
	t.Helper()
	ref, err := dispatch.ParseMessagePath(task.GetMessageDocId())
	if err != nil {
		t.Fatal(err)
	}
	cb, ok := dispatch.Callback{ClaimID: claimID, Ref: ref}.Encode()
	if !ok {
		t.Fatalf("claim %q makes no callback", claimID)
	}
	ev := statusEvent(wamid, s, at)
	ev.BizOpaqueCallbackData, ev.RecipientId = cb, "447700900123"
	return ev
}

func (e *env) apply(t testing.TB, ev *wadispatchv1.StatusEvent) *wadispatchv1.ApplyStatusResponse {
	t.Helper()
	resp, err := e.svc.ApplyStatus(context.Background(), &wadispatchv1.ApplyStatusRequest{Event: ev})
	if err != nil {
		t.Fatalf("ApplyStatus %v: %v", ev.GetStatus(), err)
	}
	return resp
}

// expiredUnknown claims m's send with a short lease and lets it expire into
// UNKNOWN, as when the sender died after calling WhatsApp.
func (e *env) expiredUnknown(t testing.TB, id string) (*wadispatchv1.SendTask, string) {
	t.Helper()
	task := e.newMessage(t, id)
	c := e.claim(t, task, 50*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if again := e.claim(t, task, 0); again.GetDecision() != decUnknown {
		t.Fatalf("claim after expiry: %v", again)
	}
	return task, c.GetClaimId()
}

// An UNKNOWN message whose claim's call WhatsApp reports delivered is
// recorded as sent with that wamid (document, counter once, index,
// ancillary record), then delivered; a repeat of the webhook and the dead
// sender's late result change nothing, and it is no longer listed.
func TestUnknownResolvedByItsClaimsStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task, claimID := e.expiredUnknown(t, "m1")
	at := time.Now().Add(-time.Second).Truncate(time.Second)
	ev := callbackStatus(t, task, claimID, "wamid.U", wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, at)
	resp := e.apply(t, ev)
	if !resp.GetApplied() || resp.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED || resp.GetState().GetWhatsappMessageId() != "wamid.U" {
		t.Fatalf("resolution %v", resp)
	}
	m := doc(t, e.db, messagePath("m1"))
	if m["status"] != "DELIVERED" || m["whatsappMessageId"] != "wamid.U" || m["statusReason"] != nil || !sameTime(m["deliveredAt"], at) {
		t.Errorf("message document %v", m)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1", got)
	}
	if idx := doc(t, e.db, dispatch.IndexPath("wamid.U")); idx["messagePath"] != messagePath("m1") {
		t.Errorf("index entry %v", idx)
	}
	if anc := doc(t, e.anc, dispatch.AncillaryPath(driver, "e1")); len(anc["arrayOfWhatsappMessageIds"].([]any)) != 1 {
		t.Errorf("ancillary record %v", anc)
	}
	// The same webhook again, then read, then the late result.
	if again := e.apply(t, ev); again.GetApplied() {
		t.Errorf("repeat applied: %v", again)
	}
	e.apply(t, callbackStatus(t, task, claimID, "wamid.U", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, at.Add(time.Second)))
	if late := e.record(t, sent(task, claimID, "wamid.U")); late.GetApplied() {
		t.Errorf("late result applied: %v", late)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v after the repeats, want 1", got)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "READ" {
		t.Errorf("status %v", m["status"])
	}
	list, err := e.rec.ListUnknown(context.Background(), &wadispatchv1.ListUnknownRequest{})
	if err != nil || len(list.GetMessages()) != 0 {
		t.Errorf("ListUnknown %v %v", list, err)
	}
	if c := e.claim(t, task, 0); c.GetDecision() != decDone || c.GetResult().GetWhatsappMessageId() != "wamid.U" {
		t.Errorf("claim after resolution %v", c)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_sends_resolved_by_status_total", map[string]string{"from": "unknown"}); got != 1 {
		t.Errorf("resolved{from=unknown} = %v", got)
	}
}

// Only the message's current claim is believed: a status of another
// claim's call, or of a message resent since, resolves nothing and is kept
// by wamid, and a failed status alone resolves nothing either.
func TestStatusOfAnotherClaimResolvesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task, claimID := e.expiredUnknown(t, "m1")
	other := "0b6f5c1e-8d2a-4c3b-9e1f-7a6d5c4b3a21"
	if resp := e.apply(t, callbackStatus(t, task, other, "wamid.X", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, time.Now())); resp.GetApplied() || !resp.GetKept() {
		t.Errorf("another claim's status: %v", resp)
	}
	if kept := doc(t, e.db, dispatch.IndexPath("wamid.X")); kept["namedMessagePath"] != messagePath("m1") || kept["messagePath"] != nil {
		t.Errorf("kept %v", kept)
	}
	if resp := e.apply(t, callbackStatus(t, task, claimID, "wamid.F", wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED, time.Now())); resp.GetApplied() || !resp.GetKept() {
		t.Errorf("failed status: %v", resp)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "UNKNOWN" {
		t.Errorf("status %v", m["status"])
	}
	if got := e.sentCount(t); got != nil {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want none", got)
	}
}

// Statuses that overtake their claim's result wait on the message's state
// and are applied, in WhatsApp's order, in the commit that records it.
func TestStatusesBeforeTheResultWaitOnTheState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	at := time.Now().Add(-time.Second).Truncate(time.Second)
	for _, s := range []wadispatchv1.MessageStatus{wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED} {
		if v := e.handle(t, callbackStatus(t, task, c.GetClaimId(), "wamid.A", s, at)); !v.Ack || v.Reason != "kept" {
			t.Fatalf("%v: verdict %+v", s, v)
		}
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENDING" {
		t.Fatalf("status %v before the result", m["status"])
	}
	if kept := doc(t, e.db, messagePath("m1")+"/dispatch/state")["earlyStatuses"]; len(kept.([]any)) != 2 {
		t.Fatalf("kept on the state: %v", kept)
	}
	if got := e.record(t, sent(task, c.GetClaimId(), "wamid.A")); !got.GetApplied() || got.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_READ {
		t.Fatalf("result %v", got)
	}
	m := doc(t, e.db, messagePath("m1"))
	if m["status"] != "READ" || !sameTime(m["deliveredAt"], at) || !sameTime(m["readAt"], at) || m["whatsappMessageId"] != "wamid.A" {
		t.Errorf("message document %v", m)
	}
	if kept := doc(t, e.db, messagePath("m1")+"/dispatch/state")["earlyStatuses"]; kept != nil {
		t.Errorf("still kept after the result: %v", kept)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1", got)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_status_events_total", map[string]string{"result": "early"}); got != 2 {
		t.Errorf("status events{early} = %v", got)
	}
}

// A claim whose sender died after WhatsApp accepted its call, and whose
// statuses came while its lease ran: the sweep records it sent instead of
// marking it UNKNOWN, and a failed status kept by wamid (WhatsApp echoes
// no callback data in those) follows.
func TestExpiredClaimResolvedByTheSweep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 300*time.Millisecond)
	at := time.Now().Truncate(time.Second)
	e.apply(t, callbackStatus(t, task, c.GetClaimId(), "wamid.S", wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, at))
	if resp := e.apply(t, statusEvent("wamid.S", wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED, at.Add(time.Second))); !resp.GetKept() {
		t.Fatalf("failed status without callback: %v", resp)
	}
	time.Sleep(400 * time.Millisecond)
	marked, err := e.svc.Sweep(context.Background())
	if err != nil || marked != 0 {
		t.Fatalf("sweep marked %d (%v), want it to resolve instead", marked, err)
	}
	m := doc(t, e.db, messagePath("m1"))
	if m["status"] != "FAILED" || m["whatsappMessageId"] != "wamid.S" || m["sentAt"] == nil {
		t.Errorf("message document %v", m)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1 (it went out)", got)
	}
	if anc := doc(t, e.anc, dispatch.AncillaryPath(driver, "e1")); anc == nil {
		t.Error("no ancillary record")
	}
	if idx := doc(t, e.db, dispatch.IndexPath("wamid.S")); idx["statuses"] != nil || idx["messagePath"] != messagePath("m1") {
		t.Errorf("index document after the resolution: %v", idx)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_sends_resolved_by_status_total", map[string]string{"from": "expired"}); got != 1 {
		t.Errorf("resolved{from=expired} = %v", got)
	}
}

// A claim released for a retry wait whose call WhatsApp reports sent after
// all is not sent again: the next claim finds it done.
func TestReleasedClaimWhatsAppSentIsNotSentAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	if _, err := e.rec.ReleaseClaim(context.Background(), &wadispatchv1.ReleaseClaimRequest{MessageDocId: task.GetMessageDocId(), ClaimId: c.GetClaimId(), Reason: "server_error"}); err != nil {
		t.Fatal(err)
	}
	e.apply(t, callbackStatus(t, task, c.GetClaimId(), "wamid.R", wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, time.Now()))
	again := e.claim(t, task, 0)
	if again.GetDecision() != decDone || again.GetResult().GetWhatsappMessageId() != "wamid.R" || again.GetResult().GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT {
		t.Fatalf("claim after WhatsApp's status: %v", again)
	}
	// The sender republishes the result it was given, as for any DONE.
	if r := e.record(t, again.GetResult()); r.GetApplied() {
		t.Errorf("republished result applied: %v", r)
	}
	if anc := doc(t, e.anc, dispatch.AncillaryPath(driver, "e1")); anc == nil {
		t.Error("no ancillary record after the republished result")
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1", got)
	}
}

// Statuses of wamids no result records are dropped by the sweep after the
// TTL, counted by reason; one whose result lands in time is applied.
func TestPendingStatusesDroppedAfterTheTTL(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64 // nanoseconds the recorder's clock is ahead
	ahead := func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	e := newEnv(t, envOptions{cfg: app.Config{PendingStatusTTL: time.Minute, Clock: ahead}})
	task, _ := e.expiredUnknown(t, "m1")
	e.apply(t, statusEvent("wamid.foreign", wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, time.Now()))
	e.apply(t, statusEvent("wamid.foreign", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, time.Now()))
	e.apply(t, callbackStatus(t, task, "0b6f5c1e-8d2a-4c3b-9e1f-7a6d5c4b3a21", "wamid.stale", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, time.Now()))
	if n, err := e.svc.SweepPendingStatuses(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep before the TTL dropped %d (%v)", n, err)
	}
	clock.Store(int64(2 * time.Minute))
	n, err := e.svc.SweepPendingStatuses(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("sweep dropped %d wamids (%v), want 2", n, err)
	}
	for reason, want := range map[string]float64{"never_sent": 2, "not_recorded": 1} {
		if got := metricValue(t, e.reg, "wadispatch_recorder_pending_statuses_dropped_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("dropped{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	for _, w := range []string{"wamid.foreign", "wamid.stale"} {
		if kept := doc(t, e.db, dispatch.IndexPath(w)); kept != nil {
			t.Errorf("%s still kept: %v", w, kept)
		}
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "UNKNOWN" {
		t.Errorf("status %v", m["status"])
	}
}

// A status kept on a wamid's index document after a result indexed it,
// by a handler that did not live to apply it (its redelivery lost), is
// applied by the sweep after the TTL and taken off the document, which
// keeps its entry.
func TestStatusKeptAfterItsIndexIsAppliedByTheSweep(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64 // nanoseconds the recorder's clock is ahead
	ahead := func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	e := newEnv(t, envOptions{cfg: app.Config{PendingStatusTTL: time.Minute, Clock: ahead}})
	task := e.newMessage(t, "m1")
	e.record(t, sent(task, e.claim(t, task, 0).GetClaimId(), "wamid.L"))
	store := recorderfs.NewStore(e.db, recorderfs.Options{})
	ev := statusEvent("wamid.L", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, time.Now())
	if err := store.KeepPendingStatus(context.Background(), app.PendingStatus{Event: ev, KeptAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	clock.Store(int64(2 * time.Minute))
	if n, err := e.svc.SweepPendingStatuses(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep dropped %d (%v), want it to apply", n, err)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "READ" {
		t.Errorf("status %v", m["status"])
	}
	if idx := doc(t, e.db, dispatch.IndexPath("wamid.L")); idx["statuses"] != nil || idx["keptAt"] != nil || idx["messagePath"] != messagePath("m1") {
		t.Errorf("index document after the sweep: %v", idx)
	}
}
