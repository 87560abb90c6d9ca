package app

import (
	"strings"
	"testing"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestSafeObjectName(t *testing.T) {
	for in, want := range map[string]string{
		"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUQ0N0VFMDA2MTQ0RkJFNkNDNAA=": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUQ0N0VFMDA2MTQ0RkJFNkNDNAA%3D",
		"a/b+c":     "a%2Fb%2Bc",
		"100%":      "100%25",
		"é":         "%C3%A9",
		"..":        "..",
		"a_b-c.d":   "a_b-c.d",
		"new\nline": "new%0Aline",
	} {
		if got := SafeObjectName(in); got != want {
			t.Errorf("SafeObjectName(%q) = %q, want %q", in, got, want)
		}
	}
	// Injective: an escape never collides with a kept character.
	if SafeObjectName("a/b") == SafeObjectName("a%2Fb") {
		t.Error("a/b and a%2Fb share a name")
	}
}

func TestMediaObjectName(t *testing.T) {
	path := "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/wa-in-1"
	ok := &wadispatchv1.MediaFetch{MessageDocId: path, LeaseId: "l1", EnquiryId: "e1", WhatsappMessageId: "wamid.X/Y="}
	if got, err := MediaObjectName(ok); err != nil || got != "leasecompany/l1/enquiries/e1/media/wamid.X%2FY%3D" {
		t.Fatalf("MediaObjectName = %q, %v", got, err)
	}
	kept := &wadispatchv1.MediaFetch{MessageDocId: "leasecompany/l1/whatsappUnmatchedReplies/wa-in-1", LeaseId: "l1", WhatsappMessageId: "wamid.X"}
	if got, err := MediaObjectName(kept); err != nil || got != "leasecompany/l1/whatsappUnmatchedReplies/media/wamid.X" {
		t.Fatalf("MediaObjectName of an unmatched reply = %q, %v", got, err)
	}
	for name, f := range map[string]*wadispatchv1.MediaFetch{
		"bad path":                {MessageDocId: "leasecompany/l1/x", WhatsappMessageId: "wamid.X"},
		"other lease":             {MessageDocId: path, LeaseId: "l2", WhatsappMessageId: "wamid.X"},
		"other enquiry":           {MessageDocId: path, EnquiryId: "e2", WhatsappMessageId: "wamid.X"},
		"no wamid":                {MessageDocId: path},
		"unmatched in an enquiry": {MessageDocId: "leasecompany/l1/whatsappUnmatchedReplies/wa-in-1", EnquiryId: "e1", WhatsappMessageId: "wamid.X"},
		"dots only wamid":         {MessageDocId: path, WhatsappMessageId: ".."},
	} {
		if got, err := MediaObjectName(f); err == nil {
			t.Errorf("%s: %q, want an error", name, got)
		}
	}
}

func TestContentTypeAndStatedChecksum(t *testing.T) {
	if got := contentType("audio/ogg; codecs=opus", "audio/ogg"); got != "audio/ogg; codecs=opus" {
		t.Errorf("webhook's type first: %q", got)
	}
	if got := contentType("", "image/png"); got != "image/png" {
		t.Errorf("Graph's type second: %q", got)
	}
	if got := contentType("not a type;;", ""); got != "application/octet-stream" {
		t.Errorf("fallback: %q", got)
	}
	if b, err := statedChecksum("  "); b != nil || err != nil {
		t.Errorf("no checksum stated: %x, %v", b, err)
	}
	if _, err := statedChecksum("abc"); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("bad checksum: %v", err)
	}
}
