package chatmessage_test

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// check runs the whole validation on fields and asserts its contract: a
// message or a Rejection with a reason, and a task that satisfies what the
// sender relies on.
func check(t *testing.T, fields, lease map[string]any, region string) {
	m, err := chatmessage.Parse(ref, fields, region)
	if err != nil {
		var r *chatmessage.Rejection
		if !errors.As(err, &r) || r.Reason == "" {
			t.Fatalf("Parse error is not a Rejection: %v", err)
		}
		return
	}
	cfg, err := chatmessage.ParseWhatsAppConfig(lease, chatmessage.ConfigDefaults{APIVersion: "v23.0", TemplateLanguage: "en_US"})
	if err != nil {
		var r *chatmessage.Rejection
		if !errors.As(err, &r) || r.Reason != chatmessage.ReasonNoWhatsAppConfig {
			t.Fatalf("ParseWhatsAppConfig: %v", err)
		}
		return
	}
	task, err := m.Task(cfg, "ev", time.Unix(1, 0))
	if err != nil {
		var r *chatmessage.Rejection
		if !errors.As(err, &r) || r.Reason != chatmessage.ReasonInvalidData {
			t.Fatalf("Task: %v", err)
		}
		return
	}
	if task.DriverMobileNumber == "" || task.DriverMobileNumber[0] != '+' || task.CreatedBy == "" || task.MessageDocId != ref.Path() {
		t.Fatalf("accepted task breaks the contract: %v", task)
	}
	if task.LeaseWhatsappDetails.GetPhoneNumberId() == "" || task.LeaseWhatsappDetails.GetTokenRef() == "" {
		t.Fatalf("task without phone number id or token ref: %v", task)
	}
	if task.Message != "" && utf8.RuneCountInString(task.Message) > whatsapp.MaxTextBodyLength && task.TemplateType == "" {
		t.Fatalf("text body over the limit accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("Hello", "text", "07911 123456", "user-7", "", "web", false, "name", "Sam", 15.0, "GB", "106540352242922", "tok")
	f.Add("", "template", "+44 7400 123456", "u", "collection_reminder", "", false, "first_name", "Ann", 0.0, "GB", "1", "t")
	f.Add("x", "text", "(201) 555-0123", "u", "", "driver", true, "", "", 1.5, "US", "", "")
	f.Add("x", "image", "+919876543210", "u", "", "", false, "k", "", math.Copysign(0, -1), "ZZ", "1", "t")
	f.Fuzz(func(t *testing.T, msg, typ, number, createdBy, templateType, source string, migrated bool,
		payloadKey, payloadValue string, eta float64, region, phoneNumberID, tokenRef string) {
		fields := map[string]any{
			"message": msg, "type": typ, "driverMobileNumber": number, "createdBy": createdBy,
			"templateType": templateType, "source": source, "isMigrated": migrated, "ETA": eta,
		}
		if payloadKey != "" {
			fields["payload"] = map[string]any{payloadKey: payloadValue}
		}
		lease := map[string]any{"whatsappConfig": map[string]any{"phoneNumberId": phoneNumberID, "tokenRef": tokenRef}}
		check(t, fields, lease, region)
	})
}

// FuzzParseDocument decodes arbitrary protobuf as a Firestore document (the
// shape Eventarc delivers) and validates it as both message and lease.
func FuzzParseDocument(f *testing.F) {
	seed := func(fields map[string]any) []byte {
		b, err := proto.Marshal(&firestoredata.Document{Fields: eventarctest.Fields(fields)})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed(textDoc()))
	f.Add(seed(templateDoc()))
	f.Add(seed(interactiveDoc()))
	f.Add(seed(listDoc()))
	f.Add(seed(map[string]any{"whatsappConfig": map[string]any{"phoneNumberId": int64(1), "tokenRef": "t"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var doc firestoredata.Document
		if proto.Unmarshal(b, &doc) != nil {
			return
		}
		fields := firestoreevent.Fields(doc.GetFields())
		check(t, fields, fields, "GB")
	})
}

// FuzzParseInteractive builds interactive maps of every shape (either kind's
// parts, counts around WhatsApp's limits, repeated ids and titles) and holds
// the whole validation to its contract: a task the sender can send, or
// invalid_data naming a field of the message or its interactive map.
func FuzzParseInteractive(f *testing.F) {
	f.Add("button", "Collection", "Can you collect?", "Reply", "", uint8(2), "yes", "Yes", uint8(0), uint8(0), "", "", false)
	f.Add("list", "", "Pick a slot", "", "Slots", uint8(0), "", "", uint8(2), uint8(3), "Morning", "Depot A", false)
	f.Add("button", "", "b", "", "", uint8(4), "a", "A", uint8(0), uint8(0), "", "", true)
	f.Add("list", "h", "b", "f", "Pick", uint8(1), "a", "A", uint8(11), uint8(1), "", "", true)
	f.Add("carousel", "", "", "", "", uint8(0), "", "", uint8(0), uint8(0), "", "", false)
	f.Fuzz(func(t *testing.T, kind, header, body, footer, buttonText string, nButtons uint8, id, title string,
		nSections, nRows uint8, sectionTitle, description string, repeat bool) {
		in := map[string]any{"kind": kind, "header": header, "footer": footer}
		if buttonText != "" {
			in["buttonText"] = buttonText
		}
		unique := func(s string, i int) string {
			if repeat {
				return s
			}
			return s + strconv.Itoa(i)
		}
		if nButtons > 0 {
			buttons := make([]any, nButtons%8)
			for i := range buttons {
				buttons[i] = map[string]any{"id": unique(id, i), "title": unique(title, i)}
			}
			in["buttons"] = buttons
		}
		if nSections > 0 {
			sections := make([]any, nSections%16)
			for i := range sections {
				rows := make([]any, nRows%16)
				for j := range rows {
					rows[j] = map[string]any{"id": unique(id, i*16+j), "title": title, "description": description}
				}
				sections[i] = map[string]any{"title": unique(sectionTitle, i), "rows": rows}
			}
			in["sections"] = sections
		}
		fields := map[string]any{"message": body, "type": "interactive", "driverMobileNumber": "07911 123456", "createdBy": "u", "interactive": in}
		m, err := chatmessage.Parse(ref, fields, "GB")
		if err == nil {
			var task *wadispatchv1.SendTask
			if task, err = m.Task(chatmessage.WhatsAppConfig{PhoneNumberID: "1", TokenRef: "t", TemplateLanguage: "en_US"}, "ev", time.Time{}); err == nil {
				if _, msg, err := sendtask.Message(task, "v23.0"); err != nil || msg.Validate() != nil {
					t.Fatalf("accepted task the sender cannot send: %v", err)
				}
				return
			}
		}
		var r *chatmessage.Rejection
		if !errors.As(err, &r) || r.Reason != chatmessage.ReasonInvalidData || r.Detail == "" ||
			r.Field != "message" && r.Field != "interactive" && !strings.HasPrefix(r.Field, "interactive.") {
			t.Fatalf("rejection %#v (%v): want invalid_data naming message or interactive.*", r, err)
		}
	})
}
