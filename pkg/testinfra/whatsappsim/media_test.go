package whatsappsim_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// A driver's photo, voice note and document arrive as Meta's media
// webhooks: type, and the type's object with id, mime_type, sha256 (base64)
// and caption, filename or voice; no text object.
func TestInboundMediaWebhook(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) { o.Webhook.NoStatuses = true })
	photo := e.sim.AddMedia(phoneID, "image/jpeg", []byte("jpeg bytes"))
	voice := e.sim.AddMedia(phoneID, "audio/ogg; codecs=opus", []byte("ogg bytes"))
	doc := e.sim.AddMedia(phoneID, "application/pdf", []byte("%PDF"))
	ins := []whatsappsim.Inbound{
		{PhoneNumberID: phoneID, From: driver, Type: "image", MediaID: photo.ID, Caption: "the dent"},
		{PhoneNumberID: phoneID, From: driver, Type: "audio", MediaID: voice.ID, Voice: true},
		{PhoneNumberID: phoneID, From: driver, Type: "document", MediaID: doc.ID, Caption: "invoice", Filename: "invoice.pdf"},
	}
	for _, in := range ins {
		if _, err := e.sim.RecordInbound(in); err != nil {
			t.Fatal(err)
		}
	}
	waitHooks(t, e)
	want := map[string]string{
		"image":    `{"caption":"the dent","mime_type":"image/jpeg","sha256":"` + photo.SHA256 + `","id":"` + photo.ID + `"}`,
		"audio":    `{"mime_type":"audio/ogg; codecs=opus","sha256":"` + voice.SHA256 + `","id":"` + voice.ID + `","voice":true}`,
		"document": `{"caption":"invoice","filename":"invoice.pdf","mime_type":"application/pdf","sha256":"` + doc.SHA256 + `","id":"` + doc.ID + `"}`,
	}
	rc.mu.Lock()
	bodies := append([][]byte(nil), rc.bodies...)
	rc.mu.Unlock()
	if len(bodies) != len(ins) {
		t.Fatalf("%d webhooks, want %d", len(bodies), len(ins))
	}
	for _, b := range bodies {
		var w struct {
			Entry []struct {
				Changes []struct {
					Value struct {
						Messages []map[string]json.RawMessage `json:"messages"`
					} `json:"value"`
				} `json:"changes"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatal(err)
		}
		m := w.Entry[0].Changes[0].Value.Messages[0]
		var typ string
		_ = json.Unmarshal(m["type"], &typ)
		if string(m[typ]) != want[typ] {
			t.Errorf("%s object\n got %s\nwant %s", typ, m[typ], want[typ])
		}
		if _, ok := m["text"]; ok {
			t.Errorf("%s message carries a text object: %s", typ, b)
		}
	}
	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: driver, Type: "image", MediaID: "404"}); err == nil || !strings.Contains(err.Error(), "never added") {
		t.Errorf("inbound with unknown media: %v", err)
	}
	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: driver, Type: "gif", MediaID: photo.ID}); err == nil {
		t.Error("inbound with an unknown media kind accepted")
	}
}
