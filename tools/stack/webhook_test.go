package stack_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/tools/stack"
)

// demoCase returns one of the demo's messages, under another id.
func demoCase(t *testing.T, id, newID string) stack.Case {
	t.Helper()
	for _, c := range stack.DemoCases() {
		if c.ID == id {
			c.ID = newID
			return c
		}
	}
	t.Fatalf("no demo case %s", id)
	return stack.Case{}
}

func setup(t *testing.T, opts stack.Options) (*stack.Stack, *firestore.Client, context.Context) {
	t.Helper()
	return setupFor(t, opts, time.Minute)
}

// setupFor is setup for a test that may take up to timeout.
func setupFor(t *testing.T, opts stack.Options, timeout time.Duration) (*stack.Stack, *firestore.Client, context.Context) {
	t.Helper()
	s := stack.StartForTest(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	if err := s.SeedLease(ctx, fs); err != nil {
		t.Fatal(err)
	}
	return s, fs, ctx
}

var rank = map[string]int{"": 0, "SENDING": 1, "SENT": 2, "DELIVERED": 3, "READ": 4}

// WhatsApp posts each message's statuses in reverse order (read, delivered,
// sent) and every one twice: the status only ever moves forward, ends READ
// with both times, and every webhook is answered 2xx.
func TestStatusWebhooksReorderedAndDuplicated(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{SimulatorArgs: []string{"--reorder-webhooks", "--duplicate-webhooks"}})
	if err := s.OpenWindow(ctx, "+447911123401"); err != nil {
		t.Fatal(err)
	}
	cases := []stack.Case{demoCase(t, "msg-text", "reorder-text"), demoCase(t, "msg-template", "reorder-template")}
	for _, c := range cases {
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		var seen []string
		it := fs.Doc(c.Path()).Snapshots(ctx)
		for {
			snap, err := it.Next()
			if err != nil {
				t.Fatalf("%s: %v (statuses seen %v)", c.ID, err, seen)
			}
			st, _ := snap.Data()["status"].(string)
			if len(seen) == 0 || seen[len(seen)-1] != st {
				seen = append(seen, st)
			}
			if _, ok := rank[st]; !ok {
				t.Fatalf("%s: status %q (seen %v)", c.ID, st, seen)
			}
			if len(seen) > 1 && rank[st] < rank[seen[len(seen)-2]] {
				t.Fatalf("%s: status moved back: %v", c.ID, seen)
			}
			if _, delivered := snap.Data()["deliveredAt"]; st == "READ" && delivered {
				checkDeliveredAndRead(t, snap.Data())
				break
			}
		}
		it.Stop()
		t.Logf("%s: statuses %v", c.ID, seen)
	}
	waitForWebhooks(t, ctx, s)
	counts, err := s.SimulatorCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.WebhookAttemptsFailed != 0 || counts.WebhooksAbandoned != 0 || counts.WebhooksDelivered < 12 {
		t.Errorf("simulator webhook counts %+v: want 12 or more delivered, none refused", counts)
	}
	// Each of the six status events (three per message) reaches the
	// recorder once and is handled once: applied, ignored (it would move the
	// status back), or kept on the state when it came before the message's
	// result (and applied in the result's commit). Which one depends on how
	// the webhooks raced the result, so only the sum is fixed. Each repeat
	// is the same signed body, answered 2xx by ingest and published no
	// second time.
	var handled int
	for {
		metrics := scrape(t, ctx, s.RecorderURL)
		handled = 0
		for _, result := range []string{"applied", "ignored", "early", "pending"} {
			n, _ := strconv.Atoi(metrics[`wadispatch_recorder_status_events_total{result="`+result+`"}`])
			handled += n
		}
		repeats := scrape(t, ctx, s.IngestOpsURL)[`wadispatch_ingest_webhook_requests_total{outcome="duplicate"}`]
		if handled == 6 && repeats == "6" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status events handled by the recorder %d, repeats absorbed by ingest %s; want 6 and 6", handled, repeats)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, c := range cases {
		if got := getDoc(t, ctx, fs, c.Path())["status"]; got != "READ" {
			t.Errorf("%s: status %v after every status event", c.ID, got)
		}
	}
}

// WhatsApp accepts a message, then reports it failed (fail_later): the
// message ends FAILED with Meta's error from the webhook, and stays counted
// as sent (the call did go out).
func TestFailedStatusWebhook(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	c := demoCase(t, "msg-template", "failed-later")
	if err := s.AddFault(ctx, map[string]any{"kind": "fail_later", "code": 131049, "to": "447911123402"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
		t.Fatal(err)
	}
	doc := waitForStatus(t, ctx, fs, c.Path(), "FAILED")
	werr, _ := doc["whatsappError"].(map[string]any)
	if doc["failureReason"] != "marketing_limit" || werr["code"] != int64(131049) || doc["whatsappMessageId"] == nil {
		t.Errorf("failed message %v", doc)
	}
	if _, ok := doc["failedAt"].(time.Time); !ok {
		t.Errorf("failedAt %v", doc["failedAt"])
	}
	if got := sentCount(t, ctx, fs); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1", got)
	}
}

