package webhook

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// Parse never panics, and what it returns is fit to publish: known
// statuses, printable bounded ids, senders in E.164.
func FuzzParse(f *testing.F) {
	f.Add([]byte(statusBody))
	f.Add([]byte(inboundBody))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"user_preferences","value":{"user_preferences":[{"wa_id":"447911123401","category":"marketing_messages","value":"stop","timestamp":1731705721}]}}]}]}`))
	for _, fixture := range []string{"testdata/inbound-types.json", "testdata/template-events.json"} {
		if data, err := os.ReadFile(fixture); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"id":7,"time":"x","changes":[{"field":"message_template_status_update","value":{"event":"PAUSED","message_template_name":"a","message_template_language":"en"}}]}]}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w","status":"read","timestamp":"-1"}]}}]}]}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w","status":"sent","pricing":{"pricing_model":"PMP","category":"utilit\u00e9","type":"regular"}}]}}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range p.Statuses {
			if !validID(s.GetWhatsappMessageId()) || s.GetStatus() == 0 {
				t.Fatalf("status event %v", s)
			}
			if ts := s.GetTimestamp(); ts != nil && ts.CheckValid() != nil {
				t.Fatalf("timestamp %v", ts)
			}
			if cb := s.GetBizOpaqueCallbackData(); len(cb) > dispatch.MaxCallbackLength || !utf8.ValidString(cb) {
				t.Fatalf("callback data %q", cb)
			}
			if pr := s.GetPricing(); pr != nil {
				for _, w := range []string{pr.GetPricingModel(), pr.GetCategory(), pr.GetType()} {
					if pricingWord(w) != w {
						t.Fatalf("pricing %v", pr)
					}
				}
			}
		}
		for _, m := range p.Messages {
			if !validID(m.GetWhatsappMessageId()) || !strings.HasPrefix(m.GetFrom(), "+") || len(m.GetFrom()) < 8 || len(m.GetFrom()) > 16 {
				t.Fatalf("inbound message %v", m)
			}
			if c := m.GetContextMessageId(); c != "" && !validID(c) {
				t.Fatalf("context id %q", c)
			}
			if c := m.GetTargetMessageId(); c != "" && !validID(c) {
				t.Fatalf("target id %q", c)
			}
			if typ := m.GetType(); len(typ) > maxTypeLength || (typ != "" && !validID(typ)) {
				t.Fatalf("type %q", typ)
			}
			if n := m.GetNewNumber(); n != "" && (!strings.HasPrefix(n, "+") || len(n) > 16) {
				t.Fatalf("new number %q", n)
			}
			// Everything must travel: the event is a Pub/Sub payload.
			if _, err := proto.Marshal(m); err != nil {
				t.Fatalf("inbound %v does not encode: %v", m, err)
			}
		}
		for _, ev := range p.Templates {
			if !validID(ev.GetBusinessAccountId()) || !templateWord(ev.GetName()) || !templateWord(ev.GetLanguage()) ||
				(ev.GetStatus() == "" && ev.GetCategory() == "") || (ev.GetCategory() != "" && !templateWord(ev.GetCategory())) {
				t.Fatalf("template event %v", ev)
			}
			if ts := ev.GetTimestamp(); ts != nil && ts.CheckValid() != nil {
				t.Fatalf("timestamp %v", ts)
			}
			if _, err := proto.Marshal(ev); err != nil {
				t.Fatalf("template event %v does not encode: %v", ev, err)
			}
		}
		for _, pr := range p.Preferences {
			if !strings.HasPrefix(pr.GetDriver(), "+") || pr.GetChoice() == 0 {
				t.Fatalf("preference %v", pr)
			}
			if _, err := proto.Marshal(pr); err != nil {
				t.Fatalf("preference %v does not encode: %v", pr, err)
			}
		}
	})
}

// Only the exact signature of the exact body with the secret verifies.
func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte("secret"), []byte(statusBody), "")
	f.Add([]byte(""), []byte(""), "sha256=00")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		good := whatsappsim.Sign(string(secret), body)
		if err := VerifySignature(secret, body, good); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if header != good && !strings.EqualFold(header, good) {
			if VerifySignature(secret, body, header) == nil {
				t.Fatalf("header %q verified for a body signed %q", header, good)
			}
		}
		tampered := append(bytes.Clone(body), 'x')
		if VerifySignature(secret, tampered, good) == nil {
			t.Fatal("a tampered body verified")
		}
	})
}
