package webhook

import (
	"encoding/json"
	"strings"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// The template webhooks' fields (developers.facebook.com/documentation/
// business-messaging/whatsapp/webhooks/reference/message_template_status_update
// and .../template_category_update).
const (
	FieldTemplateStatus   = "message_template_status_update"
	FieldTemplateCategory = "template_category_update"
)

// SkipOtherTemplateEvent: a template status event that says nothing of
// whether the template may be sent (LOCKED, UNLOCKED, FLAGGED, ...); the
// scheduled refresh reads its status.
const SkipOtherTemplateEvent = "other_template_event"

// templateStatuses maps message_template_status_update's event to the
// status the template has after it; events missing here change nothing a
// send depends on.
var templateStatuses = map[string]string{
	"APPROVED":         "APPROVED",
	"REINSTATED":       "APPROVED",
	"PENDING":          "PENDING",
	"IN_APPEAL":        "IN_APPEAL",
	"REJECTED":         "REJECTED",
	"PAUSED":           "PAUSED",
	"DISABLED":         "DISABLED",
	"ARCHIVED":         "ARCHIVED",
	"PENDING_DELETION": "PENDING_DELETION",
	"DELETED":          "DELETED",
}

// templateValue is both template fields' value.
type templateValue struct {
	Event    string      `json:"event"`
	ID       json.Number `json:"message_template_id"`
	Name     string      `json:"message_template_name"`
	Language string      `json:"message_template_language"`
	Reason   string      `json:"reason"`
	Category string      `json:"message_template_category"`
	// NewCategory is the current category: after the change, or while a
	// change is impending.
	NewCategory string `json:"new_category"`
}

// maxTemplateText bounds a template's name, language and category (Meta
// allows 512 characters for a name), and the reason kept.
const maxTemplateText = 512

func templateEvent(c change, e entry) (*wadispatchv1.TemplateEvent, string) {
	var v templateValue
	if json.Unmarshal(c.Value, &v) != nil {
		return nil, SkipMalformed
	}
	var account string
	if json.Unmarshal(e.ID, &account) != nil || !validID(account) || !templateWord(v.Name) || !templateWord(v.Language) {
		return nil, SkipNoID
	}
	var at json.Number
	if len(e.Time) > 0 && json.Unmarshal(e.Time, &at) != nil {
		return nil, SkipBadTimestamp
	}
	ts, err := unixTime(at.String())
	if err != nil {
		return nil, SkipBadTimestamp
	}
	ev := &wadispatchv1.TemplateEvent{
		BusinessAccountId: account, Name: v.Name, Language: v.Language, Timestamp: ts, Source: c.Field,
		Reason: dispatch.Clip(strings.ToValidUTF8(v.Reason, ""), maxTemplateText),
	}
	if validID(v.ID.String()) {
		ev.TemplateId = v.ID.String()
	}
	category := v.Category
	if c.Field == FieldTemplateCategory {
		category = v.NewCategory
	}
	if templateWord(category) {
		ev.Category = category
	}
	if c.Field == FieldTemplateStatus {
		status, ok := templateStatuses[v.Event]
		if !ok {
			return nil, SkipOtherTemplateEvent
		}
		ev.Status = status
	} else if ev.Category == "" {
		return nil, SkipMalformed
	}
	return ev, ""
}

// templateWord accepts a template's name, language or category as the
// registry keys documents by them: lowercase letters, digits, underscores
// and (for categories and languages) capitals, bounded.
func templateWord(s string) bool {
	if s == "" || len(s) > maxTemplateText {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
