package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func replyPath(enquiry, wamid string) string {
	return dispatch.MessageRef{LeaseID: "l1", EnquiryID: enquiry, MessageID: dispatch.DriverReplyDocID(wamid)}.Path()
}

// A tap on a reply button keeps the button's id and title and names the
// message it answers by wamid and by document path.
func TestDriverButtonReplyKeepsWhatItAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	in := inboundMsg("wamid.TAP", driver, "wamid.A", time.Now())
	in.Type, in.Text = "interactive", "Confirm"
	in.Reply = &wadispatchv1.InboundReply{Id: "confirm", Title: "Confirm"}
	in.Content, _ = structpb.NewStruct(map[string]any{"type": "button_reply", "button_reply": map[string]any{"id": "confirm", "title": "Confirm"}})
	if v := e.handle(t, in); v.Reason != "inbound_recorded" {
		t.Fatalf("verdict %+v", v)
	}
	d := doc(t, e.db, replyPath("e1", "wamid.TAP"))
	reply, _ := d["reply"].(map[string]any)
	context, _ := d["context"].(map[string]any)
	wa, _ := d["whatsapp"].(map[string]any)
	if d["type"] != "interactive" || d["message"] != "Confirm" || reply["id"] != "confirm" || reply["title"] != "Confirm" ||
		context["whatsappMessageId"] != "wamid.A" || context["messagePath"] != messagePath("m1") || wa["type"] != "button_reply" {
		t.Errorf("reply document %v", d)
	}
}

// A reply to the lease's business number is never put in another lease's
// enquiry, even quoting a message of it: kept unmatched in its own lease.
func TestDriverReplyStaysInItsLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	in := inboundMsg("wamid.IN1", driver, "wamid.A", time.Now())
	in.LeaseIds = []string{"l2"}
	if v := e.handle(t, in); v.Reason != "inbound_unmatched" {
		t.Fatalf("verdict %+v", v)
	}
	if d := doc(t, e.db, replyPath("e1", "wamid.IN1")); d != nil {
		t.Errorf("reply attached to lease l1's enquiry: %v", d)
	}
	if d := doc(t, e.db, dispatch.UnmatchedReplyPath("l2", dispatch.DriverReplyDocID("wamid.IN1"))); fmt.Sprint(d["leaseIds"]) != "[l2]" {
		t.Errorf("kept in l2 as %v", d)
	}
	// Leases sharing the number share its conversation: the driver's
	// latest enquiry among them takes the reply.
	shared := inboundMsg("wamid.IN2", driver, "", time.Now())
	shared.LeaseIds = []string{"l0", "l1"}
	if v := e.handle(t, shared); v.Reason != "inbound_recorded" {
		t.Fatalf("shared number verdict %+v", v)
	}
	if d := doc(t, e.db, replyPath("e1", "wamid.IN2")); d == nil {
		t.Error("reply to a shared number not in the driver's latest enquiry of its leases")
	}
}

