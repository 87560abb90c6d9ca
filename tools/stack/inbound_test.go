package stack_test

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/stack"
)

// Through the real processes: a driver's tap on a template's quick-reply
// button, a location and a reaction keep what WhatsApp sent and what they
// answer; the reaction changes the message it names instead of becoming a
// message; nothing is sent for any of them.
func TestDriverTapsLocationAndReaction(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	const driver = "+447911123402" // the demo template's
	c := demoCase(t, "msg-template", "tap-me")
	if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
		t.Fatal(err)
	}
	sent := waitForStatus(t, ctx, fs, c.Path(), "READ")
	wamid, _ := sent["whatsappMessageId"].(string)

	tapID, err := s.ReplyPart(ctx, driver, "button", map[string]string{"text": "Running late", "payload": "eta_late"}, wamid)
	if err != nil {
		t.Fatal(err)
	}
	tap := waitForDoc(t, ctx, fs, replyPath(tapID))
	reply, _ := tap["reply"].(map[string]any)
	quoted, _ := tap["context"].(map[string]any)
	if tap["type"] != "button" || tap["message"] != "Running late" || tap["source"] != "driver" ||
		reply["id"] != "eta_late" || quoted["whatsappMessageId"] != wamid || quoted["messagePath"] != c.Path() {
		t.Errorf("tap recorded as %v", tap)
	}

	locID, err := s.ReplyPart(ctx, driver, "location", map[string]any{"latitude": 51.5072, "longitude": -0.1276, "name": "Depot 4"}, "")
	if err != nil {
		t.Fatal(err)
	}
	loc := waitForDoc(t, ctx, fs, replyPath(locID))
	if wa, _ := loc["whatsapp"].(map[string]any); loc["type"] != "location" || loc["message"] != "Depot 4" || wa["latitude"] != 51.5072 {
		t.Errorf("location recorded as %v", loc)
	}

	reactID, err := s.ReplyPart(ctx, driver, "reaction", map[string]string{"message_id": wamid, "emoji": "\U0001F44D"}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitForDocWhere(t, ctx, fs, c.Path(), "the driver's reaction", func(d map[string]any) bool {
		r, _ := d["driverReaction"].(map[string]any)
		return r["emoji"] == "\U0001F44D" && r["whatsappMessageId"] == reactID
	})
	if snap, err := fs.Doc(replyPath(reactID)).Get(ctx); err == nil || snap.Exists() {
		t.Errorf("the reaction became a message of its own (%v)", err)
	}
	if got, err := s.Accepted(ctx, driver); err != nil || len(got) != 1 {
		t.Errorf("WhatsApp received %d messages for the driver, want only the template (%v)", len(got), err)
	}
}

// A driver the lease never wrote to: the message is kept in the lease's
// unmatched replies, where an operator finds it, and in no enquiry.
func TestUnmatchedReplyIsKeptForOperators(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	const stranger = "+447911123409"
	id, err := s.Reply(ctx, stranger, "Who is this?", "")
	if err != nil {
		t.Fatal(err)
	}
	kept := waitForDoc(t, ctx, fs, dispatch.UnmatchedReplyPath(stack.DemoLease, dispatch.DriverReplyDocID(id)))
	if kept["message"] != "Who is this?" || kept["unmatchedReason"] != "no_enquiry" || kept["driverMobileNumber"] != stranger {
		t.Errorf("kept as %v", kept)
	}
	if n := countReplies(t, ctx, fs); n != 0 {
		t.Errorf("%d replies in the enquiry, want none", n)
	}
}

func replyPath(wamid string) string {
	return dispatch.MessageRef{LeaseID: stack.DemoLease, EnquiryID: stack.DemoEnquiry, MessageID: dispatch.DriverReplyDocID(wamid)}.Path()
}

func countReplies(t *testing.T, ctx context.Context, fs *firestore.Client) int {
	t.Helper()
	snaps, err := fs.Collection(strings.TrimSuffix(replyPath("x"), "/"+dispatch.DriverReplyDocID("x"))).Where("source", "==", "driver").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	return len(snaps)
}
