package firestore

import (
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func written(st *app.State) map[string]any {
	m := map[string]any{}
	for _, u := range stateFields(st) {
		m[u.Path] = u.Value
	}
	return m
}

func writtenMessage(u *app.MessageUpdate) map[string]any {
	m := map[string]any{}
	for _, f := range messageFields(u) {
		m[f.Path] = f.Value
	}
	return m
}

// The decisions clear a field by zeroing it (decide_test.go); the document
// must then lose the field, or a released claim would keep its lease for
// the sweeper and a takeover would still look released.
func TestZeroStateFieldsAreDeleted(t *testing.T) {
	f := written(&app.State{Status: "SENDING", ClaimID: "c2", ClaimedAt: t0, Claims: 0})
	for _, k := range []string{fLeaseExpiresAt, fReleased, fReleasedAt, "releaseReason", fOutcome, "error", "task"} {
		if f[k] != firestore.Delete {
			t.Errorf("%s = %v, want a delete", k, f[k])
		}
	}
	if f[fStatus] != "SENDING" || f["claimId"] != "c2" || f["claimedAt"] != t0 || f["claims"] != int64(0) {
		t.Errorf("fields %v", f)
	}
	rel := written(&app.State{Status: "SENDING", Released: true, ReleasedAt: t0, ReleaseReason: "server_error"})
	if rel[fReleased] != true || rel[fReleasedAt] != t0 || rel["releaseReason"] != "server_error" {
		t.Errorf("released fields %v", rel)
	}
}

func TestCreateHoldsNoDelete(t *testing.T) {
	ref := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}
	created := createFields(&app.State{MessagePath: ref.Path(), DriverMobileNumber: "+447700900123", Status: "SENT", Outcome: "SENT"})
	if created["messagePath"] != ref.Path() || created["driverMobileNumber"] != "+447700900123" {
		t.Fatalf("created %v", created)
	}
	for k, v := range created {
		if v == firestore.Delete {
			t.Errorf("create holds a delete of %s", k)
		}
	}
}

func TestMessageFields(t *testing.T) {
	m := writtenMessage(&app.MessageUpdate{Status: "SENT", StatusUpdatedAt: t0, WhatsappMessageID: "wamid.A", SentAt: t0, ClearStatusReason: true, ClearFailure: true})
	if m[fStatus] != "SENT" || m[fStatusUpdatedAt] != t0 || m["whatsappMessageId"] != "wamid.A" || m["sentAt"] != t0 {
		t.Errorf("fields %v", m)
	}
	for _, k := range []string{fStatusReason, fWhatsappError, fFailureReason} {
		if m[k] != firestore.Delete {
			t.Errorf("%s = %v, want a delete", k, m[k])
		}
	}
	if _, ok := m["deliveredAt"]; ok {
		t.Error("a zero time written")
	}
	only := writtenMessage(&app.MessageUpdate{DeliveredAt: t0})
	if _, moves := only[fStatus]; moves || only["deliveredAt"] != t0 || len(only) != 1 {
		t.Errorf("delivered only: %v", only)
	}
}

// A refusal has a reason and no WhatsApp error: the reason is written,
// no whatsappError appears.
func TestRefusalMessageFields(t *testing.T) {
	m := writtenMessage(&app.MessageUpdate{Status: "FAILED", StatusUpdatedAt: t0, FailureReason: "invalid_data", StatusReason: "message: is missing", FailedAt: t0})
	if m[fStatus] != "FAILED" || m[fFailureReason] != "invalid_data" || m[fStatusReason] != "message: is missing" || m["failedAt"] != t0 {
		t.Errorf("fields %v", m)
	}
	if _, ok := m[fWhatsappError]; ok {
		t.Errorf("whatsappError = %v, want none", m[fWhatsappError])
	}
}

// A commit writes what changed since the state read: a set field, a
// cleared one (deleted), updatedAt always, and nothing else (not the task).
func TestStateChangesWriteOnlyWhatDiffers(t *testing.T) {
	old := &app.State{Status: "SENDING", ClaimID: "c1", Reason: "server_error", Task: map[string]any{"message": "hi"}, UpdatedAt: t0}
	st := *old
	st.Status, st.WhatsappMessageID, st.Reason, st.UpdatedAt = "SENT", "wamid.1", "", t0
	got := map[string]any{}
	for _, u := range stateChanges(old, &st) {
		got[u.Path] = u.Value
	}
	want := map[string]any{"status": "SENT", "whatsappMessageId": "wamid.1", "reason": firestore.Delete, "updatedAt": t0}
	if len(got) != len(want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	for path, v := range want {
		if got[path] != v {
			t.Errorf("%s = %v, want %v", path, got[path], v)
		}
	}
}
