package chatmessage_test

import (
	"errors"
	"math"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
	"github.com/visn/wadispatch/pkg/whatsapp"
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
