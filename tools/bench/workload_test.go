package bench

import (
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// The fault test's workload: each driver gets two messages 300 apart (7.5 s
// at 40/s, beyond WhatsApp's 6 s pair interval), text goes to a quarter of
// the drivers only, and every user sends.
func TestMessagesSpreadOverDriversAndUsers(t *testing.T) {
	f := NewFleet("1", "ref", 3, 100, 4)
	byDriver := map[string][]int{}
	users := map[string]bool{}
	textDrivers := map[string]bool{}
	for i := range 600 {
		m := f.Message("f", i, 4)
		byDriver[m.Driver] = append(byDriver[m.Driver], i)
		users[m.Ref.LeaseID+"/"+m.User] = true
		if m.Fields["type"] == "text" {
			textDrivers[m.Driver] = true
		}
	}
	if len(byDriver) != 300 || len(users) != 12 || len(textDrivers) != 75 {
		t.Fatalf("%d drivers, %d users, %d text drivers; want 300, 12, 75", len(byDriver), len(users), len(textDrivers))
	}
	for d, is := range byDriver {
		if len(is) != 2 || is[1]-is[0] != 300 {
			t.Fatalf("driver %s gets messages %v", d, is)
		}
	}
}

// What reaches WhatsApp names its document, text or template.
func TestRefOfAcceptedMessages(t *testing.T) {
	f := NewFleet("1", "ref", 1, 4, 1)
	text, tpl := f.Message("r", 0, 2), f.Message("r", 1, 2)
	if text.Fields["type"] != "text" || tpl.Fields["type"] != "template" {
		t.Fatalf("types %v %v", text.Fields["type"], tpl.Fields["type"])
	}
	a := whatsappsim.Accepted{Text: &whatsappsim.AcceptedText{Body: text.Fields["message"].(string)}}
	b := whatsappsim.Accepted{Template: &whatsappsim.AcceptedTemplate{Parameters: []whatsappsim.TemplateParam{
		{Name: "eta", Text: "16"}, {Name: "ref", Text: tpl.Ref.MessageID},
	}}}
	if RefOf(a) != text.Ref.MessageID || RefOf(b) != tpl.Ref.MessageID || RefOf(whatsappsim.Accepted{}) != "" {
		t.Errorf("refs %q %q", RefOf(a), RefOf(b))
	}
}

func TestPercentile(t *testing.T) {
	var xs []time.Duration
	for i := 100; i >= 1; i-- {
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentile(xs, 0.5), percentile(xs, 0.99); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("p50 %s p99 %s", p50, p99)
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}
