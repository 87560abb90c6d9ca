package whatsapp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestTemplateMessageBuildsSortedNamedBodyParameters(t *testing.T) {
	m, err := TemplateMessage("+447700900123", "eta_update", "en_GB", map[string]string{
		"eta_minutes": "15",
		"driver_name": "Sam",
		"plate":       "AB12 CDE",
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(m.request())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+447700900123","type":"template",` +
		`"template":{"name":"eta_update","language":{"code":"en_GB"},"components":[{"type":"body","parameters":[` +
		`{"type":"text","parameter_name":"driver_name","text":"Sam"},` +
		`{"type":"text","parameter_name":"eta_minutes","text":"15"},` +
		`{"type":"text","parameter_name":"plate","text":"AB12 CDE"}]}]}}`
	if string(got) != want {
		t.Fatalf("request body\n got %s\nwant %s", got, want)
	}
}

func TestTemplateMessageWithoutPayloadHasNoComponents(t *testing.T) {
	m, err := TemplateMessage("447700900123", "hello_world", "en_US", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(m.request())
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900123","type":"template","template":{"name":"hello_world","language":{"code":"en_US"}}}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestTemplateMessageRejectsWhatMetaRejects(t *testing.T) {
	cases := map[string]struct {
		to, name, lang string
		payload        map[string]string
	}{
		"uppercase parameter name": {"447700900123", "t", "en", map[string]string{"driverName": "x"}},
		"dash in parameter name":   {"447700900123", "t", "en", map[string]string{"eta-min": "x"}},
		"empty parameter value":    {"447700900123", "t", "en", map[string]string{"eta": ""}},
		"no template name":         {"447700900123", "", "en", nil},
		"no language":              {"447700900123", "t", "", nil},
		"bad recipient":            {"07700 9001 x", "t", "en", nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := TemplateMessage(c.to, c.name, c.lang, c.payload)
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("err = %v, want ErrInvalidMessage", err)
			}
		})
	}
}

func TestTextMessageBody(t *testing.T) {
	m := TextMessage("447700900123", "Your driver is 5 min away: https://x.test", true)
	got, _ := json.Marshal(m.request())
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900123","type":"text","text":{"body":"Your driver is 5 min away: https://x.test","preview_url":true}}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestCallbackDataIsSentAsBizOpaqueCallbackData(t *testing.T) {
	m := TextMessage("447700900123", "Pickup at 10:30", false)
	m.CallbackData = "wd1/claim/l1/e1/m1"
	got, _ := json.Marshal(m.request())
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900123","type":"text","text":{"body":"Pickup at 10:30","preview_url":false},"biz_opaque_callback_data":"wd1/claim/l1/e1/m1"}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	m.CallbackData = strings.Repeat("é", MaxCallbackDataLength)
	if err := m.Validate(); err != nil {
		t.Fatalf("%d characters of callback data rejected: %v", MaxCallbackDataLength, err)
	}
	m.CallbackData += "x"
	if err := m.Validate(); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("%d characters of callback data: err = %v, want ErrInvalidMessage", MaxCallbackDataLength+1, err)
	}
}

func TestTextBodyLimitCountsCharactersNotBytes(t *testing.T) {
	atLimit := strings.Repeat("é", MaxTextBodyLength) // 2 bytes each
	if err := TextMessage("447700900123", atLimit, false).Validate(); err != nil {
		t.Fatalf("%d characters rejected: %v", MaxTextBodyLength, err)
	}
	if err := TextMessage("447700900123", atLimit+"x", false).Validate(); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("%d characters: err = %v, want ErrInvalidMessage", MaxTextBodyLength+1, err)
	}
	if err := TextMessage("447700900123", "", false).Validate(); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("empty body: err = %v, want ErrInvalidMessage", err)
	}
}

func TestValidateRecipient(t *testing.T) {
	for to, ok := range map[string]bool{
		"447700900123":      true,
		"+447700900123":     true,
		"1234567":           true,
		"123456":            false,
		"1234567890123456":  false,
		"+44 7700 900123":   true,
		"+1 (555) 010-9999": true,
		"44+7700900123":     false,
		"447700900123x":     false,
		"":                  false,
		"+":                 false,
	} {
		err := TextMessage(to, "hi", false).Validate()
		if (err == nil) != ok {
			t.Errorf("to %q: err = %v, want ok=%v", to, err, ok)
		}
	}
}
