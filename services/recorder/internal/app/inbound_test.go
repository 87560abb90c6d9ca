package app_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func statusEvent(wamid string, s wadispatchv1.MessageStatus, at time.Time) *wadispatchv1.StatusEvent {
	return &wadispatchv1.StatusEvent{WhatsappMessageId: wamid, Status: s, Timestamp: timestamppb.New(at), PhoneNumberId: "1055"}
}

func (e *env) handle(t *testing.T, m proto.Message) consume.Verdict {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return e.svc.HandleStatusTopic(context.Background(), consume.Message{Data: data, Attributes: map[string]string{"schema": string(proto.MessageName(m))}})
}

// Webhooks in reverse order, each twice (what --reorder-webhooks and
// --duplicate-webhooks do): the status ends READ with both times, and
// nothing moves back.
func TestReorderedAndRepeatedStatuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	base := time.Now().Truncate(time.Second)
	deliveredAt, readAt := base.Add(time.Second), base.Add(2*time.Second)
	for _, ev := range []*wadispatchv1.StatusEvent{
		statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, readAt),
		statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, readAt),
		statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, deliveredAt),
		statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, deliveredAt),
		statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, base),
		statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, base),
	} {
		if v := e.handle(t, ev); !v.Ack {
			t.Fatalf("%v: %+v", ev.GetStatus(), v)
		}
		if m := doc(t, e.db, messagePath("m1")); m["status"] != "READ" {
			t.Fatalf("after %v: status %v", ev.GetStatus(), m["status"])
		}
	}
	m := doc(t, e.db, messagePath("m1"))
	if !sameTime(m["deliveredAt"], deliveredAt) || !sameTime(m["readAt"], readAt) {
		t.Errorf("deliveredAt %v readAt %v, want %v %v", m["deliveredAt"], m["readAt"], deliveredAt, readAt)
	}
	st, err := e.rec.GetMessage(context.Background(), &wadispatchv1.GetMessageRequest{MessageDocId: messagePath("m1")})
	if err != nil {
		t.Fatal(err)
	}
	if !sameTime(st.GetState().GetDeliveredAt().AsTime(), deliveredAt) || !sameTime(st.GetState().GetReadAt().AsTime(), readAt) {
		t.Errorf("state %v", st.GetState())
	}
	applied := metricValue(t, e.reg, "wadispatch_recorder_status_events_total", map[string]string{"result": "applied"})
	ignored := metricValue(t, e.reg, "wadispatch_recorder_status_events_total", map[string]string{"result": "ignored"})
	if applied != 2 || ignored != 4 {
		t.Errorf("status events applied %v, ignored %v; want 2 and 4", applied, ignored)
	}
}

// A webhook that overtakes the send's result, without callback data to
// name its message (as WhatsApp sends failed statuses), is kept by wamid
// and acked at once instead of burning delivery attempts; the result
// applies it.
func TestStatusBeforeItsResultIsKeptByWamid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	claim := e.claim(t, task, 0)
	if v := e.handle(t, statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, time.Now())); !v.Ack || v.Reason != "kept" {
		t.Fatalf("verdict %+v", v)
	}
	if idx := doc(t, e.db, dispatch.IndexPath("wamid.A")); idx["statuses"] == nil || idx["messagePath"] != nil {
		t.Fatalf("kept on the wamid's index document: %v", idx)
	}
	e.record(t, sent(task, claim.GetClaimId(), "wamid.A"))
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "DELIVERED" {
		t.Errorf("status %v", m["status"])
	}
	// The result found the document there, applied what it kept and wrote
	// its entry over it.
	if idx := doc(t, e.db, dispatch.IndexPath("wamid.A")); idx["statuses"] != nil || idx["keptAt"] != nil || idx["messagePath"] != messagePath("m1") {
		t.Errorf("index document after its result: %v", idx)
	}
}

func inboundMsg(wamid, from, contextID string, at time.Time) *wadispatchv1.InboundMessage {
	return &wadispatchv1.InboundMessage{WhatsappMessageId: wamid, From: from, PhoneNumberId: "1055", LeaseIds: []string{"l1"}, Type: "text",
		Text: "On my way", ContextMessageId: contextID, Timestamp: timestamppb.New(at)}
}