// Reactions, edits and revokes change the message they name and never
// become messages of their own; a late one changes nothing; one naming a
// message nobody knows is kept unmatched.
func TestDriverReactionsEditsAndRevokes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	base := time.Now().Truncate(time.Second)
	if v := e.handle(t, inboundMsg("wamid.IN1", driver, "", base)); v.Reason != "inbound_recorded" {
		t.Fatalf("reply verdict %+v", v)
	}
	change := func(wamid, typ, target, text, emoji string, at time.Time) *wadispatchv1.InboundMessage {
		in := inboundMsg(wamid, driver, "", at)
		in.Type, in.TargetMessageId, in.Text, in.Emoji = typ, target, text, emoji
		return in
	}
	for _, c := range []struct {
		in   *wadispatchv1.InboundMessage
		want string
	}{
		{change("wamid.R1", "reaction", "wamid.A", "", "\U0001F44D", base.Add(2*time.Second)), "inbound_applied"},
		{change("wamid.R0", "reaction", "wamid.A", "", "\U0001F620", base.Add(time.Second)), "inbound_stale"},
		{change("wamid.E1", "edit", "wamid.IN1", "On my way, 5 minutes", "", base.Add(3*time.Second)), "inbound_applied"},
		// A driver edits only their own messages.
		{change("wamid.E2", "edit", "wamid.A", "hijack", "", base.Add(3*time.Second)), "inbound_unmatched"},
		{change("wamid.X1", "revoke", "wamid.IN1", "", "", base.Add(4*time.Second)), "inbound_applied"},
		{change("wamid.E3", "edit", "wamid.IN1", "too late", "", base.Add(5*time.Second)), "inbound_stale"},
		{change("wamid.R2", "reaction", "wamid.nobody", "", "\U0001F44D", base), "inbound_unmatched"},
	} {
		if v := e.handle(t, c.in); !v.Ack || v.Reason != c.want {
			t.Errorf("%s %s: verdict %+v, want %s", c.in.GetType(), c.in.GetWhatsappMessageId(), v, c.want)
		}
		if d := doc(t, e.db, replyPath("e1", c.in.GetWhatsappMessageId())); d != nil {
			t.Errorf("%s became a message of its own: %v", c.in.GetWhatsappMessageId(), d)
		}
	}
	m1 := doc(t, e.db, messagePath("m1"))
	if r, _ := m1["driverReaction"].(map[string]any); r["emoji"] != "\U0001F44D" || r["whatsappMessageId"] != "wamid.R1" {
		t.Errorf("reaction on the sent message: %v", m1["driverReaction"])
	}
	if m1["message"] != "Your load is ready" {
		t.Errorf("the sent message was edited: %v", m1["message"])
	}
	reply := doc(t, e.db, replyPath("e1", "wamid.IN1"))
	if reply["message"] != "" || reply["revokedAt"] == nil || reply["editedAt"] == nil {
		t.Errorf("edited then revoked reply: %v", reply)
	}
	if d := doc(t, e.db, dispatch.UnmatchedReplyPath("l1", dispatch.DriverReplyDocID("wamid.R2"))); d["unmatchedReason"] != "target_not_found" || d["targetWhatsappMessageId"] != "wamid.nobody" {
		t.Errorf("reaction to an unknown message kept as %v", d)
	}
}

// A photo: the reply says its media is pending and a fetch is published
// for the sender; the sender's MediaStored completes it once, and cannot
// write on any other document.
func TestDriverMediaIsFetchedThenRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	in := inboundMsg("wamid.PHOTO", driver, "wamid.A", time.Now())
	in.Type, in.Text = "image", "Dent on the rear door"
	in.Media = &wadispatchv1.InboundMedia{Id: "media-1", MimeType: "image/jpeg", Sha256: "c2hh", Caption: "Dent on the rear door"}
	in.LeaseWhatsappDetails = &wadispatchv1.LeaseWhatsappDetails{PhoneNumberId: "1055", TokenRef: "lease-token"}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps, err := pubsubemu.NewClient(ctx, e.pubsub, project)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if v := e.handle(t, in); v.Reason != "inbound_recorded" {
		t.Fatalf("verdict %+v", v)
	}
	path := replyPath("e1", "wamid.PHOTO")
	if media, _ := doc(t, e.db, path)["media"].(map[string]any); media["status"] != "pending" || media["whatsappMediaId"] != "media-1" {
		t.Fatalf("media on the reply: %v", media)
	}
	fetchOf := func(wamid string) *wadispatchv1.MediaFetch {
		t.Helper()
		var fetch wadispatchv1.MediaFetch
		rctx, stop := context.WithCancel(ctx)
		err := ps.Subscriber(topology.MediaSubscription).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			if proto.Unmarshal(m.Data, &fetch) == nil && fetch.GetWhatsappMessageId() == wamid {
				m.Ack()
				stop()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return &fetch
	}
	if fetch := fetchOf("wamid.PHOTO"); fetch.GetMessageDocId() != path || fetch.GetLeaseId() != "l1" || fetch.GetEnquiryId() != "e1" ||
		fetch.GetMedia().GetId() != "media-1" || fetch.GetLeaseWhatsappDetails().GetTokenRef() != "lease-token" {
		t.Fatalf("media fetch %v", fetch)
	}

	stored := &wadispatchv1.MediaStored{
		MessageDocId: path, WhatsappMessageId: "wamid.PHOTO", MediaId: "media-1", Uri: "gs://media/leasecompany/l1/enquiries/e1/media/x",
		MimeType: "image/jpeg", Size: 2048, Sha256: "abcd", StoredAt: timestamppb.Now(),
	}
	if v := e.handle(t, stored); v.Reason != "media_recorded" {
		t.Fatalf("verdict %+v", v)
	}
	if v := e.handle(t, stored); v.Reason != "media_duplicate" {
		t.Fatalf("repeat verdict %+v", v)
	}
	media, _ := doc(t, e.db, path)["media"].(map[string]any)
	if media["status"] != "stored" || media["uri"] != stored.GetUri() || media["size"] != int64(2048) || media["sha256"] != "abcd" {
		t.Errorf("media after it was stored: %v", media)
	}
	// A MediaStored naming another document is refused as bad input.
	forged := proto.Clone(stored).(*wadispatchv1.MediaStored)
	forged.MessageDocId = messagePath("m1")
	if v := e.handle(t, forged); !v.Poison {
		t.Errorf("MediaStored on another document: %+v", v)
	}

	// A photo no enquiry takes is kept unmatched, and its media fetched
	// all the same: WhatsApp keeps it only about a week.
	lost := inboundMsg("wamid.LOST", "+447911000077", "", time.Now())
	lost.Type, lost.Media, lost.LeaseWhatsappDetails = "image", &wadispatchv1.InboundMedia{Id: "media-2", MimeType: "image/jpeg"}, in.LeaseWhatsappDetails
	if v := e.handle(t, lost); v.Reason != "inbound_unmatched" {
		t.Fatalf("unmatched photo: %+v", v)
	}
	kept := dispatch.UnmatchedReplyPath("l1", dispatch.DriverReplyDocID("wamid.LOST"))
	if fetch := fetchOf("wamid.LOST"); fetch.GetMessageDocId() != kept || fetch.GetLeaseId() != "l1" || fetch.GetEnquiryId() != "" {
		t.Fatalf("unmatched media fetch %v", fetch)
	}
	stored = &wadispatchv1.MediaStored{MessageDocId: kept, WhatsappMessageId: "wamid.LOST", MediaId: "media-2",
		Uri: "gs://media/leasecompany/l1/whatsappUnmatchedReplies/media/wamid.LOST", MimeType: "image/jpeg", Size: 10, Sha256: "ef"}
	if v := e.handle(t, stored); v.Reason != "media_recorded" {
		t.Fatalf("unmatched media stored: %+v", v)
	}
	if media, _ := doc(t, e.db, kept)["media"].(map[string]any); media["status"] != "stored" || media["uri"] != stored.GetUri() {
		t.Errorf("unmatched reply's media: %v", media)
	}
}

