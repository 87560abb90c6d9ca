package chatmessage_test

import (
	"errors"
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
		{"unknown type", func(d map[string]any) { d["type"] = "image" }, chatmessage.ReasonInvalidData, "type"},
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
	want := chatmessage.WhatsAppConfig{PhoneNumberID: "106540352242922", APIVersion: "v23.0", TokenRef: "projects/p/secrets/l1-token/versions/latest", TemplateLanguage: "en_US"}
	if cfg != want {
		t.Fatalf("%+v", cfg)
	}
	cfg, err = chatmessage.ParseWhatsAppConfig(map[string]any{"whatsappConfig": map[string]any{
		"phoneNumberId": "1", "tokenRef": "t", "apiVersion": "v21.0", "templateLanguage": "es", "businessAccountId": "b",
	}}, defaults)
	if err != nil || cfg != (chatmessage.WhatsAppConfig{PhoneNumberID: "1", TokenRef: "t", APIVersion: "v21.0", TemplateLanguage: "es", BusinessAccountID: "b"}) {
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
