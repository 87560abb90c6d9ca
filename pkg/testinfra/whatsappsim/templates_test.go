package whatsappsim_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
	"github.com/visn/wadispatch/pkg/whatsapp/webhook"
)

// The templates of a business account are listed page by page as Graph
// API lists them; a paused template is refused 132015 and a disabled one
// 132016, and each change of status or category posts its webhook, which
// the pipeline's parser reads.
func TestTemplatesListedPausedAndAnnounced(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) {
		for _, name := range []string{"a_one", "b_two", "eta_update"} {
			o.Templates = append(o.Templates, whatsappsim.TemplateSpec{Name: name, Language: "en_GB", BodyParameters: []string{"eta"}, BusinessAccountID: "2001"})
		}
		o.Templates = append(o.Templates, whatsappsim.TemplateSpec{Name: "other_account", Language: "en_GB", BusinessAccountID: "2002"})
	})
	got, complete, err := e.client.ListTemplates(context.Background(), whatsapp.Account{BusinessAccountID: "2001", APIVersion: "v23.0", Token: whatsapp.NewToken(token)})
	if err != nil || !complete || len(got) != 3 || got[2].Name != "eta_update" || got[2].Status != "APPROVED" || fmt.Sprint(got[2].Parameters) != "[eta]" || got[2].Category != "UTILITY" {
		t.Fatalf("%+v %v %v", got, complete, err)
	}
	if _, _, err := e.client.ListTemplates(context.Background(), whatsapp.Account{BusinessAccountID: "2001", APIVersion: "v23.0", Token: whatsapp.NewToken("nobody")}); err == nil {
		t.Fatal("an unknown token listed templates")
	}
	msg, err := whatsapp.TemplateMessage(driver, "eta_update", "en_GB", map[string]string{"eta": "5"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, e.srv.URL+"/_sim/templates/status", "", `{"name":"eta_update","language":"en_GB","status":"PAUSED","reason":"FIRST_PAUSE"}`); code != http.StatusNoContent {
		t.Fatalf("pause: %d %s", code, body)
	}
	if _, we := e.send(t, msg); we == nil || we.Code != 132015 {
		t.Fatalf("a paused template sent: %v", we)
	}
	if err := e.sim.SetTemplateStatus("eta_update", "en_GB", "DISABLED", ""); err != nil {
		t.Fatal(err)
	}
	if _, we := e.send(t, msg); we == nil || we.Code != 132016 {
		t.Fatalf("a disabled template sent: %v", we)
	}
	if code, body := post(t, e.srv.URL+"/_sim/templates/category", "", `{"name":"eta_update","category":"marketing"}`); code != http.StatusNoContent {
		t.Fatalf("category: %d %s", code, body)
	}
	waitHooks(t, e)
	var events []string
	rc.mu.Lock()
	bodies := rc.bodies
	rc.mu.Unlock()
	for _, b := range bodies {
		p, err := webhook.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range p.Templates {
			events = append(events, ev.GetBusinessAccountId()+":"+ev.GetName()+":"+ev.GetStatus()+":"+ev.GetCategory())
		}
	}
	slices.Sort(events) // each webhook is delivered on its own
	if strings.Join(events, ",") != "2001:eta_update::MARKETING,2001:eta_update:DISABLED:UTILITY,2001:eta_update:PAUSED:UTILITY" {
		t.Fatalf("template webhooks %v", events)
	}
}
