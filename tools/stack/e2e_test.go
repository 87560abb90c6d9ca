package stack_test

import (
	"bytes"
	"context"
	"os"
	"regexp"
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

// The demo, as a new user runs it, ends with every outcome as expected.
func TestDemoOutcomesAreAllExpected(t *testing.T) {
	s := stack.StartForTest(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	ok, err := s.RunDemo(ctx, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if !ok {
		t.Fatal("the demo reports an unexpected outcome")
	}
	for _, want := range []string{"MESSAGE", "READ", "outside_24h_window", "invalid_data: driverMobileNumber: not a valid phone number",
		"invalid_data: message: a text message needs a body", "source=driver",
		"template_not_approved: templateType: the template's status is PAUSED", "opted_out: templateType: the driver stopped this lease's marketing messages", "numberOfWhatsappMessagesSent = 3", "arrayOfWhatsappMessageIds",
		"costs of lease-demo in", "3 messages priced", "service   free_customer_service  2         yes", "utility   regular                1         yes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// No driver's number in clear in a service's log: each is a keyed hash.
	e164 := regexp.MustCompile(`(^|[^A-Za-z0-9+])\+[1-9][0-9]{6,14}([^0-9]|$)`)
	if !e164.MatchString(`"to":"+447911123401"`) {
		t.Fatal("the number pattern matches no number")
	}
	for _, name := range []string{stack.Ingest, stack.Sender, stack.Recorder} {
		b, err := os.ReadFile(s.LogPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if m := e164.Find(b); m != nil {
			t.Errorf("%s logged a phone number in clear: %q", name, m)
		}
	}
}

// The seed flow, field by field, for each kind of message the V-Customer
// can write, through the real processes.
func TestSeedFlowFieldByField(t *testing.T) {
	s := stack.StartForTest(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	anc, err := s.Firestore(ctx, "ancillary")
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	if err := s.SeedLease(ctx, fs); err != nil {
		t.Fatal(err)
	}
	const textDriver, templateDriver, refusedDriver, interactiveDriver = "+447911123401", "+447911123402", "+447911123406", "+447911123409"
	for _, d := range []string{textDriver, refusedDriver, interactiveDriver} {
		if err := s.OpenWindow(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddFault(ctx, map[string]any{"kind": "error", "code": 131026, "to": strings.TrimPrefix(refusedDriver, "+")}); err != nil {
		t.Fatal(err)
	}
	if err := s.SeedWhatsAppState(ctx, fs); err != nil {
		t.Fatal(err)
	}

	cases := map[string]stack.Case{}
	for _, c := range stack.DemoCases() {
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
		cases[c.ID] = c
	}

	// A text message: sent once with its body, recorded everywhere, then
	// delivered and read as WhatsApp's webhooks say.
	text := waitForRead(t, ctx, fs, cases["msg-text"].Path())
	wamid := text["whatsappMessageId"].(string)
	accepted, err := s.Accepted(ctx, textDriver)
	if err != nil {
		t.Fatal(err)
	}
	if len(accepted) != 1 || accepted[0].WAMID != wamid || accepted[0].Type != "text" ||
		accepted[0].Text == nil || accepted[0].Text.Body != cases["msg-text"].Fields["message"] {
		t.Fatalf("WhatsApp received %+v for the text message recorded as %s", accepted, wamid)
	}
	checkDeliveredAndRead(t, text)
	ancPath := dispatch.AncillaryPath(textDriver, stack.DemoEnquiry)
	if ids, err := s.WaitForAncillaryID(ctx, anc, ancPath, wamid); err != nil || len(ids) != 1 {
		t.Errorf("ancillary arrayOfWhatsappMessageIds = %v (%v), want [%s]", ids, err, wamid)
	}
	ancillary := getDoc(t, ctx, anc, ancPath)
	if ancillary["leaseId"] != stack.DemoLease || ancillary["enquiryId"] != stack.DemoEnquiry {
		t.Errorf("ancillary details = %v", ancillary)
	}

	// A template with payload and ETA: the national number normalised to
	// E.164, the template built from templateType, payload and ETA.
	tmpl := waitForRead(t, ctx, fs, cases["msg-template"].Path())
	checkDeliveredAndRead(t, tmpl)
	accepted, err = s.Accepted(ctx, templateDriver)
	if err != nil {
		t.Fatal(err)
	}
	if len(accepted) != 1 || accepted[0].WAMID != tmpl["whatsappMessageId"] || accepted[0].Template == nil {
		t.Fatalf("WhatsApp received %+v for the template message", accepted)
	}
	tp := accepted[0].Template
	params := map[string]string{}
	for _, p := range tp.Parameters {
		params[p.Name] = p.Text
	}
	if tp.Name != "vehicle_delivery" || tp.Language != "en_GB" ||
		params["vehicle"] != "AB12 CDE" || params["slot"] != "10:00" || params["eta"] != "45" ||
		len(tp.Buttons) != 1 || tp.Buttons[0] != (whatsappsim.TemplateButton{Index: 0, Payload: "eta_late"}) {
		t.Errorf("template sent = %+v (params %v)", tp, params)
	}

	// Reply buttons: free-form, so sent inside the window like text.
	inter := waitForRead(t, ctx, fs, cases["msg-interactive"].Path())
	accepted, err = s.Accepted(ctx, interactiveDriver)
	if err != nil {
		t.Fatal(err)
	}
	if len(accepted) != 1 || accepted[0].WAMID != inter["whatsappMessageId"] || accepted[0].Interactive == nil ||
		accepted[0].Interactive.Type != "button" || len(accepted[0].Interactive.Buttons) != 2 ||
		accepted[0].Interactive.Body != cases["msg-interactive"].Fields["message"] {
		t.Fatalf("WhatsApp received %+v for the interactive message", accepted)
	}

	// WhatsApp refuses: FAILED with Meta's code and our reason, nothing counted.
	failed := waitForStatus(t, ctx, fs, cases["msg-undeliverable"].Path(), "FAILED")
	if failed["failureReason"] != "undeliverable" {
		t.Errorf("failureReason = %v", failed["failureReason"])
	}
	if werr, _ := failed["whatsappError"].(map[string]any); werr == nil || werr["code"] != int64(131026) {
		t.Errorf("whatsappError = %v", failed["whatsappError"])
	}
	if _, ok := failed["whatsappMessageId"]; ok {
		t.Errorf("a failed message has a whatsappMessageId: %v", failed["whatsappMessageId"])
	}

	// Free-form text to a driver who never wrote: FAILED before any call.
	noWindow := waitForStatus(t, ctx, fs, cases["msg-no-window"].Path(), "FAILED")
	if noWindow["failureReason"] != "outside_24h_window" {
		t.Errorf("failureReason = %v, want outside_24h_window", noWindow["failureReason"])
	}
	// What the registry and the driver's record refuse ends FAILED with the
	// reason, and WhatsApp never hears of it.
	for id, reason := range map[string]string{"msg-template-paused": "template_not_approved", "msg-opted-out": "opted_out"} {
		if doc := waitForStatus(t, ctx, fs, cases[id].Path(), "FAILED"); doc["failureReason"] != reason {
			t.Errorf("%s: failureReason %v, want %s", id, doc["failureReason"], reason)
		}
	}
	for _, d := range []string{"+447911123410", "+447911123411"} {
		if got, err := s.Accepted(ctx, d); err != nil || len(got) != 0 {
			t.Errorf("WhatsApp received %d messages for %s, refused before the call (%v)", len(got), d, err)
		}
	}
	if got, err := s.Accepted(ctx, "+447911123407"); err != nil || len(got) != 0 {
		t.Errorf("WhatsApp received %v %v for a text outside the window", got, err)
	}
	if c, err := s.SimulatorCounts(ctx); err != nil || c.RejectedByCode[131047] != 0 {
		t.Errorf("the simulator refused text outside the window (131047): the call was made (%+v, %v)", c, err)
	}

	// Exactly the three sent messages are counted for their user.
	if got := sentCount(t, ctx, fs); got != int64(3) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 3", got)
	}

	// Messages the V-Customer can correct: nothing reaches WhatsApp, and the
	// document says why, as does wadispatchctl status.
	for id, field := range map[string]string{"msg-bad-number": "driverMobileNumber", "msg-no-text": "message"} {
		c := cases[id]
		doc := waitForStatus(t, ctx, fs, c.Path(), "FAILED")
		why, _ := doc["statusReason"].(string)
		if doc["failureReason"] != "invalid_data" || !strings.HasPrefix(why, field+": ") || doc["failedAt"] == nil {
			t.Errorf("%s: failureReason %v, statusReason %q, failedAt %v: want invalid_data on %s", id, doc["failureReason"], why, doc["failedAt"], field)
		}
		if _, ok := doc["whatsappError"]; ok {
			t.Errorf("%s: a WhatsApp error on a message never sent: %v", id, doc["whatsappError"])
		}
		out, err := s.Ctl(ctx, "status", c.Path())
		if err != nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "refused by ingest: invalid_data: "+field+": ") {
			t.Errorf("%s: wadispatchctl status:\n%s%v", id, out, err)
		}
	}
	if got, err := s.Accepted(ctx, "+447911123405"); err != nil || len(got) != 0 {
		t.Errorf("a message without text was sent: %v %v", got, err)
	}

	// Messages that are not the pipeline's to send: nothing reaches
	// WhatsApp, the pipeline writes nothing, and ingest says why.
	for id, reason := range map[string]string{"msg-driver": "from_driver", "msg-migrated": "migrated"} {
		c := cases[id]
		waitForLogLine(t, ctx, s.LogPath(stack.Ingest), c.Path(), `"reason":"`+reason+`"`)
		doc := getDoc(t, ctx, fs, c.Path())
		if _, ok := doc["status"]; ok {
			t.Errorf("%s: status %v written for a message that is not sent", id, doc["status"])
		}
		if _, err := fs.Doc(c.Path() + "/dispatch/state").Get(ctx); status.Code(err) != codes.NotFound {
			t.Errorf("%s: a send was claimed (%v)", id, err)
		}
		if out, err := s.Ctl(ctx, "status", c.Path()); err == nil || !strings.Contains(err.Error(), "NotFound") {
			t.Errorf("%s: wadispatchctl status found a state:\n%s%v", id, out, err)
		}
	}
	if got, err := s.Accepted(ctx, "+447911123403"); err != nil || len(got) != 0 {
		t.Errorf("the driver's own message was sent back to them: %v %v", got, err)
	}
}

// waitForRead waits until the message is READ with its delivery time: a
// delivered status that comes after the read one (webhooks race) fills
// deliveredAt later.
func waitForRead(t *testing.T, ctx context.Context, fs *firestore.Client, path string) map[string]any {
	t.Helper()
	return waitForDocWhere(t, ctx, fs, path, "READ with deliveredAt", func(d map[string]any) bool {
		return d["status"] == "READ" && d["deliveredAt"] != nil
	})
}

// checkDeliveredAndRead checks a message's delivery fields, as the
// recorder writes them from the status webhooks.
func checkDeliveredAndRead(t *testing.T, doc map[string]any) {
	t.Helper()
	sentAt, okS := doc["sentAt"].(time.Time)
	deliveredAt, okD := doc["deliveredAt"].(time.Time)
	readAt, okR := doc["readAt"].(time.Time)
	if !okS || !okD || !okR {
		t.Errorf("sentAt %v, deliveredAt %v, readAt %v: want three times", doc["sentAt"], doc["deliveredAt"], doc["readAt"])
		return
	}
	// WhatsApp's webhook times are whole seconds.
	if deliveredAt.Before(sentAt.Truncate(time.Second)) || readAt.Before(deliveredAt) {
		t.Errorf("sentAt %v, deliveredAt %v, readAt %v out of order", sentAt, deliveredAt, readAt)
	}
	if _, ok := doc["statusUpdatedAt"].(time.Time); !ok {
		t.Errorf("statusUpdatedAt %v", doc["statusUpdatedAt"])
	}
}

func getDoc(t *testing.T, ctx context.Context, fs *firestore.Client, path string) map[string]any {
	t.Helper()
	snap, err := fs.Doc(path).Get(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return snap.Data()
}

// waitForStatus waits until the message at path has status want (or one
// after it on the delivery chain, for SENT and DELIVERED) and returns its
// fields; it fails the test once the message can no longer get there.
func waitForStatus(t *testing.T, ctx context.Context, fs *firestore.Client, path, want string) map[string]any {
	t.Helper()
	it := fs.Doc(path).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			t.Fatalf("waiting for %s to be %s: %v", path, want, err)
		}
		if !snap.Exists() {
			continue
		}
		got, _ := snap.Data()["status"].(string)
		if got == want || (want == "SENT" && (got == "DELIVERED" || got == "READ")) || (want == "DELIVERED" && got == "READ") {
			return snap.Data()
		}
		// Webhooks move a sent message on (to DELIVERED, READ or FAILED);
		// anything else final is the wrong end.
		if dispatch.Status(got).Final() && !dispatch.CanMove(dispatch.Status(got), dispatch.Status(want)) || got == "FAILED" || got == "UNKNOWN" {
			t.Fatalf("%s: status %s, want %s (document %v)", path, got, want, snap.Data())
		}
	}
}

func waitForLogLine(t *testing.T, ctx context.Context, logPath string, parts ...string) {
	t.Helper()
	for {
		b, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(b), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no line with %q in %s", parts, logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