// A status is applied only to the message sent to its recipient: one whose
// recipient_id names another number changes nothing.
func TestStatusOfAnotherRecipientIsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	ev := statusEvent("wamid.A", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, time.Now())
	ev.RecipientId = "447911000009"
	if v := e.handle(t, ev); !v.Ack || v.Reason != "ignored" {
		t.Fatalf("verdict %+v", v)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENT" {
		t.Errorf("status %v after another recipient's read", m["status"])
	}
	ev.RecipientId = strings.TrimPrefix(driver, "+")
	if v := e.handle(t, ev); v.Reason != "applied" {
		t.Fatalf("the driver's own read: %+v", v)
	}
}

// An operator lists a lease's unmatched replies, the latest first, a page
// at a time; another lease's are not among them.
func TestUnmatchedRepliesListedForOperators(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	base := time.Now().Truncate(time.Second)
	for i, lease := range []string{"l1", "l1", "l2", "l1"} {
		in := inboundMsg(fmt.Sprintf("wamid.U%d", i), driver, "", base.Add(time.Duration(i)*time.Second))
		in.LeaseIds = []string{lease}
		if v := e.handle(t, in); v.Reason != "inbound_unmatched" {
			t.Fatalf("verdict %+v", v)
		}
	}
	ctx := context.Background()
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := e.rec.ListUnmatchedReplies(ctx, &wadispatchv1.ListUnmatchedRepliesRequest{LeaseId: "l1", PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetReplies() {
			if r.GetReason() != "no_enquiry" || r.GetDriverMobileNumber() != driver || r.GetMessage() != "On my way" {
				t.Errorf("listed %v", r)
			}
			got = append(got, r.GetWhatsappMessageId())
		}
		if token = resp.GetNextPageToken(); token == "" || pages > 3 {
			break
		}
	}
	if fmt.Sprint(got) != "[wamid.U3 wamid.U1 wamid.U0]" {
		t.Errorf("listed %v, want l1's latest first", got)
	}
	if _, err := e.rec.ListUnmatchedReplies(ctx, &wadispatchv1.ListUnmatchedRepliesRequest{LeaseId: "l2", PageToken: token + "x"}); err == nil {
		t.Error("a page token of no listing was taken")
	}
}
