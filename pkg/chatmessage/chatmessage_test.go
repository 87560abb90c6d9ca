package chatmessage_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

var ref = dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}

func textDoc() map[string]any {
	return map[string]any{
		"message":            "Your van is ready",
		"type":               "text",
		"driverMobileNumber": "07911 123456",
		"createdBy":          "user-7",
		"source":             "web",
		"isMigrated":         false,
	}
}

func templateDoc() map[string]any {
	return map[string]any{
		"message":            "",
		"type":               "template",
		"templateType":       "collection_reminder",
		"driverMobileNumber": "+44 7400 123456",
		"createdBy":          "user-7",
		"accountId":          "acc-1",
		"serviceUnitId":      "su-1",
		"payload":            map[string]any{"name": "Sam", "slot": int64(3), "price": 12.5, "confirmed": true, "at": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		"ETA":                float64(30),
	}
}

func rejection(t *testing.T, err error) *chatmessage.Rejection {
	t.Helper()
	var r *chatmessage.Rejection
	if !errors.As(err, &r) {
		t.Fatalf("err = %v, want a *Rejection", err)
	}
	return r
}

func TestParseText(t *testing.T) {
	m, err := chatmessage.Parse(ref, textDoc(), "GB")
	if err != nil {
		t.Fatal(err)
	}
	if m.DriverE164 != "+447911123456" || m.Type != wadispatchv1.MessageType_MESSAGE_TYPE_TEXT ||
		m.Body != "Your van is ready" || m.CreatedBy != "user-7" || m.ETA != 0 || m.Payload != nil || !m.NeedsEnquiry() {
		t.Fatalf("%+v", m)
	}
}

func TestParseTemplateAndTask(t *testing.T) {
	m, err := chatmessage.Parse(ref, templateDoc(), "GB")
	if err != nil {
		t.Fatal(err)
	}
	if m.NeedsEnquiry() {
		t.Error("message with both ids needs the enquiry")
	}
	created := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cfg := chatmessage.WhatsAppConfig{PhoneNumberID: "106540352242922", APIVersion: "v23.0", TokenRef: "lease-l1-token", TemplateLanguage: "en_GB", BusinessAccountID: "102290129340398"}
	task, err := m.Task(cfg, "ev-9", created)
	if err != nil {
		t.Fatal(err)
	}
	want := &wadispatchv1.SendTask{
		LeaseId:            "l1",
		AccountId:          "acc-1",
		ServiceUnitId:      "su-1",
		EnquiryId:          "e1",
		MessageDocId:       "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1",
		MessageId:          "m1",
		DriverMobileNumber: "+447400123456",
		Message:            "",
		Type:               wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{
			PhoneNumberId: "106540352242922", ApiVersion: "v23.0", TokenRef: "lease-l1-token",
			TemplateLanguage: "en_GB", BusinessAccountId: "102290129340398",
		},
		CreatedBy:    "user-7",
		Payload:      map[string]string{"name": "Sam", "slot": "3", "price": "12.5", "confirmed": "true", "at": "2026-01-02T03:04:05Z"},
		TemplateType: "collection_reminder",
		Eta:          30,
		CreatedAt:    timestamppb.New(created),
		EventId:      "ev-9",
	}
	if !proto.Equal(task, want) {
		t.Fatalf("task\n got %v\nwant %v", task, want)
	}
}

func TestFillFromEnquiry(t *testing.T) {
	doc := textDoc()
	doc["accountId"] = "from-message"
	m, err := chatmessage.Parse(ref, doc, "GB")
	if err != nil {
		t.Fatal(err)
	}
	m.FillFromEnquiry(map[string]any{"accountId": "from-enquiry", "serviceUnitId": "su-enquiry"})
	if m.AccountID != "from-message" || m.ServiceUnitID != "su-enquiry" {
		t.Fatalf("account %q service unit %q", m.AccountID, m.ServiceUnitID)
	}
	m2, _ := chatmessage.Parse(ref, textDoc(), "GB")
	m2.FillFromEnquiry(map[string]any{"accountId": int64(5)})
	if m2.AccountID != "" {
		t.Fatalf("non-string enquiry accountId taken: %q", m2.AccountID)
	}
}

func TestPhoneNumbers(t *testing.T) {
	for _, tc := range []struct {
		in, region, want string
	}{
		{"07911 123456", "GB", "+447911123456"},
		{"+447911123456", "GB", "+447911123456"},
		{"+44 (0)7911 123456", "US", "+447911123456"},
		{"(201) 555-0123", "US", "+12015550123"},
		{"0049 1512 3456789", "GB", "+4915123456789"},
		{"+91 98765 43210", "GB", "+919876543210"},
	} {
		got, err := chatmessage.NormalizeNumber(tc.in, tc.region)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeNumber(%q, %s) = %q, %v; want %q", tc.in, tc.region, got, err, tc.want)
		}
	}
	// +447700900xxx is Ofcom's range for drama: no real phone has it.
	for _, bad := range []string{"+447700900123", "", "hello", "123", "+44 1", "07700 90012345678", strings.Repeat("1", 100)} {
		if got, err := chatmessage.NormalizeNumber(bad, "GB"); err == nil {
			t.Errorf("NormalizeNumber(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseRejections(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(map[string]any)
		reason string
		field  string
	}{
		{"from driver", func(d map[string]any) { d["source"] = "driver"; delete(d, "createdBy") }, chatmessage.ReasonFromDriver, "source"},
		{"migrated", func(d map[string]any) { d["isMigrated"] = true }, chatmessage.ReasonMigrated, "isMigrated"},
		{"isMigrated as string", func(d map[string]any) { d["isMigrated"] = "true" }, chatmessage.ReasonInvalidData, "isMigrated"},
		{"source not a string", func(d map[string]any) { d["source"] = int64(1) }, chatmessage.ReasonInvalidData, "source"},
		{"no message", func(d map[string]any) { delete(d, "message") }, chatmessage.ReasonInvalidData, "message"},
		{"null message", func(d map[string]any) { d["message"] = nil }, chatmessage.ReasonInvalidData, "message"},
		{"message not a string", func(d map[string]any) { d["message"] = int64(4) }, chatmessage.ReasonInvalidData, "message"},
		{"empty text", func(d map[string]any) { d["message"] = "" }, chatmessage.ReasonInvalidData, "message"},
		{"text too long", func(d map[string]any) { d["message"] = strings.Repeat("é", whatsapp.MaxTextBodyLength+1) }, chatmessage.ReasonInvalidData, "message"},
		{"no type", func(d map[string]any) { delete(d, "type") }, chatmessage.ReasonInvalidData, "type"},
		{"unknown type", func(d map[string]any) { d["type"] = "sticker" }, chatmessage.ReasonInvalidData, "type"},
		{"no createdBy", func(d map[string]any) { delete(d, "createdBy") }, chatmessage.ReasonInvalidData, "createdBy"},
		{"empty createdBy", func(d map[string]any) { d["createdBy"] = "" }, chatmessage.ReasonInvalidData, "createdBy"},
		{"createdBy naming no document", func(d map[string]any) { d["createdBy"] = "team/anna" }, chatmessage.ReasonInvalidData, "createdBy"},
		{"createdBy too long for an id", func(d map[string]any) { d["createdBy"] = strings.Repeat("u", 1501) }, chatmessage.ReasonInvalidData, "createdBy"},
		{"no number", func(d map[string]any) { delete(d, "driverMobileNumber") }, chatmessage.ReasonInvalidData, "driverMobileNumber"},
		{"number as integer", func(d map[string]any) { d["driverMobileNumber"] = int64(447700900123) }, chatmessage.ReasonInvalidData, "driverMobileNumber"},
		{"invalid number", func(d map[string]any) { d["driverMobileNumber"] = "12345" }, chatmessage.ReasonInvalidData, "driverMobileNumber"},
		{"template without name", func(d map[string]any) { d["type"] = "template" }, chatmessage.ReasonInvalidData, "templateType"},
		{"templateType not a string", func(d map[string]any) { d["templateType"] = true }, chatmessage.ReasonInvalidData, "templateType"},
		{"accountId not a string", func(d map[string]any) { d["accountId"] = int64(3) }, chatmessage.ReasonInvalidData, "accountId"},
		{"serviceUnitId not a string", func(d map[string]any) { d["serviceUnitId"] = []any{} }, chatmessage.ReasonInvalidData, "serviceUnitId"},
		{"payload not a map", func(d map[string]any) { d["payload"] = "x" }, chatmessage.ReasonInvalidData, "payload"},
		{"payload nested map", func(d map[string]any) { d["payload"] = map[string]any{"a": map[string]any{}} }, chatmessage.ReasonInvalidData, "payload.a"},
		{"payload null value", func(d map[string]any) { d["payload"] = map[string]any{"a": nil} }, chatmessage.ReasonInvalidData, "payload.a"},
		{"payload NaN", func(d map[string]any) { d["payload"] = map[string]any{"a": math.NaN()} }, chatmessage.ReasonInvalidData, "payload.a"},
		{"payload reference", func(d map[string]any) {
			d["payload"] = map[string]any{"a": firestoreevent.Reference("projects/p/databases/d/documents/x/y")}
		}, chatmessage.ReasonInvalidData, "payload.a"},
		{"ETA fractional", func(d map[string]any) { d["ETA"] = 1.5 }, chatmessage.ReasonInvalidData, "ETA"},
		{"ETA too large", func(d map[string]any) { d["ETA"] = 1e19 }, chatmessage.ReasonInvalidData, "ETA"},
		{"ETA infinite", func(d map[string]any) { d["ETA"] = math.Inf(-1) }, chatmessage.ReasonInvalidData, "ETA"},
		{"ETA string", func(d map[string]any) { d["ETA"] = "10" }, chatmessage.ReasonInvalidData, "ETA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := textDoc()
			tc.mutate(doc)
			_, err := chatmessage.Parse(ref, doc, "GB")
			r := rejection(t, err)
			if r.Reason != tc.reason || r.Field != tc.field {
				t.Fatalf("rejection %+v, want %s on %s", r, tc.reason, tc.field)
			}
			if r.RejectReason() != tc.reason {
				t.Fatalf("RejectReason %q", r.RejectReason())
			}
			// Driver and migrated messages are not the V-Customer's to fix.
			if want := tc.reason == chatmessage.ReasonInvalidData; r.Actionable() != want {
				t.Errorf("Actionable() = %v, want %v", r.Actionable(), want)
			}
		})
	}
}

func TestTextAtLimit(t *testing.T) {
	doc := textDoc()
	doc["message"] = strings.Repeat("é", whatsapp.MaxTextBodyLength)
	if _, err := chatmessage.Parse(ref, doc, "GB"); err != nil {
		t.Fatal(err)
	}
}

func TestETA(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want int64
	}{{nil, 0}, {int64(-5), -5}, {float64(42), 42}, {math.Copysign(0, -1), 0}, {float64(1 << 62), 1 << 62}} {
		doc := textDoc()
		doc["ETA"] = tc.in
		m, err := chatmessage.Parse(ref, doc, "GB")
		if err != nil || m.ETA != tc.want {
			t.Errorf("ETA %v: got %v, %v; want %d", tc.in, m, err, tc.want)
		}
	}
}

