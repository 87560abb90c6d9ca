package whatsappsim_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

// What pkg/whatsapp builds is accepted and recorded as sent: reply buttons,
// a list, a template with quick-reply payloads.
func TestAcceptsInteractiveAndQuickRepliesAndRecordsThem(t *testing.T) {
	e := start(t, nil)
	bm, err := whatsapp.InteractiveMessage(driver, whatsapp.InteractiveContent{Kind: whatsapp.InteractiveButton, Header: "Collection",
		Body: "Can you collect at 10:30?", Footer: "Reply to confirm", Buttons: []whatsapp.Reply{{ID: "yes", Title: "Yes"}, {ID: "later", Title: "Later"}}})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := whatsapp.InteractiveMessage(driver, whatsapp.InteractiveContent{Kind: whatsapp.InteractiveList, Body: "Pick a slot", ButtonText: "Slots",
		Sections: []whatsapp.ListSection{{Title: "Morning", Rows: []whatsapp.ListRow{{ID: "am-9", Title: "09:00", Description: "Depot A"}}},
			{Title: "Afternoon", Rows: []whatsapp.ListRow{{ID: "pm-2", Title: "14:00"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := whatsapp.TemplateMessage(driver, "collection_check", "en_GB", nil, "confirm:m1", "move:m1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []whatsapp.Message{bm, lm, tm} {
		if _, err := e.send(t, m); err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
	}
	msgs := e.sim.Messages(phoneID, driver)
	if len(msgs) != 3 {
		t.Fatalf("recorded %d messages, want 3", len(msgs))
	}
	wantButtons := &whatsappsim.AcceptedInteractive{Type: "button", Header: "Collection", Body: "Can you collect at 10:30?", Footer: "Reply to confirm",
		Buttons: []whatsappsim.InteractiveChoice{{ID: "yes", Title: "Yes"}, {ID: "later", Title: "Later"}}}
	if m := msgs[0]; m.Type != "interactive" || !reflect.DeepEqual(m.Interactive, wantButtons) {
		t.Errorf("recorded buttons %+v", m.Interactive)
	}
	wantList := &whatsappsim.AcceptedInteractive{Type: "list", Body: "Pick a slot", ButtonText: "Slots", Sections: []whatsappsim.AcceptedSection{
		{Title: "Morning", Rows: []whatsappsim.InteractiveChoice{{ID: "am-9", Title: "09:00", Description: "Depot A"}}},
		{Title: "Afternoon", Rows: []whatsappsim.InteractiveChoice{{ID: "pm-2", Title: "14:00"}}}}}
	if m := msgs[1]; !reflect.DeepEqual(m.Interactive, wantList) {
		t.Errorf("recorded list %+v", m.Interactive)
	}
	wantTpl := []whatsappsim.TemplateButton{{Index: 0, Payload: "confirm:m1"}, {Index: 1, Payload: "move:m1"}}
	if m := msgs[2]; m.Template == nil || !reflect.DeepEqual(m.Template.Buttons, wantTpl) {
		t.Errorf("recorded template %+v", m.Template)
	}
}

// Requests Meta refuses are refused with Meta's code: 131008 for a missing
// part, 131009 for a value out of bounds, 131051 for what is not modelled.
func TestValidatesInteractiveLikeMeta(t *testing.T) {
	e := start(t, nil)
	msg := func(interactive string) string {
		return `{"messaging_product":"whatsapp","to":"` + driver + `","type":"interactive","interactive":` + interactive + `}`
	}
	btns := func(n int) string {
		b := make([]string, n)
		for i := range b {
			b[i] = fmt.Sprintf(`{"type":"reply","reply":{"id":"b%d","title":"B%d"}}`, i, i)
		}
		return `{"type":"button","body":{"text":"hi"},"action":{"buttons":[` + strings.Join(b, ",") + `]}}`
	}
	rows := func(n int) string {
		r := make([]string, n)
		for i := range r {
			r[i] = fmt.Sprintf(`{"id":"r%d","title":"R%d"}`, i, i)
		}
		return `{"type":"list","body":{"text":"hi"},"action":{"button":"Pick","sections":[{"rows":[` + strings.Join(r, ",") + `]}]}}`
	}
	x := strings.Repeat
	tpl := func(components string) string {
		return `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"t","language":{"code":"en"},"components":[` + components + `]}}`
	}
	cases := []struct {
		name, body string
		code       int
	}{
		{"no interactive object", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"interactive"}`, 131008},
		{"no type", msg(`{"body":{"text":"hi"},"action":{}}`), 131008},
		{"cta_url", msg(`{"type":"cta_url","body":{"text":"hi"},"action":{}}`), 131051},
		{"no body", msg(`{"type":"button","action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}}`), 131008},
		{"button body over 1024", msg(`{"type":"button","body":{"text":"` + x("b", 1025) + `"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}}`), 131009},
		{"header over 60", msg(`{"type":"button","header":{"type":"text","text":"` + x("h", 61) + `"},"body":{"text":"hi"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}}`), 131009},
		{"image header", msg(`{"type":"button","header":{"type":"image","image":{"id":"1"}},"body":{"text":"hi"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}}`), 131051},
		{"footer over 60", msg(`{"type":"button","body":{"text":"hi"},"footer":{"text":"` + x("f", 61) + `"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}}`), 131009},
		{"no buttons", msg(btns(0)), 131008},
		{"four buttons", msg(btns(4)), 131009},
		{"button title over 20", msg(`{"type":"button","body":{"text":"hi"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"` + x("t", 21) + `"}}]}}`), 131009},
		{"button without id", msg(`{"type":"button","body":{"text":"hi"},"action":{"buttons":[{"type":"reply","reply":{"title":"A"}}]}}`), 131008},
		{"duplicate titles", msg(`{"type":"button","body":{"text":"hi"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}},{"type":"reply","reply":{"id":"b","title":"A"}}]}}`), 131009},
		{"list without button", msg(`{"type":"list","body":{"text":"hi"},"action":{"sections":[{"rows":[{"id":"a","title":"A"}]}]}}`), 131008},
		{"eleven rows", msg(rows(11)), 131009},
		{"row title over 24", msg(`{"type":"list","body":{"text":"hi"},"action":{"button":"Pick","sections":[{"rows":[{"id":"a","title":"` + x("t", 25) + `"}]}]}}`), 131009},
		{"untitled sections", msg(`{"type":"list","body":{"text":"hi"},"action":{"button":"Pick","sections":[{"rows":[{"id":"a","title":"A"}]},{"rows":[{"id":"b","title":"B"}]}]}}`), 131008},
		{"duplicate row ids", msg(`{"type":"list","body":{"text":"hi"},"action":{"button":"Pick","sections":[{"title":"1","rows":[{"id":"a","title":"A"}]},{"title":"2","rows":[{"id":"a","title":"B"}]}]}}`), 131009},
		{"buttons on a list", msg(`{"type":"list","body":{"text":"hi"},"action":{"button":"Pick","buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}],"sections":[{"rows":[{"id":"a","title":"A"}]}]}}`), 131009},
		{"quick reply without payload", tpl(`{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload"}]}`), 131008},
		{"quick reply index 10", tpl(`{"type":"button","sub_type":"quick_reply","index":"10","parameters":[{"type":"payload","payload":"p"}]}`), 131009},
		{"quick reply index twice", tpl(`{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"p"}]},{"type":"button","sub_type":"quick_reply","index":0,"parameters":[{"type":"payload","payload":"q"}]}`), 131009},
		{"quick reply text parameter", tpl(`{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"text","text":"p"}]}`), 131009},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := post(t, e.srv.URL+"/v21.0/"+phoneID+"/messages", token, c.body)
			if status != http.StatusBadRequest || metaCode(t, body) != c.code {
				t.Fatalf("got %d %s, want code %d http 400", status, body, c.code)
			}
		})
	}
	if n := len(e.sim.Messages(phoneID, driver)); n != 0 {
		t.Fatalf("%d refused messages recorded as sent", n)
	}
	for _, ok := range []string{msg(btns(3)), msg(rows(10))} {
		if status, body := post(t, e.srv.URL+"/v21.0/"+phoneID+"/messages", token, ok); status != http.StatusOK {
			t.Errorf("at the limits: %d %s", status, body)
		}
	}
}

// An interactive message is free-form: outside the window it is refused
// with 131047 as text is.
func TestInteractiveNeedsTheWindow(t *testing.T) {
	e := start(t, func(o *whatsappsim.Options) { o.EnforceWindow = true })
	m, err := whatsapp.InteractiveMessage(driver, whatsapp.InteractiveContent{Kind: whatsapp.InteractiveButton, Body: "ok?", Buttons: []whatsapp.Reply{{ID: "y", Title: "Yes"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, werr := e.send(t, m)
	mustCode(t, werr, 131047, http.StatusBadRequest)
	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: driver, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, werr := e.send(t, m); werr != nil {
		t.Fatalf("inside the window: %v", werr)
	}
}
