package chatmessage

import (
	"fmt"
	"slices"
	"strings"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/sendtask"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Reasons a template message is refused for what the lease's template
// registry says, before WhatsApp would refuse it (132000, 132001, 132012,
// 132015, 132016).
const (
	// ReasonTemplateNotApproved: the template is not APPROVED (PAUSED,
	// DISABLED, REJECTED, PENDING, DELETED).
	ReasonTemplateNotApproved = "template_not_approved"
	// ReasonTemplateLanguage: the registry holds the template name in
	// other languages only.
	ReasonTemplateLanguage = "template_language"
	// ReasonTemplateParameters: the message's named parameters are not
	// exactly the ones the template declares.
	ReasonTemplateParameters = "template_parameters"
)

// TemplateApproved is the status of a template WhatsApp sends.
const TemplateApproved = "APPROVED"

// Template is a registry entry: one template of a lease's business account
// in one language, as WhatsApp's message_templates lists it.
type Template struct {
	Name, Language, Category, Status string
	// Parameters are the named parameters its components declare, when
	// ParametersKnown: an entry made from a status or category webhook
	// alone has not seen the components (only a listing shows them).
	Parameters      []string
	ParametersKnown bool
}

// TemplateRegistry is what the lease's registry holds of a message's
// template: Entry in the lease's Language (nil when it has none), and
// Languages, every language it holds the name in (none when the registry
// has not seen the name).
type TemplateRegistry struct {
	Language  string
	Entry     *Template
	Languages []string
}

// Category is the registry's category of the template ("" when unknown).
func (r TemplateRegistry) Category() string {
	if r.Entry == nil {
		return ""
	}
	return r.Entry.Category
}

// ParseTemplate reads a registry entry's fields (nil when it does not
// exist: nil). Values of unexpected types read as absent: the recorder
// writes the entry, and a malformed one must not stop sends that WhatsApp
// itself would judge.
func ParseTemplate(fields map[string]any) *Template {
	if fields == nil {
		return nil
	}
	t := &Template{}
	t.Name, _ = fields[dispatch.TemplateName].(string)
	t.Language, _ = fields[dispatch.TemplateLanguage].(string)
	t.Category, _ = fields[dispatch.TemplateCategory].(string)
	t.Status, _ = fields[dispatch.TemplateStatus].(string)
	_, t.ParametersKnown = fields[dispatch.TemplateParameters].([]any)
	t.Parameters = stringList(fields[dispatch.TemplateParameters])
	return t
}

// TemplateLanguages reads a name's entry (nil when none): its languages.
func TemplateLanguages(fields map[string]any) []string {
	return stringList(fields[dispatch.TemplateLanguages])
}

func stringList(v any) []string {
	items, _ := v.([]any)
	var out []string
	for _, it := range items {
		if s, ok := it.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// CheckTemplate refuses a template message that the lease's registry says
// WhatsApp would refuse: a template not APPROVED, a name held only in other
// languages, or parameters other than exactly the declared ones (the
// message's payload, plus eta when it has an ETA). A template the registry
// has not seen is not refused: WhatsApp decides, as without a registry.
func CheckTemplate(m *Message, reg TemplateRegistry) error {
	if m.Type != wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE {
		return nil
	}
	t := reg.Entry
	if t == nil {
		others := slices.DeleteFunc(slices.Clone(reg.Languages), func(l string) bool { return l == reg.Language })
		if len(others) == 0 {
			return nil
		}
		slices.Sort(others)
		return &Rejection{Reason: ReasonTemplateLanguage, Field: "templateType",
			Detail: fmt.Sprintf("the template is not in the lease's language %s, only in %s", dispatch.Clip(reg.Language, 20), dispatch.Clip(strings.Join(others, ", "), 200))}
	}
	if t.Status != TemplateApproved {
		status := t.Status
		if status == "" {
			status = "unknown"
		}
		return &Rejection{Reason: ReasonTemplateNotApproved, Field: "templateType",
			Detail: fmt.Sprintf("the template's status is %s; WhatsApp sends only APPROVED templates", dispatch.Clip(status, 40))}
	}
	if !t.ParametersKnown {
		return nil
	}
	sent := sendtask.TemplateParameters(m.Payload, m.ETA)
	var missing, extra []string
	for _, p := range t.Parameters {
		if _, ok := sent[p]; !ok {
			missing = append(missing, p)
		}
	}
	for p := range sent {
		if !slices.Contains(t.Parameters, p) {
			extra = append(extra, dispatch.Clip(p, 40))
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	slices.Sort(missing)
	slices.Sort(extra)
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing "+strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		parts = append(parts, "not declared "+strings.Join(extra, ", "))
	}
	return &Rejection{Reason: ReasonTemplateParameters, Field: "payload",
		Detail: dispatch.Clip("the template's named parameters differ: "+strings.Join(parts, "; "), 400)}
}
