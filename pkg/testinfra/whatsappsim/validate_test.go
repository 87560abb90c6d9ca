package whatsappsim

import (
	"testing"
	"unicode/utf8"
)

// FuzzValidate: any body gets either a message or one of the codes Meta uses
// for payload errors, never a panic.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"447700900123","type":"text","text":{"body":"hi"}}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"447700900123","type":"template","template":{"name":"t","language":{"code":"en"},"components":[{"type":"body","parameters":[{"type":"text","parameter_name":"a","text":"x"}]}]}}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"4","type":"template","template":{"components":[{"parameters":[{}]}]}}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"447700900123","type":"interactive","interactive":{"type":"button","body":{"text":"b"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}}}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"447700900123","type":"interactive","interactive":{"type":"list","body":{"text":"b"},"action":{"button":"P","sections":[{"rows":[{"id":"a","title":"A"}]}]}}}`))
	f.Add([]byte(`{"messaging_product":"whatsapp","to":"447700900123","type":"template","template":{"name":"t","language":{"code":"en"},"components":[{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"p"}]}]}}`))
	f.Add([]byte(`null`))
	templates := map[string]TemplateSpec{"t\x00en": {Name: "t", Language: "en", BodyParameters: []string{"a"}}}
	allowed := map[int]bool{100: true, 131008: true, 131009: true, 131051: true, 132000: true, 132001: true, 132012: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, tpl := range []map[string]TemplateSpec{nil, templates} {
			m, e := validate(body, tpl)
			if e != nil {
				if m != nil || !allowed[e.code] || e.details == "" {
					t.Fatalf("validate(%q) = %+v, %+v", body, m, e)
				}
				continue
			}
			if m == nil || !digits.MatchString(m.waID) || (m.typ == "text") == (m.text == nil) || (m.typ == "template") == (m.template == nil) || (m.typ == "interactive") == (m.interactive == nil) {
				t.Fatalf("validate(%q) accepted %+v", body, m)
			}
			if m.text != nil && (m.text.Body == "" || utf8.RuneCountInString(m.text.Body) > maxTextBody) {
				t.Fatalf("validate(%q) accepted text %+v", body, m.text)
			}
			if in := m.interactive; in != nil && (in.Body == "" || len(in.Buttons) > maxButtons || len(in.Buttons) == 0 && len(in.Sections) == 0) {
				t.Fatalf("validate(%q) accepted interactive %+v", body, in)
			}
		}
	})
}