// A reply quoting a sent message lands in that message's enquiry, once,
// and opens the window the next text or interactive claim reports.
func TestDriverReplyQuotingAMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	at := time.Now().Truncate(time.Second)
	in := inboundMsg("wamid.IN1", driver, "wamid.A", at)
	if v := e.handle(t, in); !v.Ack || v.Reason != "inbound_recorded" {
		t.Fatalf("verdict %+v", v)
	}
	path := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: dispatch.DriverReplyDocID("wamid.IN1")}.Path()
	reply := doc(t, e.db, path)
	for k, want := range map[string]any{
		"source": "driver", "message": "On my way", "type": "text", "driverMobileNumber": driver,
		"whatsappMessageId": "wamid.IN1", "contextWhatsappMessageId": "wamid.A", "createdAt": at,
	} {
		if reply[k] != want && !sameTime(reply[k], want) {
			t.Errorf("reply %s = %v, want %v", k, reply[k], want)
		}
	}
	// Redelivered: the same document, unchanged.
	if v := e.handle(t, in); !v.Ack || v.Reason != "inbound_duplicate" {
		t.Fatalf("redelivery verdict %+v", v)
	}
	anc := doc(t, e.anc, dispatch.AncillaryPath(driver, "e1"))
	if !sameTime(anc["lastInboundAt"], at) || anc["lastInboundMessageId"] != "wamid.IN1" {
		t.Errorf("ancillary record %v", anc)
	}
	next := e.newMessage(t, "m2")
	if c := e.claim(t, next, 0); !c.GetDriverWindowChecked() || c.GetDriverLastInboundAt() == nil || !c.GetDriverLastInboundAt().AsTime().Equal(at) {
		t.Errorf("claim's driver_last_inbound_at %v (checked %v), want %v", c.GetDriverLastInboundAt(), c.GetDriverWindowChecked(), at)
	}
	// An interactive message is free-form too: its claim reports the window.
	in2 := e.newMessage(t, "m4")
	in2.Type = wadispatchv1.MessageType_MESSAGE_TYPE_INTERACTIVE
	if c := e.claim(t, in2, 0); !c.GetDriverWindowChecked() || !c.GetDriverLastInboundAt().AsTime().Equal(at) {
		t.Errorf("interactive claim's window: %v (checked %v), want %v", c.GetDriverLastInboundAt(), c.GetDriverWindowChecked(), at)
	}
	// Templates need no window, so their claim reads nothing for it.
	tpl := e.newMessage(t, "m3")
	tpl.Type = wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE
	if c := e.claim(t, tpl, 0); c.GetDriverLastInboundAt() != nil || c.GetDriverWindowChecked() {
		t.Errorf("template claim's window: %v (checked %v)", c.GetDriverLastInboundAt(), c.GetDriverWindowChecked())
	}
}

// Without a quote, a reply goes to the enquiry the driver was last messaged
// in; an older reply delivered late does not shorten the window.
func TestDriverReplyToLatestEnquiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.sentMessage(t, "m1", "wamid.A")
	// A later message in enquiry e2.
	ref2 := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e2", MessageID: "m9"}
	if _, err := e.db.Doc(ref2.Path()).Set(context.Background(), map[string]any{"message": "x", "type": "text", "driverMobileNumber": driver}); err != nil {
		t.Fatal(err)
	}
	task2 := proto.Clone(task).(*wadispatchv1.SendTask)
	task2.EnquiryId, task2.MessageId, task2.MessageDocId = "e2", "m9", ref2.Path()
	time.Sleep(10 * time.Millisecond) // lastMessageAt is the commit's time
	e.record(t, sent(task2, e.claim(t, task2, 0).GetClaimId(), "wamid.B"))

	newer := time.Now().Truncate(time.Second)
	if v := e.handle(t, inboundMsg("wamid.IN2", driver, "", newer)); v.Reason != "inbound_recorded" {
		t.Fatalf("verdict %+v", v)
	}
	if doc(t, e.db, dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e2", MessageID: dispatch.DriverReplyDocID("wamid.IN2")}.Path()) == nil {
		t.Fatal("reply not in the latest enquiry e2")
	}
	if v := e.handle(t, inboundMsg("wamid.IN1", driver, "", newer.Add(-time.Hour))); v.Reason != "inbound_recorded" {
		t.Fatalf("late reply verdict %+v", v)
	}
	if got := doc(t, e.anc, "whatsapp/"+driver)["lastInboundAt"]; !sameTime(got, newer) {
		t.Errorf("driver's lastInboundAt %v, want %v (a late webhook moved it back)", got, newer)
	}
	if got := doc(t, e.anc, dispatch.AncillaryPath(driver, "e2"))["lastInboundAt"]; !sameTime(got, newer) {
		t.Errorf("enquiry's lastInboundAt %v, want %v", got, newer)
	}
}