// A webhook with a forged or missing signature is refused with 401 and
// changes nothing; the same body signed with the app secret is applied.
// The verification handshake answers only the verify token.
func TestForgedWebhookRefused(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{SimulatorArgs: []string{"--no-statuses"}})
	c := demoCase(t, "msg-template", "forged")
	if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
		t.Fatal(err)
	}
	wamid := waitForStatus(t, ctx, fs, c.Path(), "SENT")["whatsappMessageId"].(string)
	body := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{`+
		`"messaging_product":"whatsapp","metadata":{"phone_number_id":"100000000000001"},`+
		`"statuses":[{"id":%q,"status":"read","timestamp":"%d","recipient_id":"447911123402"}]}}]}]}`, wamid, time.Now().Unix())
	post := func(signature string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.WebhookURL(), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if signature != "" {
			req.Header.Set(whatsappsim.SignatureHeader, signature)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for name, sig := range map[string]string{
		"forged":   whatsappsim.Sign("not-the-app-secret", []byte(body)),
		"unsigned": "",
	} {
		if got := post(sig); got != http.StatusUnauthorized {
			t.Errorf("%s webhook: HTTP %d, want 401", name, got)
		}
	}
	time.Sleep(300 * time.Millisecond) // what a forged webhook could have changed, it would have by now
	if got := getDoc(t, ctx, fs, c.Path())["status"]; got != "SENT" {
		t.Fatalf("status %v after forged webhooks, want SENT", got)
	}
	metrics := scrape(t, ctx, s.IngestOpsURL)
	if metrics[`wadispatch_ingest_webhook_signature_failures_total{reason="mismatch"}`] != "1" ||
		metrics[`wadispatch_ingest_webhook_signature_failures_total{reason="missing"}`] != "1" {
		t.Errorf("signature failure metrics: %v", metrics)
	}
	if got := post(whatsappsim.Sign(s.AppSecret, []byte(body))); got != http.StatusOK {
		t.Fatalf("signed webhook: HTTP %d", got)
	}
	waitForStatus(t, ctx, fs, c.Path(), "READ")

	if err := whatsappsim.VerifyWebhook(ctx, nil, s.WebhookURL(), s.VerifyToken); err != nil {
		t.Error(err)
	}
	if err := whatsappsim.VerifyWebhook(ctx, nil, s.WebhookURL(), "guessed"); err == nil {
		t.Error("verification handshake answered a wrong verify token")
	}
	if logs := readFile(t, s.LogPath(stack.Ingest)); strings.Contains(logs, s.AppSecret) || strings.Contains(logs, s.VerifyToken) {
		t.Error("ingest logged its webhook secrets")
	}
}

// A driver's reply becomes a chatMessages document with source "driver" in
// their enquiry and produces no send; a reply from a number the pipeline
// never wrote to is attached nowhere but opens the window for a first text.
func TestDriverReplyRecordedAndNotSent(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	const driver = "+447911123401"
	if err := s.OpenWindow(ctx, driver); err != nil {
		t.Fatal(err)
	}
	c := demoCase(t, "msg-text", "reply-to")
	if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, ctx, fs, c.Path(), "READ")
	inID, err := s.Reply(ctx, driver, "Can I come at 11 instead?", "")
	if err != nil {
		t.Fatal(err)
	}
	path := dispatch.MessageRef{LeaseID: stack.DemoLease, EnquiryID: stack.DemoEnquiry, MessageID: dispatch.DriverReplyDocID(inID)}.Path()
	reply := waitForDoc(t, ctx, fs, path)
	for k, want := range map[string]any{
		"source": "driver", "message": "Can I come at 11 instead?", "type": "text",
		"driverMobileNumber": driver, "whatsappMessageId": inID,
	} {
		if reply[k] != want {
			t.Errorf("reply %s = %v, want %v", k, reply[k], want)
		}
	}
	waitForLogLine(t, ctx, s.LogPath(stack.Ingest), path, `"reason":"from_driver"`)
	if _, err := fs.Doc(path + "/dispatch/state").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("a send was claimed for the driver's reply (%v)", err)
	}
	if got, err := s.Accepted(ctx, driver); err != nil || len(got) != 1 {
		t.Errorf("WhatsApp received %d messages for the driver, want only the one sent before (%v)", len(got), err)
	}
	anc, err := s.Firestore(ctx, "ancillary")
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	// The ancillary record is written after the reply document (another
	// database: no commit spans both).
	waitForDocWhere(t, ctx, anc, dispatch.AncillaryPath(driver, stack.DemoEnquiry), "lastInboundMessageId "+inID,
		func(rec map[string]any) bool { return rec["lastInboundMessageId"] == inID })

	// A stranger writes first; a text to them is then sent.
	const stranger = "+447911123408"
	if err := s.OpenWindow(ctx, stranger); err != nil {
		t.Fatal(err)
	}
	waitForLogLine(t, ctx, s.LogPath(stack.Recorder), `"reason":"unmatched"`)
	first := demoCase(t, "msg-text", "first-text")
	first.Fields["driverMobileNumber"] = stranger
	if _, err := fs.Doc(first.Path()).Create(ctx, first.Fields); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, ctx, fs, first.Path(), "SENT")
}

func waitForDoc(t *testing.T, ctx context.Context, fs *firestore.Client, path string) map[string]any {
	t.Helper()
	return waitForDocWhere(t, ctx, fs, path, "the document", func(map[string]any) bool { return true })
}

// waitForDocWhere waits until the document exists and its fields satisfy
// cond (what describes cond), and returns them.
func waitForDocWhere(t *testing.T, ctx context.Context, fs *firestore.Client, path, what string, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	it := fs.Doc(path).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			t.Fatalf("waiting for %s at %s: %v", what, path, err)
		}
		if snap.Exists() && cond(snap.Data()) {
			return snap.Data()
		}
	}
}

// waitForWebhooks waits until the simulator has no webhook left to post.
func waitForWebhooks(t *testing.T, ctx context.Context, s *stack.Stack) {
	t.Helper()
	for {
		c, err := s.SimulatorCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.WebhooksPending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("webhooks still pending: %+v", c)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// scrape reads a service's /metrics into series → value.
func scrape(t *testing.T, ctx context.Context, baseURL string) map[string]string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			out[line[:i]] = line[i+1:]
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
