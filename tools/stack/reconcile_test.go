package stack_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/stack"
)

// Documents whose trigger event was lost, written while the emulator's
// trigger dropped deliveries and while ingest was down, are found by
// ingest's reconciler over the real processes: each valid one reaches
// WhatsApp exactly once (also one whose delivery the emulator kept
// retrying, which both the late event and the reconciler may handle), each
// one the V-Customer can correct ends FAILED with its reason, and a
// driver's reply stays as written.
func TestReconcilerFindsLostEvents(t *testing.T) {
	s, fs, ctx := setupFor(t, stack.Options{Env: map[string][]string{stack.Ingest: {
		"INGEST_RECONCILE_INTERVAL=500ms", "INGEST_RECONCILE_GRACE=2s", "INGEST_RECONCILE_WINDOW=10m",
	}}}, 2*time.Minute)
	// Templates need no 24-hour window: whatever reaches WhatsApp is accepted.
	template := func(driver string, extra map[string]any) map[string]any {
		m := map[string]any{
			"type": "template", "message": "", "templateType": "vehicle_delivery", "payload": map[string]any{"vehicle": "AB12 CDE"},
			"driverMobileNumber": driver, "createdBy": stack.DemoUser, "createdAt": firestore.ServerTimestamp,
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	path := func(id string) string {
		return dispatch.MessageRef{LeaseID: stack.DemoLease, EnquiryID: stack.DemoEnquiry, MessageID: id}.Path()
	}
	create := func(id string, fields map[string]any) {
		t.Helper()
		if _, err := fs.Doc(path(id)).Create(ctx, fields); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
	drop := func(on bool) {
		t.Helper()
		if err := s.DropTriggerDeliveries(ctx, on); err != nil {
			t.Fatal(err)
		}
	}
	// Events reach the trigger's end after the commit (Google's emulator
	// posts them later than the project's): deliveries resume only once
	// the events of these documents were dropped.
	resumeOnceDropped := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			waitForLogLine(t, ctx, s.TriggerLogPath(), "trigger event dropped", path(id))
		}
		drop(false)
	}
	sent := map[string]string{}    // document id → driver
	refused := map[string]string{} // document id → field at fault

	// Events lost with ingest up.
	drop(true)
	create("lost-valid", template("+447911123411", nil))
	create("lost-bad-number", template("12345", nil))
	create("lost-reply", map[string]any{"source": "driver", "type": "text", "message": "On my way", "driverMobileNumber": "+447911123413", "createdAt": firestore.ServerTimestamp})
	resumeOnceDropped("lost-valid", "lost-bad-number", "lost-reply")
	sent["lost-valid"], refused["lost-bad-number"] = "+447911123411", "driverMobileNumber"
	waitForStatus(t, ctx, fs, path("lost-valid"), "SENT")
	waitForStatus(t, ctx, fs, path("lost-bad-number"), "FAILED")

	// Ingest down: one document's delivery is retried by the emulator, the
	// others' are dropped as well.
	s.Kill(stack.Ingest)
	create("down-retried", template("+447911123414", nil))
	drop(true)
	create("down-valid", template("+447911123415", nil))
	create("down-no-template", template("+447911123416", map[string]any{"templateType": ""}))
	resumeOnceDropped("down-valid", "down-no-template")
	sent["down-retried"], sent["down-valid"], refused["down-no-template"] = "+447911123414", "+447911123415", "templateType"
	time.Sleep(2500 * time.Millisecond) // past the grace period, so the restarted reconciler takes them at once
	if err := s.Restart(ctx, stack.Ingest); err != nil {
		t.Fatal(err)
	}

	for id := range sent {
		waitForStatus(t, ctx, fs, path(id), "SENT")
	}
	for id, field := range refused {
		doc := waitForStatus(t, ctx, fs, path(id), "FAILED")
		why, _ := doc["statusReason"].(string)
		if doc["failureReason"] != "invalid_data" || !strings.HasPrefix(why, field+": ") {
			t.Errorf("%s: failureReason %v, statusReason %q: want invalid_data on %s", id, doc["failureReason"], why, field)
		}
		if out, err := s.Ctl(ctx, "status", path(id)); err != nil || !strings.Contains(out, "refused by ingest: invalid_data: "+field) {
			t.Errorf("%s: wadispatchctl status:\n%s%v", id, out, err)
		}
	}
	// A few more passes: nothing is sent again, the reply stays untouched.
	time.Sleep(2 * time.Second)
	for id, driver := range sent {
		got, err := s.Accepted(ctx, driver)
		if err != nil {
			t.Fatal(err)
		}
		doc := getDoc(t, ctx, fs, path(id))
		if len(got) != 1 || got[0].WAMID != doc["whatsappMessageId"] {
			t.Errorf("%s: WhatsApp accepted %d messages %+v for it, recorded %v: want exactly one", id, len(got), got, doc["whatsappMessageId"])
		}
	}
	if got, err := s.Accepted(ctx, "+447911123416"); err != nil || len(got) != 0 {
		t.Errorf("a refused template was sent: %v %v", got, err)
	}
	reply := getDoc(t, ctx, fs, path("lost-reply"))
	if _, ok := reply["status"]; ok {
		t.Errorf("the driver's reply got a status: %v", reply)
	}
	if _, err := fs.Doc(path("lost-reply") + "/dispatch/state").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("the driver's reply has a state (%v)", err)
	}

	// The reconciler says what it did.
	waitForLogLine(t, ctx, s.LogPath(stack.Ingest), path("down-valid"), "document found without pipeline state")
	// The restarted ingest's counters: it found down-valid (and perhaps
	// down-retried, before its retried event) and refused down-no-template.
	if n := ingestMetric(t, s, `wadispatch_ingest_reconciled_total{outcome="published"}`); n < 1 {
		t.Errorf("reconciled published = %v", n)
	}
	if n := ingestMetric(t, s, `wadispatch_ingest_reconciled_total{outcome="refused"}`); n != 1 {
		t.Errorf("reconciled refused = %v, want 1", n)
	}
	if n := ingestMetric(t, s, `wadispatch_ingest_reconcile_passes_total{result="failed"}`); n != 0 {
		t.Errorf("failed passes = %v", n)
	}
}

// ingestMetric reads one series from ingest's /metrics.
func ingestMetric(t *testing.T, s *stack.Stack, series string) float64 {
	t.Helper()
	resp, err := http.Get(s.IngestOpsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no series %s in ingest's metrics", series)
	return 0
}
