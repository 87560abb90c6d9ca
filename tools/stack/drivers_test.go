package stack_test

import (
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/stack"
)

// A driver who writes STOP gets nothing more from a lease whose policy
// stops all messages: the next message ends FAILED opted_out without a
// call to WhatsApp; START lifts it and the one after is sent. A driver whose
// number changes on WhatsApp: a send to the old number ends FAILED
// number_changed, and a reply from the new number lands in the same
// enquiry. All through the real processes, from the webhooks WhatsApp sends.
func TestDriverStopsStartsAndChangesNumber(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	if _, err := fs.Doc("leasecompany/"+stack.DemoLease).Update(ctx, []firestore.Update{
		{FieldPath: firestore.FieldPath{"whatsappConfig", "optOutPolicy"}, Value: "all"},
	}); err != nil {
		t.Fatal(err)
	}
	const stopper, mover, moved = "+447911123431", "+447911123432", "+447911123433"
	for _, d := range []string{stopper, mover} {
		if err := s.OpenWindow(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	record := func(driver string) string { return dispatch.DriverRecordPath(stack.DemoLease, driver) }
	send := func(id, driver string) stack.Case {
		c := interactiveCase(t, id, driver, nil)
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
		return c
	}
	failedWith := func(c stack.Case, reason string) {
		t.Helper()
		doc := waitForStatus(t, ctx, fs, c.Path(), "FAILED")
		if doc["failureReason"] != reason {
			t.Errorf("%s: failureReason %v (%v), want %s", c.ID, doc["failureReason"], doc["statusReason"], reason)
		}
	}

	if _, err := s.Reply(ctx, stopper, "Stop", ""); err != nil {
		t.Fatal(err)
	}
	waitForDocWhere(t, ctx, fs, record(stopper), "opted out", func(m map[string]any) bool { return m[dispatch.DriverOptedOut] == true })
	failedWith(send("after-stop", stopper), "opted_out")
	if got, err := s.Accepted(ctx, stopper); err != nil || len(got) != 0 {
		t.Errorf("WhatsApp received %d messages for the driver who wrote STOP (%v)", len(got), err)
	}
	if _, err := s.Reply(ctx, stopper, "START", ""); err != nil {
		t.Fatal(err)
	}
	waitForDocWhere(t, ctx, fs, record(stopper), "opted in again", func(m map[string]any) bool { return m[dispatch.DriverOptedOut] == false })
	resumed := send("after-start", stopper)
	waitForStatus(t, ctx, fs, resumed.Path(), "SENT")
	acceptedOnce(t, ctx, s, stopper, resumed.Path())

	before := send("before-move", mover)
	waitForStatus(t, ctx, fs, before.Path(), "SENT")
	if _, err := s.ReplyPart(ctx, mover, "system", map[string]any{
		"body": "User changed from 447911123432 to 447911123433", "wa_id": "447911123433", "type": "user_changed_number",
	}, ""); err != nil {
		t.Fatal(err)
	}
	waitForDocWhere(t, ctx, fs, record(mover), "linked to the new number", func(m map[string]any) bool { return m[dispatch.DriverChangedTo] == moved })
	failedWith(send("after-move", mover), "number_changed")
	if got, err := s.Accepted(ctx, mover); err != nil || len(got) != 1 {
		t.Errorf("WhatsApp received %d messages for the old number, want only the one before the change (%v)", len(got), err)
	}
	inID, err := s.Reply(ctx, moved, "This is my new phone", "")
	if err != nil {
		t.Fatal(err)
	}
	reply := waitForDoc(t, ctx, fs, dispatch.MessageRef{LeaseID: stack.DemoLease, EnquiryID: stack.DemoEnquiry, MessageID: dispatch.DriverReplyDocID(inID)}.Path())
	if reply["driverMobileNumber"] != moved || reply["message"] != "This is my new phone" {
		t.Errorf("the new number's reply in the enquiry: %v", reply)
	}
}
