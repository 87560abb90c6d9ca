package stack_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/visn/wadispatch/tools/stack"
)

// interactiveCase is a message of the demo's shape for driver, with the
// fields of extra in place of the text's.
func interactiveCase(t *testing.T, id, driver string, extra map[string]any) stack.Case {
	c := demoCase(t, "msg-text", id)
	c.Fields["driverMobileNumber"] = driver
	for k, v := range extra {
		c.Fields[k] = v
	}
	return c
}

// sentRequest is the body WhatsApp received for the one message accepted
// for driver, without its biz_opaque_callback_data (the claim's, checked by
// acceptedOnce).
func sentRequest(t *testing.T, got json.RawMessage) map[string]any {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(got, &body); err != nil {
		t.Fatalf("request body %s: %v", got, err)
	}
	delete(body, "biz_opaque_callback_data")
	return body
}

func wantRequest(t *testing.T, js string) map[string]any {
	t.Helper()
	var want map[string]any
	if err := json.Unmarshal([]byte(js), &want); err != nil {
		t.Fatal(err)
	}
	return want
}

// A reply-buttons document and a template with quick-reply payloads reach
// WhatsApp as exactly the Cloud API requests they stand for, once each, and
// their documents end SENT.
func TestInteractiveAndQuickRepliesSent(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	const buttonsDriver, templateDriver = "+447911123421", "+447911123422"
	if err := s.OpenWindow(ctx, buttonsDriver); err != nil {
		t.Fatal(err)
	}
	buttons := interactiveCase(t, "interactive-buttons", buttonsDriver, map[string]any{
		"type": "interactive", "message": "Can you collect the van at 10:30?",
		"interactive": map[string]any{
			"kind": "button", "header": "Collection", "footer": "Demo Leasing",
			"buttons": []any{
				map[string]any{"id": "collect-yes", "title": "Yes"},
				map[string]any{"id": "collect-later", "title": "Later today"},
			},
		},
	})
	template := interactiveCase(t, "template-buttons", templateDriver, map[string]any{
		"type": "template", "message": "", "templateType": "collection_check",
		"payload":         map[string]any{"vehicle": "AB12 CDE"},
		"templateButtons": []any{"confirm:enq-1001", "reschedule:enq-1001"},
	})
	for _, c := range []stack.Case{buttons, template} {
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		c      stack.Case
		driver string
		want   string
	}{
		{buttons, buttonsDriver, `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+447911123421","type":"interactive",
			"interactive":{"type":"button","header":{"type":"text","text":"Collection"},"body":{"text":"Can you collect the van at 10:30?"},
			"footer":{"text":"Demo Leasing"},"action":{"buttons":[{"type":"reply","reply":{"id":"collect-yes","title":"Yes"}},
			{"type":"reply","reply":{"id":"collect-later","title":"Later today"}}]}}}`},
		{template, templateDriver, `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+447911123422","type":"template",
			"template":{"name":"collection_check","language":{"code":"en_GB"},"components":[
			{"type":"body","parameters":[{"type":"text","parameter_name":"vehicle","text":"AB12 CDE"}]},
			{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"confirm:enq-1001"}]},
			{"type":"button","sub_type":"quick_reply","index":"1","parameters":[{"type":"payload","payload":"reschedule:enq-1001"}]}]}}`},
	} {
		doc := waitForStatus(t, ctx, fs, c.c.Path(), "SENT")
		got := acceptedOnce(t, ctx, s, c.driver, c.c.Path())
		if doc["whatsappMessageId"] != got.WAMID {
			t.Errorf("%s: whatsappMessageId %v, WhatsApp's %s", c.c.ID, doc["whatsappMessageId"], got.WAMID)
		}
		if body, want := sentRequest(t, got.Body), wantRequest(t, c.want); !reflect.DeepEqual(body, want) {
			t.Errorf("%s: WhatsApp received\n %v\nwant\n %v", c.c.ID, body, want)
		}
	}
}

// An interactive document WhatsApp would refuse ends FAILED with the field
// and what is wrong, written by the recorder from ingest's refusal; one to a
// driver outside the 24-hour window ends FAILED as text does. Neither
// reaches WhatsApp.
func TestInvalidInteractiveFails(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	const tooManyDriver, noWindowDriver = "+447911123423", "+447911123424"
	if err := s.OpenWindow(ctx, tooManyDriver); err != nil {
		t.Fatal(err)
	}
	four := []any{}
	for _, b := range []string{"Mon", "Tue", "Wed", "Thu"} {
		four = append(four, map[string]any{"id": strings.ToLower(b), "title": b})
	}
	tooMany := interactiveCase(t, "interactive-four-buttons", tooManyDriver, map[string]any{
		"type": "interactive", "message": "Which day suits you?",
		"interactive": map[string]any{"kind": "button", "buttons": four},
	})
	noWindow := interactiveCase(t, "interactive-no-window", noWindowDriver, map[string]any{
		"type": "interactive", "message": "Which day suits you?",
		"interactive": map[string]any{"kind": "button", "buttons": four[:3]},
	})
	for _, c := range []stack.Case{tooMany, noWindow} {
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		c              stack.Case
		driver         string
		reason, detail string
	}{
		{tooMany, tooManyDriver, "invalid_data", "interactive.buttons[3]: WhatsApp allows at most 3 reply buttons"},
		{noWindow, noWindowDriver, "outside_24h_window", "never wrote to this business number"},
	} {
		doc := waitForStatus(t, ctx, fs, c.c.Path(), "FAILED")
		why := fmt.Sprint(doc["statusReason"])
		if werr, ok := doc["whatsappError"].(map[string]any); ok {
			why = fmt.Sprint(werr["message"])
		}
		if doc["failureReason"] != c.reason || !strings.Contains(why, c.detail) {
			t.Errorf("%s: failureReason %v, reason %q; want %s, %q (document %v)", c.c.ID, doc["failureReason"], why, c.reason, c.detail, doc)
		}
		if got, err := s.Accepted(ctx, c.driver); err != nil || len(got) != 0 {
			t.Errorf("%s: WhatsApp received %d messages (%v), want none", c.c.ID, len(got), err)
		}
	}
}