// The sender's rule for building the WhatsApp request is applied before
// publishing: Meta's parameter names, non-empty values.
func TestTaskRejectsUnsendableTemplate(t *testing.T) {
	for _, payload := range []map[string]any{
		{"First Name": "Sam"},
		{"name": ""},
	} {
		doc := templateDoc()
		doc["payload"] = payload
		m, err := chatmessage.Parse(ref, doc, "GB")
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Task(chatmessage.WhatsAppConfig{PhoneNumberID: "1", TokenRef: "t", TemplateLanguage: "en_US"}, "ev", time.Time{})
		if r := rejection(t, err); r.Reason != chatmessage.ReasonInvalidData || r.Field != "payload" {
			t.Fatalf("payload %v: %+v", payload, r)
		}
	}
}

func TestParseWhatsAppConfig(t *testing.T) {
	defaults := chatmessage.ConfigDefaults{APIVersion: "v23.0", TemplateLanguage: "en_US"}
	cfg, err := chatmessage.ParseWhatsAppConfig(map[string]any{"name": "Lease One", "whatsappConfig": map[string]any{
		"phoneNumberId": int64(106540352242922), "tokenRef": "projects/p/secrets/l1-token/versions/latest",
	}}, defaults)
	if err != nil {
		t.Fatal(err)
	}
	want := chatmessage.WhatsAppConfig{PhoneNumberID: "106540352242922", APIVersion: "v23.0", TokenRef: "projects/p/secrets/l1-token/versions/latest", TemplateLanguage: "en_US", OptOutPolicy: chatmessage.OptOutMarketing}
	if cfg != want {
		t.Fatalf("%+v", cfg)
	}
	cfg, err = chatmessage.ParseWhatsAppConfig(map[string]any{"whatsappConfig": map[string]any{
		"phoneNumberId": "1", "tokenRef": "t", "apiVersion": "v21.0", "templateLanguage": "es", "businessAccountId": "b", "optOutPolicy": "all",
	}}, defaults)
	if err != nil || cfg != (chatmessage.WhatsAppConfig{PhoneNumberID: "1", TokenRef: "t", APIVersion: "v21.0", TemplateLanguage: "es", BusinessAccountID: "b", OptOutPolicy: chatmessage.OptOutAll}) {
		t.Fatalf("%+v %v", cfg, err)
	}

	for name, lease := range map[string]map[string]any{
		"no lease":             nil,
		"no config":            {"name": "x"},
		"config not a map":     {"whatsappConfig": "x"},
		"no phone number id":   {"whatsappConfig": map[string]any{"tokenRef": "t"}},
		"empty phone number":   {"whatsappConfig": map[string]any{"phoneNumberId": "", "tokenRef": "t"}},
		"no token ref":         {"whatsappConfig": map[string]any{"phoneNumberId": "1"}},
		"token ref not string": {"whatsappConfig": map[string]any{"phoneNumberId": "1", "tokenRef": int64(1)}},
		"api version mistyped": {"whatsappConfig": map[string]any{"phoneNumberId": "1", "tokenRef": "t", "apiVersion": 23.0}},
	} {
		_, err := chatmessage.ParseWhatsAppConfig(lease, defaults)
		if r := rejection(t, err); r.Reason != chatmessage.ReasonNoWhatsAppConfig || !r.Actionable() {
			t.Errorf("%s: %+v (actionable %v)", name, r, r.Actionable())
		}
	}
}

