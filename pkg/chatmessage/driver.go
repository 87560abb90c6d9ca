package chatmessage

import (
	"fmt"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Reasons a message is refused for what its driver's record says.
const (
	// ReasonOptedOut: the driver stopped the lease's messages of this kind
	// (marketing, or all as the lease's optOutPolicy says).
	ReasonOptedOut = "opted_out"
	// ReasonNumberChanged: the driver moved to another number
	// (WhatsApp's user_changed_number); the enquiry must be updated.
	ReasonNumberChanged = "number_changed"
)

// TemplateMarketing is the category of a marketing template, as WhatsApp
// names it.
const TemplateMarketing = "MARKETING"

// CheckDriver refuses m for what the driver's record of the lease says
// (record: the document's fields, nil when there is none): a driver who
// changed number, and one who stopped the lease's messages, for a
// marketing template (templateCategory from the registry; "" when
// unknown, which is not marketing) or, under OptOutAll, for every message.
func CheckDriver(m *Message, record map[string]any, policy, templateCategory string) error {
	if record == nil {
		return nil
	}
	if to, _ := record[dispatch.DriverChangedTo].(string); to != "" {
		return &Rejection{Reason: ReasonNumberChanged, Field: "driverMobileNumber",
			Detail: "the driver changed number on WhatsApp; update the enquiry with the new one"}
	}
	if record[dispatch.DriverOptedOut] != true {
		return nil
	}
	source, _ := record[dispatch.DriverOptOutSource].(string)
	marketing := m.Type == wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE && templateCategory == TemplateMarketing
	switch {
	case policy == OptOutAll:
		return &Rejection{Reason: ReasonOptedOut, Detail: fmt.Sprintf("the driver stopped this lease's messages (%s); the lease's policy stops all of them", dispatch.Clip(source, 40))}
	case marketing:
		return &Rejection{Reason: ReasonOptedOut, Field: "templateType", Detail: fmt.Sprintf("the driver stopped this lease's marketing messages (%s)", dispatch.Clip(source, 40))}
	}
	return nil
}
