package stack_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/tools/stack"
)

// statusSubscription is the recorder's subscription of status events.
const statusSubscription = "whatsapp-status-events-recorder"

// leases shortens the claim lease and the sweeper so that a claim left
// without a result expires within a test; the WhatsApp call timeout and
// the publish reserve must fit in the lease.
func leases(lease, callTimeout string, recorder ...string) map[string][]string {
	return map[string][]string{
		stack.Sender:   {"SENDER_CLAIM_LEASE=" + lease, "SENDER_WHATSAPP_TIMEOUT=" + callTimeout, "SENDER_PUBLISH_TIMEOUT=1s"},
		stack.Recorder: append([]string{"RECORDER_CLAIM_LEASE=" + lease, "RECORDER_SWEEP_INTERVAL=300ms"}, recorder...),
	}
}

// acceptedOnce is the one message WhatsApp accepted for driver; its
// biz_opaque_callback_data must name the message at path.
func acceptedOnce(t *testing.T, ctx context.Context, s *stack.Stack, driver, path string) whatsappsim.Accepted {
	t.Helper()
	got, err := s.Accepted(ctx, driver)
	if err != nil || len(got) != 1 {
		t.Fatalf("WhatsApp accepted %d messages for %s (%v), want 1", len(got), path, err)
	}
	cb, err := dispatch.ParseCallback(got[0].CallbackData)
	if err != nil || cb.Ref.Path() != path || cb.ClaimID == "" {
		t.Errorf("biz_opaque_callback_data %q (%+v, %v), want the claim and %s", got[0].CallbackData, cb, err, path)
	}
	return got[0]
}

// noStatusNacks fails t if the recorder nacked a status event: a nack
// spends a delivery attempt on the way to the dead-letter topic.
func noStatusNacks(t *testing.T, ctx context.Context, s *stack.Stack) {
	t.Helper()
	for series, v := range scrape(t, ctx, s.RecorderURL) {
		if strings.HasPrefix(series, "wadispatch_recorder_pubsub_messages_total{") && strings.Contains(series, `subscription="`+statusSubscription+`"`) &&
			strings.Contains(series, `verdict="nack"`) && v != "0" {
			t.Errorf("status events nacked: %s %s", series, v)
		}
	}
}