// A rejection's text never carries the token reference's value.
func TestConfigRejectionOmitsTokenRef(t *testing.T) {
	_, err := chatmessage.ParseWhatsAppConfig(map[string]any{"whatsappConfig": map[string]any{"tokenRef": "secret-name-xyz"}}, chatmessage.ConfigDefaults{})
	if err == nil || strings.Contains(err.Error(), "secret-name-xyz") {
		t.Fatalf("err = %v", err)
	}
}

func interactiveDoc() map[string]any {
	return map[string]any{
		"message":            "Can you collect the van at 10:30?",
		"type":               "interactive",
		"driverMobileNumber": "07911 123456",
		"createdBy":          "user-7",
		"interactive": map[string]any{
			"kind": "button", "header": "Collection", "footer": "Reply to confirm",
			"buttons": []any{
				map[string]any{"id": "yes", "title": "Yes"},
				map[string]any{"id": "later", "title": "Later today"},
			},
		},
	}
}

func listDoc() map[string]any {
	d := interactiveDoc()
	d["interactive"] = map[string]any{
		"kind": "list", "buttonText": "Slots",
		"sections": []any{
			map[string]any{"title": "Morning", "rows": []any{map[string]any{"id": "am-9", "title": "09:00", "description": "Depot A"}}},
			map[string]any{"title": "Afternoon", "rows": []any{map[string]any{"id": "pm-2", "title": "14:00"}}},
		},
	}
	return d
}

