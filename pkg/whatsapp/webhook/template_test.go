package webhook

import (
	"os"
	"testing"
	"time"
)

// Both template webhooks become TemplateEvents of their business account:
// the status after the event, the current category, entry.time; an event
// that changes nothing a send depends on, or names no usable template, is
// skipped.
func TestParseTemplateEvents(t *testing.T) {
	data, err := os.ReadFile("testdata/template-events.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	type want struct{ source, name, language, status, category, id string }
	wants := []want{
		{FieldTemplateStatus, "eta_update", "en_US", "PAUSED", "UTILITY", "594425479261596"},
		{FieldTemplateStatus, "welcome", "de", "APPROVED", "", "594425479261597"},
		{FieldTemplateCategory, "eta_update", "en_US", "", "MARKETING", "594425479261596"},
		{FieldTemplateCategory, "promo", "en_US", "", "UTILITY", "594425479261599"},
	}
	if len(p.Templates) != len(wants) {
		t.Fatalf("%d template events: %v", len(p.Templates), p.Templates)
	}
	for i, w := range wants {
		ev := p.Templates[i]
		got := want{ev.GetSource(), ev.GetName(), ev.GetLanguage(), ev.GetStatus(), ev.GetCategory(), ev.GetTemplateId()}
		if got != w || ev.GetBusinessAccountId() != "102290129340398" || !ev.GetTimestamp().AsTime().Equal(time.Unix(1750263773, 0)) {
			t.Errorf("event %d: %v, want %+v", i, ev, w)
		}
	}
	if p.Skipped[SkipOtherTemplateEvent] != 1 || p.Skipped[SkipNoID] != 1 {
		t.Errorf("skipped %v", p.Skipped)
	}
}