// sentCount is the demo user's numberOfWhatsappMessagesSent once the
// recorder has folded every send counted in the user's ledger into it.
func sentCount(t *testing.T, ctx context.Context, fs *firestore.Client) any {
	t.Helper()
	metrics := "leasecompany/" + stack.DemoLease + "/performanceMetrics/" + stack.DemoUser
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		left, err := fs.Collection(metrics + "/sentLedger").Documents(ctx).GetAll()
		if err != nil {
			t.Fatalf("read %s/sentLedger: %v", metrics, err)
		}
		if len(left) == 0 {
			return getDoc(t, ctx, fs, metrics)["numberOfWhatsappMessagesSent"]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d sends in %s/sentLedger not folded into the counter", len(left), metrics)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// The sender calls WhatsApp, which accepts the message, and never gets the
// answer: the claim expires, the message becomes UNKNOWN. Then WhatsApp's
// status webhooks come (late here, and each twice), carrying the claim in
// biz_opaque_callback_data: the message becomes SENT with that wamid, then
// DELIVERED and READ, counted once, in the ancillary record, and nothing is
// sent again.
func TestUnknownResolvesItselfWhenWhatsAppSaysSo(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{
		SimulatorArgs: []string{"--sent-delay", "7s", "--duplicate-webhooks"},
		Env:           leases("4s", "1s"),
	})
	const driver = "+447911123402"
	c := demoCase(t, "msg-template", "unknown-resolved")
	if err := s.AddFault(ctx, map[string]any{"kind": "drop_after_accept", "to": strings.TrimPrefix(driver, "+"), "times": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
		t.Fatal(err)
	}
	unknown := waitForStatus(t, ctx, fs, c.Path(), "UNKNOWN")
	if unknown["statusReason"] == nil || unknown["whatsappMessageId"] != nil {
		t.Errorf("UNKNOWN message %v", unknown)
	}
	acc := acceptedOnce(t, ctx, s, driver, c.Path())

	// (waitForStatus takes UNKNOWN for an end.)
	doc := waitForRead(t, ctx, fs, c.Path())
	if doc["whatsappMessageId"] != acc.WAMID || doc["statusReason"] != nil {
		t.Errorf("resolved message %v, want wamid %s and no statusReason", doc, acc.WAMID)
	}
	checkDeliveredAndRead(t, doc)
	waitForWebhooks(t, ctx, s)
	if got := sentCount(t, ctx, fs); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1", got)
	}
	anc, err := s.Firestore(ctx, "ancillary")
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	if ids, err := s.WaitForAncillaryID(ctx, anc, dispatch.AncillaryPath(driver, stack.DemoEnquiry), acc.WAMID); err != nil || len(ids) != 1 {
		t.Errorf("ancillary arrayOfWhatsappMessageIds = %v (%v), want [%s]", ids, err, acc.WAMID)
	}
	metrics := scrape(t, ctx, s.RecorderURL)
	if got := metrics[`wadispatch_recorder_sends_resolved_by_status_total{from="unknown"}`]; got != "1" {
		t.Errorf("sends resolved from UNKNOWN: %q, want 1", got)
	}
	acceptedOnce(t, ctx, s, driver, c.Path()) // nothing resent
	noStatusNacks(t, ctx, s)
}

// Status webhooks that overtake their message's result are kept and
// applied when it lands, in one commit; those of a send whose sender died
// resolve its claim when it expires, so it never shows UNKNOWN; a replayed
// webhook of a message wadispatch never sent is dropped after
// RECORDER_PENDING_STATUS_TTL with a counted, logged reason. None of them
// is nacked.
func TestEarlyAndForeignStatusesWithoutALoop(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{Env: leases("8s", "5s", "RECORDER_PENDING_STATUS_TTL=1s")})
	const slowDriver, lostDriver = "+447911123402", "+447911123404"
	slow := demoCase(t, "msg-template", "early-slow")
	lost := demoCase(t, "msg-template", "early-lost")
	lost.Fields["driverMobileNumber"] = lostDriver
	for _, f := range []map[string]any{
		{"kind": "slow_answer", "latency": "2500ms", "to": strings.TrimPrefix(slowDriver, "+"), "times": 1},
		{"kind": "drop_after_accept", "to": strings.TrimPrefix(lostDriver, "+"), "times": 1},
	} {
		if err := s.AddFault(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []stack.Case{slow, lost} {
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
	}

	// The result of the slow answer lands after its three statuses: they
	// are applied in its commit, so the message goes from SENDING to READ.
	var seen []string
	it := fs.Doc(slow.Path()).Snapshots(ctx)
	for {
		snap, err := it.Next()
		if err != nil {
			t.Fatalf("%s: %v (statuses seen %v)", slow.ID, err, seen)
		}
		st, _ := snap.Data()["status"].(string)
		if st != "" && (len(seen) == 0 || seen[len(seen)-1] != st) {
			seen = append(seen, st)
		}
		if st == "READ" && snap.Data()["deliveredAt"] != nil {
			checkDeliveredAndRead(t, snap.Data())
			break
		}
	}
	it.Stop()
	if strings.Join(seen, ",") != "SENDING,READ" {
		t.Errorf("%s: statuses %v, want SENDING then READ (the result's commit applying the statuses kept)", slow.ID, seen)
	}
	if acc := acceptedOnce(t, ctx, s, slowDriver, slow.Path()); getDoc(t, ctx, fs, slow.Path())["whatsappMessageId"] != acc.WAMID {
		t.Errorf("%s: wamid %v, WhatsApp's %s", slow.ID, getDoc(t, ctx, fs, slow.Path())["whatsappMessageId"], acc.WAMID)
	}

	// The lost answer: no result ever; the claim expires and its statuses,
	// kept on the state, resolve it (waitForStatus fails on UNKNOWN).
	doc := waitForRead(t, ctx, fs, lost.Path())
	if acc := acceptedOnce(t, ctx, s, lostDriver, lost.Path()); doc["whatsappMessageId"] != acc.WAMID {
		t.Errorf("%s: wamid %v, WhatsApp's %s", lost.ID, doc["whatsappMessageId"], acc.WAMID)
	}
	checkDeliveredAndRead(t, doc)
	if got := sentCount(t, ctx, fs); got != int64(2) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 2", got)
	}

	// A real webhook body of a message this system never sent, replayed.
	const stranger = "447911123499"
	wamid := "wamid.HBgMNDQ3OTExMTIzNDk5FQIAERgSQUJDREVGMDEyMzQ1Njc4OQA="
	body := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{`+
		`"messaging_product":"whatsapp","metadata":{"phone_number_id":"100000000000001"},`+
		`"statuses":[{"id":%q,"status":"delivered","timestamp":"%d","recipient_id":%q,"biz_opaque_callback_data":"campaign-7"}]}}]}]}`,
		wamid, time.Now().Unix(), stranger)
	if got := postWebhook(t, ctx, s, body); got != http.StatusOK {
		t.Fatalf("replayed webhook: HTTP %d", got)
	}
	waitForLogLine(t, ctx, s.LogPath(stack.Recorder), "no result recorded dropped", wamid, `"reason":"never_sent"`)
	metrics := scrape(t, ctx, s.RecorderURL)
	for series, want := range map[string]string{
		`wadispatch_recorder_pending_statuses_dropped_total{reason="never_sent"}`: "1",
		`wadispatch_recorder_sends_resolved_by_status_total{from="expired"}`:      "1",
		`wadispatch_recorder_status_events_total{result="early"}`:                 "6",
		`wadispatch_recorder_status_events_total{result="pending"}`:               "1",
	} {
		if metrics[series] != want {
			t.Errorf("%s = %q, want %s", series, metrics[series], want)
		}
	}
	if strings.Contains(readFile(t, s.LogPath(stack.Recorder)), stranger) {
		t.Error("the recorder logged the webhook's recipient number in clear")
	}
	noStatusNacks(t, ctx, s)
}

// postWebhook posts body to ingest's webhook, signed as Meta signs it.
func postWebhook(t *testing.T, ctx context.Context, s *stack.Stack, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.WebhookURL(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(whatsappsim.SignatureHeader, whatsappsim.Sign(s.AppSecret, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}
