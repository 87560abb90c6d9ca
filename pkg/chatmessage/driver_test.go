package chatmessage

import (
	"errors"
	"testing"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestCheckDriver(t *testing.T) {
	text := &Message{Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEXT}
	tpl := &Message{Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE}
	stopped := map[string]any{"optedOut": true, "optOutSource": "keyword"}
	for _, c := range []struct {
		name     string
		m        *Message
		record   map[string]any
		policy   string
		category string
		want     string
	}{
		{"no record", tpl, nil, OptOutMarketing, TemplateMarketing, ""},
		{"marketing to a stopped driver", tpl, stopped, OptOutMarketing, TemplateMarketing, ReasonOptedOut},
		{"utility to a stopped driver", tpl, stopped, OptOutMarketing, "UTILITY", ""},
		{"unknown category", tpl, stopped, OptOutMarketing, "", ""},
		{"text to a stopped driver", text, stopped, OptOutMarketing, "", ""},
		{"text under the all policy", text, stopped, OptOutAll, "", ReasonOptedOut},
		{"resumed", tpl, map[string]any{"optedOut": false}, OptOutAll, TemplateMarketing, ""},
		{"changed number", text, map[string]any{"changedTo": "+447911000042"}, OptOutMarketing, "", ReasonNumberChanged},
	} {
		err := CheckDriver(c.m, c.record, c.policy, c.category)
		var rej *Rejection
		got := ""
		if errors.As(err, &rej) {
			got = rej.Reason
			if !rej.Actionable() {
				t.Errorf("%s: %s is not written on the document", c.name, got)
			}
		}
		if got != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
