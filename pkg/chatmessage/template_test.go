package chatmessage

import (
	"errors"
	"strings"
	"testing"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestCheckTemplate(t *testing.T) {
	tpl := func(payload map[string]string, eta int64) *Message {
		return &Message{Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE, TemplateType: "eta_update", Payload: payload, ETA: eta}
	}
	entry := func(status string, params ...string) *Template {
		return &Template{Name: "eta_update", Language: "en_US", Category: "UTILITY", Status: status, Parameters: params, ParametersKnown: true}
	}
	// What a status webhook alone tells: no components, so no parameters known.
	fromWebhook := &Template{Name: "eta_update", Language: "en_US", Status: "APPROVED"}
	ok := map[string]string{"driver_name": "Ann"}
	for _, c := range []struct {
		name   string
		m      *Message
		reg    TemplateRegistry
		want   string
		detail string
	}{
		{"registry unseen", tpl(ok, 0), TemplateRegistry{Language: "en_US"}, "", ""},
		{"approved, exact parameters", tpl(ok, 0), TemplateRegistry{Language: "en_US", Entry: entry("APPROVED", "driver_name")}, "", ""},
		{"eta fills its parameter", tpl(ok, 15), TemplateRegistry{Language: "en_US", Entry: entry("APPROVED", "driver_name", "eta")}, "", ""},
		{"no parameters", tpl(nil, 0), TemplateRegistry{Language: "en_US", Entry: entry("APPROVED")}, "", ""},
		{"paused", tpl(ok, 0), TemplateRegistry{Language: "en_US", Entry: entry("PAUSED", "driver_name")}, ReasonTemplateNotApproved, "PAUSED"},
		{"disabled", tpl(ok, 0), TemplateRegistry{Language: "en_US", Entry: entry("DISABLED", "driver_name")}, ReasonTemplateNotApproved, "DISABLED"},
		{"rejected", tpl(ok, 0), TemplateRegistry{Language: "en_US", Entry: entry("REJECTED", "driver_name")}, ReasonTemplateNotApproved, "REJECTED"},
		{"no status", tpl(ok, 0), TemplateRegistry{Language: "en_US", Entry: entry("", "driver_name")}, ReasonTemplateNotApproved, "unknown"},
		{"other language only", tpl(ok, 0), TemplateRegistry{Language: "en_US", Languages: []string{"pt_BR", "de"}}, ReasonTemplateLanguage, "only in de, pt_BR"},
		{"missing parameter", tpl(ok, 0), TemplateRegistry{Language: "en_US", Entry: entry("APPROVED", "driver_name", "eta")}, ReasonTemplateParameters, "missing eta"},
		{"extra parameter", tpl(map[string]string{"driver_name": "Ann", "plate": "X"}, 0), TemplateRegistry{Language: "en_US", Entry: entry("APPROVED", "driver_name")}, ReasonTemplateParameters, "not declared plate"},
		{"both", tpl(map[string]string{"plate": "X"}, 0), TemplateRegistry{Language: "en_US", Entry: entry("APPROVED", "driver_name")}, ReasonTemplateParameters, "missing driver_name; not declared plate"},
		{"parameters not known yet", tpl(ok, 0), TemplateRegistry{Language: "en_US", Entry: fromWebhook}, "", ""},
		{"text is not checked", &Message{Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEXT}, TemplateRegistry{Language: "en_US", Entry: entry("PAUSED")}, "", ""},
	} {
		err := CheckTemplate(c.m, c.reg)
		got := ""
		if rej, ok := errors.AsType[*Rejection](err); ok {
			got = rej.Reason
			if !rej.Actionable() {
				t.Errorf("%s: %s is not written on the document", c.name, got)
			}
			if !strings.Contains(rej.Detail, c.detail) {
				t.Errorf("%s: detail %q does not say %q", c.name, rej.Detail, c.detail)
			}
		}
		if got != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestParseTemplate(t *testing.T) {
	if ParseTemplate(nil) != nil {
		t.Fatal("no entry parsed as one")
	}
	got := ParseTemplate(map[string]any{"name": "eta_update", "language": "en_US", "category": "MARKETING", "status": "APPROVED",
		"parameters": []any{"driver_name", int64(3), "eta"}})
	if got.Category != TemplateMarketing || got.Status != TemplateApproved || strings.Join(got.Parameters, ",") != "driver_name,eta" || !got.ParametersKnown {
		t.Fatalf("parsed %+v", got)
	}
	if got := ParseTemplate(map[string]any{"name": "eta_update", "status": "PAUSED"}); got.ParametersKnown {
		t.Fatalf("an entry without parameters parsed as knowing them: %+v", got)
	}
	if reg := (TemplateRegistry{Entry: got}); reg.Category() != TemplateMarketing {
		t.Fatalf("category %q", reg.Category())
	}
	if l := TemplateLanguages(map[string]any{"languages": []any{"en_US", "de"}}); strings.Join(l, ",") != "en_US,de" {
		t.Fatalf("languages %v", l)
	}
}