var testConfig = chatmessage.WhatsAppConfig{PhoneNumberID: "106540352242922", APIVersion: "v23.0", TokenRef: "t", TemplateLanguage: "en_GB"}

func TestParseInteractiveTask(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  map[string]any
		want *wadispatchv1.Interactive
	}{
		"button": {interactiveDoc(), &wadispatchv1.Interactive{
			Kind: wadispatchv1.InteractiveKind_INTERACTIVE_KIND_BUTTON, Header: "Collection", Footer: "Reply to confirm",
			Buttons: []*wadispatchv1.InteractiveButton{{Id: "yes", Title: "Yes"}, {Id: "later", Title: "Later today"}},
		}},
		"list": {listDoc(), &wadispatchv1.Interactive{
			Kind: wadispatchv1.InteractiveKind_INTERACTIVE_KIND_LIST, ButtonText: "Slots",
			Sections: []*wadispatchv1.InteractiveSection{
				{Title: "Morning", Rows: []*wadispatchv1.InteractiveRow{{Id: "am-9", Title: "09:00", Description: "Depot A"}}},
				{Title: "Afternoon", Rows: []*wadispatchv1.InteractiveRow{{Id: "pm-2", Title: "14:00"}}},
			},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := chatmessage.Parse(ref, tc.doc, "GB")
			if err != nil {
				t.Fatal(err)
			}
			task, err := m.Task(testConfig, "ev", time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if task.Type != wadispatchv1.MessageType_MESSAGE_TYPE_INTERACTIVE || task.Message != "Can you collect the van at 10:30?" || !proto.Equal(task.Interactive, tc.want) {
				t.Fatalf("task %v\nwant interactive %v", task, tc.want)
			}
		})
	}
}