// A reply quoting a message sent to someone else is not put in that
// message's enquiry.
func TestDriverReplyQuotingAnotherDriversMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	if v := e.handle(t, inboundMsg("wamid.IN1", "+447911000001", "wamid.A", time.Now())); !v.Ack || v.Reason != "inbound_unmatched" {
		t.Fatalf("verdict %+v", v)
	}
	path := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: dispatch.DriverReplyDocID("wamid.IN1")}.Path()
	if d := doc(t, e.db, path); d != nil {
		t.Errorf("reply written in another driver's enquiry: %v", d)
	}
}

// A number the pipeline never wrote to: nothing to attach the reply to, so
// it is kept in the lease's unmatched replies for an operator, and the
// window is known for a first text.
func TestDriverReplyWithoutEnquiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	at := time.Now().Truncate(time.Second)
	if v := e.handle(t, inboundMsg("wamid.IN1", driver, "wamid.unknown", at)); !v.Ack || v.Reason != "inbound_unmatched" {
		t.Fatalf("verdict %+v", v)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_driver_replies_total", map[string]string{"outcome": "unmatched"}); got != 1 {
		t.Errorf("unmatched count %v", got)
	}
	kept := doc(t, e.db, dispatch.UnmatchedReplyPath("l1", dispatch.DriverReplyDocID("wamid.IN1")))
	if kept["message"] != "On my way" || kept["unmatchedReason"] != "no_enquiry" || kept["contextWhatsappMessageId"] != "wamid.unknown" {
		t.Errorf("unmatched reply kept as %v", kept)
	}
	task := e.newMessage(t, "m1")
	if got := e.claim(t, task, 0).GetDriverLastInboundAt(); got == nil || !got.AsTime().Equal(at) {
		t.Errorf("claim's driver_last_inbound_at %v, want %v", got, at)
	}
	// The window is per business number: another number's text sees none.
	other := e.newMessage(t, "m2")
	other.LeaseWhatsappDetails.PhoneNumberId = "2077"
	if c := e.claim(t, other, 0); c.GetDriverLastInboundAt() != nil || !c.GetDriverWindowChecked() {
		t.Errorf("window of another business number: %v (checked %v)", c.GetDriverLastInboundAt(), c.GetDriverWindowChecked())
	}
}

func TestDriverReplyInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, in := range []*wadispatchv1.InboundMessage{
		inboundMsg("", driver, "", time.Now()),
		inboundMsg("wamid.X", "447700900123", "", time.Now()),
		inboundMsg("wamid.X", "+44/77", "", time.Now()),
		func() *wadispatchv1.InboundMessage { // no lease: nowhere it may go
			in := inboundMsg("wamid.X", driver, "", time.Now())
			in.LeaseIds = nil
			return in
		}(),
	} {
		if v := e.handle(t, in); v.Ack || !v.Poison {
			t.Errorf("%v: %+v, want poison", in, v)
		}
	}
}

// sameTime reports whether v is a time equal to want (Firestore answers in
// UTC without a monotonic reading).
func sameTime(v, want any) bool {
	t, ok := v.(time.Time)
	w, okw := want.(time.Time)
	return ok && okw && t.Equal(w)
}
