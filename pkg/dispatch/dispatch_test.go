package dispatch_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestParseMessagePath(t *testing.T) {
	for _, path := range []string{
		"leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1",
		"documents/leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1",
		"projects/p/databases/(default)/documents/leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1",
	} {
		ref, err := dispatch.ParseMessagePath(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if ref != (dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}) {
			t.Fatalf("%s: got %+v", path, ref)
		}
		if ref.Path() != "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1" {
			t.Fatalf("Path() = %s", ref.Path())
		}
	}
}

func TestParseMessagePathRejectsOtherDocuments(t *testing.T) {
	for _, path := range []string{
		"",
		"leasecompany/l1",
		"leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages",
		"leasecompany/l1/enquiries/e1/whatsapp/messages/otherMessages/m1",
		"leasecompany//enquiries/e1/whatsapp/messages/chatMessages/m1",
		"leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1/dispatch/state",
	} {
		if _, err := dispatch.ParseMessagePath(path); err == nil {
			t.Errorf("%q accepted", path)
		}
	}
}

func TestStatusMovesForwardOnly(t *testing.T) {
	S := func(s string) dispatch.Status { return dispatch.Status(s) }
	allowed := [][2]string{
		{"", "SENDING"}, {"SENDING", "SENT"}, {"SENT", "DELIVERED"}, {"DELIVERED", "READ"},
		{"SENT", "READ"}, {"SENDING", "FAILED"}, {"SENT", "FAILED"}, {"SENDING", "UNKNOWN"},
		{"UNKNOWN", "SENT"}, {"UNKNOWN", "FAILED"}, {"UNKNOWN", "READ"}, {"FAILED", "DELIVERED"},
	}
	refused := [][2]string{
		{"SENT", "SENDING"}, {"DELIVERED", "SENT"}, {"READ", "DELIVERED"}, {"READ", "SENT"},
		{"SENT", "SENT"}, {"READ", "FAILED"}, {"DELIVERED", "FAILED"}, {"FAILED", "SENT"},
		{"SENT", "UNKNOWN"}, {"UNKNOWN", "SENDING"}, {"FAILED", "FAILED"},
	}
	for _, c := range allowed {
		if !dispatch.CanMove(S(c[0]), S(c[1])) {
			t.Errorf("%s -> %s refused", c[0], c[1])
		}
	}
	for _, c := range refused {
		if dispatch.CanMove(S(c[0]), S(c[1])) {
			t.Errorf("%s -> %s allowed", c[0], c[1])
		}
	}
}

func TestStatusProtoRoundTrip(t *testing.T) {
	for _, s := range []dispatch.Status{"SENDING", "SENT", "DELIVERED", "READ", "FAILED", "UNKNOWN"} {
		if got := dispatch.StatusFromProto(s.Proto()); got != s {
			t.Errorf("%s round-trips to %s", s, got)
		}
	}
}

func TestLabel(t *testing.T) {
	for e, want := range map[protoreflect.Enum]string{
		wadispatchv1.MessageType_MESSAGE_TYPE_TEXT:          "text",
		wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE:      "template",
		wadispatchv1.Outcome_OUTCOME_SENT:                   "sent",
		wadispatchv1.Outcome_OUTCOME_UNSPECIFIED:            "unspecified",
		wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT:   "in_flight",
		wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED: "delivered",
		wadispatchv1.ClaimSendResponse_Decision(42):         "unspecified",
	} {
		if got := dispatch.Label(e); got != want {
			t.Errorf("Label(%v) = %q, want %q", e, got, want)
		}
	}
}

func TestCheckDocumentID(t *testing.T) {
	for _, ok := range []string{"user-anna", "ünïcode", "a.b", strings.Repeat("u", 1500)} {
		if err := dispatch.CheckDocumentID(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "team/anna", ".", "..", "__id__", strings.Repeat("u", 1501), "\xff"} {
		if err := dispatch.CheckDocumentID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A driver's reply is kept in its enquiry or, when none takes it, beside the
// lease's unmatched replies; its media goes to the folder of that place.
func TestParseReplyPath(t *testing.T) {
	for path, want := range map[string]struct {
		ref    dispatch.ReplyRef
		folder string
	}{
		"leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/wa-in-1": {dispatch.ReplyRef{LeaseID: "l1", EnquiryID: "e1", DocID: "wa-in-1"}, "leasecompany/l1/enquiries/e1/media"},
		"leasecompany/l1/whatsappUnmatchedReplies/wa-in-2":                    {dispatch.ReplyRef{LeaseID: "l1", DocID: "wa-in-2"}, "leasecompany/l1/whatsappUnmatchedReplies/media"},
	} {
		got, err := dispatch.ParseReplyPath(path)
		if err != nil || got != want.ref || got.Path() != path || got.MediaFolder() != want.folder {
			t.Errorf("%s: %+v (%q, %q), %v", path, got, got.Path(), got.MediaFolder(), err)
		}
	}
	for _, bad := range []string{"leasecompany/l1/whatsappDrivers/x", "leasecompany//whatsappUnmatchedReplies/x", "leasecompany/l1/whatsappUnmatchedReplies/x/y"} {
		if got, err := dispatch.ParseReplyPath(bad); err == nil {
			t.Errorf("%s: %+v, want an error", bad, got)
		}
	}
}