func TestTemplateButtons(t *testing.T) {
	doc := templateDoc()
	doc["templateButtons"] = []any{"confirm:m1", "move:m1"}
	m, err := chatmessage.Parse(ref, doc, "GB")
	if err != nil {
		t.Fatal(err)
	}
	task, err := m.Task(testConfig, "ev", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := task.TemplateButtonPayloads; len(got) != 2 || got[0] != "confirm:m1" || got[1] != "move:m1" {
		t.Fatalf("template_button_payloads %q", got)
	}
}

// Every rule on interactive documents and template buttons: the wrong types
// are refused by Parse, WhatsApp's limits by Task (the sender's own rule),
// each naming the document field and saying what is wrong.
func TestInteractiveRejections(t *testing.T) {
	set := func(key string, v any) func(map[string]any) {
		return func(d map[string]any) { d["interactive"].(map[string]any)[key] = v }
	}
	button := func(id, title string) any { return map[string]any{"id": id, "title": title} }
	row := func(id, title string) any { return map[string]any{"id": id, "title": title} }
	x := strings.Repeat
	for _, tc := range []struct {
		name   string
		doc    func() map[string]any
		mutate func(map[string]any)
		field  string
		detail string // a part of it
	}{
		{"no interactive map", interactiveDoc, func(d map[string]any) { delete(d, "interactive") }, "interactive", "missing"},
		{"interactive not a map", interactiveDoc, func(d map[string]any) { d["interactive"] = "button" }, "interactive", "is a string, want a map"},
		{"no kind", interactiveDoc, set("kind", nil), "interactive.kind", "missing"},
		{"unknown kind", interactiveDoc, set("kind", "carousel"), "interactive.kind", `"carousel"`},
		{"kind not a string", interactiveDoc, set("kind", int64(1)), "interactive.kind", "integer"},
		{"header not a string", interactiveDoc, set("header", true), "interactive.header", "boolean"},
		{"footer not a string", interactiveDoc, set("footer", int64(2)), "interactive.footer", "integer"},
		{"buttons not an array", interactiveDoc, set("buttons", map[string]any{}), "interactive.buttons", "want an array"},
		{"button not a map", interactiveDoc, set("buttons", []any{"Yes"}), "interactive.buttons[0]", "want a map"},
		{"button without id", interactiveDoc, set("buttons", []any{map[string]any{"title": "Yes"}}), "interactive.buttons[0].id", "missing"},
		{"button title not a string", interactiveDoc, set("buttons", []any{map[string]any{"id": "a", "title": int64(1)}}), "interactive.buttons[0].title", "integer"},
		{"sections not an array", listDoc, set("sections", "Morning"), "interactive.sections", "want an array"},
		{"row not a map", listDoc, set("sections", []any{map[string]any{"rows": []any{int64(1)}}}), "interactive.sections[0].rows[0]", "want a map"},
		{"row description not a string", listDoc, set("sections", []any{map[string]any{"rows": []any{map[string]any{"id": "a", "title": "b", "description": 1.5}}}}), "interactive.sections[0].rows[0].description", "double"},
		{"buttonText not a string", listDoc, set("buttonText", []any{}), "interactive.buttonText", "array"},

		{"no body", interactiveDoc, func(d map[string]any) { d["message"] = "" }, "message", "needs a body"},
		{"button body over 1024", interactiveDoc, func(d map[string]any) { d["message"] = x("é", 1025) }, "message", "1025 characters, WhatsApp allows 1024"},
		{"header over 60", interactiveDoc, set("header", x("h", 61)), "interactive.header", "allows 60"},
		{"footer over 60", interactiveDoc, set("footer", x("f", 61)), "interactive.footer", "allows 60"},
		{"no buttons", interactiveDoc, set("buttons", []any{}), "interactive.buttons", "at least one"},
		{"four buttons", interactiveDoc, set("buttons", []any{button("a", "A"), button("b", "B"), button("c", "C"), button("d", "D")}), "interactive.buttons[3]", "WhatsApp allows at most 3 reply buttons"},
		{"button title over 20", interactiveDoc, set("buttons", []any{button("a", x("t", 21))}), "interactive.buttons[0].title", "allows 20"},
		{"button id over 256", interactiveDoc, set("buttons", []any{button(x("i", 257), "A")}), "interactive.buttons[0].id", "allows 256"},
		{"empty button id", interactiveDoc, set("buttons", []any{button("", "A")}), "interactive.buttons[0].id", "required"},
		{"duplicate button id", interactiveDoc, set("buttons", []any{button("a", "A"), button("a", "B")}), "interactive.buttons[1].id", "repeats"},
		{"duplicate button title", interactiveDoc, set("buttons", []any{button("a", "A"), button("b", "A")}), "interactive.buttons[1].title", "repeats"},
		{"buttons on a list", listDoc, set("buttons", []any{button("a", "A")}), "interactive.buttons", "a list message has no reply buttons"},
		{"sections on buttons", interactiveDoc, set("sections", []any{map[string]any{"rows": []any{row("a", "A")}}}), "interactive.buttonText", "no list"},
		{"list without buttonText", listDoc, set("buttonText", nil), "interactive.buttonText", "required"},
		{"buttonText over 20", listDoc, set("buttonText", x("b", 21)), "interactive.buttonText", "allows 20"},
		{"list body over 4096", listDoc, func(d map[string]any) { d["message"] = x("b", 4097) }, "message", "allows 4096"},
		{"no sections", listDoc, set("sections", nil), "interactive.sections", "at least one section"},
		{"eleven sections", listDoc, set("sections", func() []any {
			s := make([]any, 11)
			for i := range s {
				s[i] = map[string]any{"title": fmt.Sprint("S", i), "rows": []any{row(fmt.Sprint(i), "r")}}
			}
			return s
		}()), "interactive.sections[10]", "at most 10 sections"},
		{"untitled section among two", listDoc, set("sections", []any{
			map[string]any{"title": "A", "rows": []any{row("a", "A")}}, map[string]any{"rows": []any{row("b", "B")}},
		}), "interactive.sections[1].title", "more than one"},
		{"section title over 24", listDoc, set("sections", []any{map[string]any{"title": x("s", 25), "rows": []any{row("a", "A")}}}), "interactive.sections[0].title", "allows 24"},
		{"section without rows", listDoc, set("sections", []any{map[string]any{"title": "A"}}), "interactive.sections[0].rows", "at least one row"},
		{"eleven rows", listDoc, set("sections", []any{map[string]any{"rows": func() []any {
			r := make([]any, 11)
			for i := range r {
				r[i] = row(fmt.Sprint("r", i), "x")
			}
			return r
		}()}}), "interactive.sections[0].rows[10]", "at most 10 rows"},
		{"row id over 200", listDoc, set("sections", []any{map[string]any{"rows": []any{row(x("i", 201), "A")}}}), "interactive.sections[0].rows[0].id", "allows 200"},
		{"row title over 24", listDoc, set("sections", []any{map[string]any{"rows": []any{row("a", x("t", 25))}}}), "interactive.sections[0].rows[0].title", "allows 24"},
		{"row description over 72", listDoc, set("sections", []any{map[string]any{"rows": []any{map[string]any{"id": "a", "title": "A", "description": x("d", 73)}}}}), "interactive.sections[0].rows[0].description", "allows 72"},
		{"row ids repeat across sections", listDoc, set("sections", []any{
			map[string]any{"title": "A", "rows": []any{row("a", "A")}}, map[string]any{"title": "B", "rows": []any{row("a", "B")}},
		}), "interactive.sections[1].rows[0].id", "repeats"},

		{"templateButtons not an array", templateDoc, func(d map[string]any) { d["templateButtons"] = "yes" }, "templateButtons", "want an array"},
		{"template button not a string", templateDoc, func(d map[string]any) { d["templateButtons"] = []any{"a", int64(1)} }, "templateButtons[1]", "integer"},
		{"empty template button payload", templateDoc, func(d map[string]any) { d["templateButtons"] = []any{""} }, "templateButtons[0]", "required"},
		{"eleven template buttons", templateDoc, func(d map[string]any) {
			d["templateButtons"] = []any{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
		}, "templateButtons[10]", "at most 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.doc()
			tc.mutate(doc)
			m, err := chatmessage.Parse(ref, doc, "GB")
			if err == nil {
				_, err = m.Task(testConfig, "ev", time.Time{})
			}
			r := rejection(t, err)
			if r.Reason != chatmessage.ReasonInvalidData || r.Field != tc.field || !strings.Contains(r.Detail, tc.detail) || !r.Actionable() {
				t.Fatalf("rejection %+v, want invalid_data on %s saying %q", r, tc.field, tc.detail)
			}
		})
	}
}
