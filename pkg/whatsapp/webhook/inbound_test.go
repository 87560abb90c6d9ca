package webhook

import (
	"os"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testdata/inbound-types.json holds one part of every inbound type in the
// shapes of Meta's webhook reference (messages: text with a referral,
// reactions, media, location, contacts, button and list replies, template
// quick replies, orders, flows, edits, revokes, system, unsupported), plus
// one part whose caption is a number where Meta sends a string.
func TestParseEveryInboundType(t *testing.T) {
	data, err := os.ReadFile("testdata/inbound-types.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]int{}
	for i, m := range p.Messages {
		byID[m.GetWhatsappMessageId()] = i
	}
	get := func(id string) int {
		t.Helper()
		i, ok := byID[id]
		if !ok {
			t.Fatalf("part %s dropped; parsed %d parts, skipped %v", id, len(p.Messages), p.Skipped)
		}
		return i
	}
	for _, c := range []struct {
		id, typ, text, reply, replyTitle, target, emoji, mediaID, mime, sha string
		contentKey                                                          string
	}{
		{id: "wamid.text", typ: "text", text: "Running 10 minutes late", contentKey: "body"},
		{id: "wamid.reaction", typ: "reaction", target: "wamid.out1", emoji: "\U0001F44D", contentKey: "emoji"},
		{id: "wamid.unreact", typ: "reaction", target: "wamid.out1", contentKey: "message_id"},
		{id: "wamid.image", typ: "image", text: "Dent on the rear door", mediaID: "1479537139650973", mime: "image/jpeg", sha: "HgDbzKRk3EOLHSzvvzvW7hrVhAzwnW8zGkEA1Jml0kU=", contentKey: "caption"},
		{id: "wamid.document", typ: "document", text: "Delivery note", mediaID: "2049573612", mime: "application/pdf", sha: "c2hhMjU2", contentKey: "filename"},
		{id: "wamid.voice", typ: "audio", mediaID: "3321", mime: "audio/ogg; codecs=opus", sha: "dm9pY2U=", contentKey: "voice"},
		{id: "wamid.sticker", typ: "sticker", mediaID: "77", mime: "image/webp", sha: "c3RpY2tlcg==", contentKey: "animated"},
		{id: "wamid.location", typ: "location", text: "Depot 4", contentKey: "latitude"},
		{id: "wamid.contacts", typ: "contacts", contentKey: "contacts"},
		{id: "wamid.button", typ: "button", text: "Running late", reply: "eta_late", replyTitle: "Running late", contentKey: "payload"},
		{id: "wamid.button-reply", typ: "interactive", text: "Confirm", reply: "confirm", replyTitle: "Confirm", contentKey: "button_reply"},
		{id: "wamid.list-reply", typ: "interactive", text: "Tomorrow 9:00", reply: "slot_2", replyTitle: "Tomorrow 9:00", contentKey: "list_reply"},
		{id: "wamid.flow", typ: "interactive", text: "Sent", contentKey: "nfm_reply"},
		{id: "wamid.order", typ: "order", text: "Two tyres please", contentKey: "product_items"},
		{id: "wamid.edit", typ: "edit", text: "Running 20 minutes late", target: "wamid.text", contentKey: "original_message_id"},
		{id: "wamid.revoke", typ: "revoke", target: "wamid.image", contentKey: "original_message_id"},
		{id: "wamid.system", typ: "system", text: "User A changed from 447911123401 to 447911123402", contentKey: "type"},
		{id: "wamid.unsupported", typ: "unsupported", contentKey: "errors"},
		{id: "wamid.odd-caption", typ: "image", mediaID: "88", mime: "image/png", sha: "b2Rk", contentKey: "caption"},
	} {
		m := p.Messages[get(c.id)]
		if m.GetType() != c.typ || m.GetText() != c.text {
			t.Errorf("%s: type %q text %q, want %q %q", c.id, m.GetType(), m.GetText(), c.typ, c.text)
		}
		if m.GetReply().GetId() != c.reply || m.GetReply().GetTitle() != c.replyTitle {
			t.Errorf("%s: reply %v, want %q %q", c.id, m.GetReply(), c.reply, c.replyTitle)
		}
		if m.GetTargetMessageId() != c.target || m.GetEmoji() != c.emoji {
			t.Errorf("%s: target %q emoji %q, want %q %q", c.id, m.GetTargetMessageId(), m.GetEmoji(), c.target, c.emoji)
		}
		if md := m.GetMedia(); md.GetId() != c.mediaID || md.GetMimeType() != c.mime || md.GetSha256() != c.sha {
			t.Errorf("%s: media %v, want %s %s %s", c.id, md, c.mediaID, c.mime, c.sha)
		}
		if _, ok := m.GetContent().GetFields()[c.contentKey]; !ok {
			t.Errorf("%s: content %v lacks %q: what WhatsApp sent is not kept", c.id, m.GetContent(), c.contentKey)
		}
	}
	if m := p.Messages[get("wamid.voice")]; !m.GetMedia().GetVoice() {
		t.Error("voice note not marked voice")
	}
	if m := p.Messages[get("wamid.text")]; m.GetReferral().GetFields()["source_url"].GetStringValue() == "" {
		t.Errorf("referral %v not kept", m.GetReferral())
	}
	if m := p.Messages[get("wamid.location")]; m.GetContent().GetFields()["latitude"].GetNumberValue() != 51.5072 {
		t.Errorf("location %v: coordinates not kept", m.GetContent())
	}
	if n := len(p.Messages); n != 19 {
		t.Errorf("%d parts, want 19; skipped %v", n, p.Skipped)
	}
	// The one part with a bad id goes alone.
	if p.Skipped[SkipNoID] != 1 {
		t.Errorf("skipped %v, want the part without an id", p.Skipped)
	}
}

// A part that is not an object, or a status with a field of the wrong
// type, is skipped; its siblings are kept.
func TestParseKeepsSiblingsOfBadParts(t *testing.T) {
	body := `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{
	 "metadata":{"phone_number_id":"1"},
	 "statuses":[{"id":"wamid.s1","status":"read","timestamp":1750263773},{"id":"wamid.s2","status":"read","timestamp":"1750263773"}],
	 "messages":["oops",{"from":"447911123401","id":"wamid.m1","timestamp":"1750263773","type":"text","text":{"body":7}},
	  {"from":"447911123401","id":"wamid.m2","timestamp":"1750263773","type":"text","text":{"body":"ok"}}]}}]},"not an entry"]}`
	p, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Statuses) != 1 || p.Statuses[0].GetWhatsappMessageId() != "wamid.s2" {
		t.Errorf("statuses %v", p.Statuses)
	}
	if len(p.Messages) != 2 || p.Messages[1].GetText() != "ok" || p.Messages[0].GetText() != "" {
		t.Errorf("messages %v", p.Messages)
	}
	if p.Skipped[SkipMalformed] != 3 {
		t.Errorf("skipped %v, want 3 malformed (a status, a message, an entry)", p.Skipped)
	}
}
