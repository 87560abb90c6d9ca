package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// statusBody and inboundBody are Meta's documented examples, trimmed.
const statusBody = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "statuses":[
  {"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234",
   "biz_opaque_callback_data":"wd1/5f0c7a52-3c1e-4f0e-9a0b-2d7e4c1b9a10/l1/e1/m1",
   "conversation":{"id":"abc","origin":{"type":"service"}},"pricing":{"billable":false,"pricing_model":"PMP","category":"service","type":"free_customer_service"}},
  {"id":"wamid.2","status":"failed","timestamp":"1750263774","recipient_id":"16505551234",
   "errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"Receiver is incapable"}}]},
  {"id":"wamid.3","status":"deleted","timestamp":"1750263775","recipient_id":"16505551234"}
 ]},"field":"messages"}]}]}`

const inboundBody = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
 "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
 "contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"447911123401"}],
 "messages":[
  {"context":{"from":"15550783881","id":"wamid.out1"},"from":"447911123401","id":"wamid.in1","timestamp":"1750263773","text":{"body":"On my way"},"type":"text"},
  {"from":"447911123401","id":"wamid.in2","timestamp":"1750263780","type":"button","button":{"text":"Yes","payload":"yes"}},
  {"from":"not-a-number","id":"wamid.in3","timestamp":"1750263790","type":"text","text":{"body":"x"}}
 ]},"field":"messages"},
 {"value":{"messaging_product":"whatsapp"},"field":"account_update"}]}]}`

// A callback longer than any send may carry is dropped, not the status;
// bytes that are not UTF-8 arrive replaced, so the event still encodes.
func TestParseStatusCallbackBounded(t *testing.T) {
	body := func(cb string) []byte {
		return []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[` +
			`{"id":"wamid.1","status":"read","timestamp":"1750263773","biz_opaque_callback_data":"` + cb + `"}]}}]}]}`)
	}
	p, err := Parse(body(strings.Repeat("x", 513)))
	if err != nil || len(p.Statuses) != 1 || p.Statuses[0].GetBizOpaqueCallbackData() != "" {
		t.Fatalf("oversized callback: %v %v", p.Statuses, err)
	}
	p, err = Parse(body(`wd1/\u00e9\udc00` + "\xff"))
	if err != nil || len(p.Statuses) != 1 {
		t.Fatalf("odd callback: %v %v", p.Statuses, err)
	}
	if _, err := proto.Marshal(p.Statuses[0]); err != nil {
		t.Fatalf("status event with callback %q does not encode: %v", p.Statuses[0].GetBizOpaqueCallbackData(), err)
	}
}

func TestParseStatuses(t *testing.T) {
	p, err := Parse([]byte(statusBody))
	if err != nil {
		t.Fatal(err)
	}
	want := []*wadispatchv1.StatusEvent{
		{WhatsappMessageId: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED,
			Timestamp: timestamppb.New(time.Unix(1750263773, 0)), RecipientId: "16505551234", PhoneNumberId: "106540352242922",
			BizOpaqueCallbackData: "wd1/5f0c7a52-3c1e-4f0e-9a0b-2d7e4c1b9a10/l1/e1/m1",
			Pricing:               &wadispatchv1.StatusPricing{PricingModel: "PMP", Category: "service", Type: "free_customer_service"}},
		{WhatsappMessageId: "wamid.2", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED,
			Timestamp: timestamppb.New(time.Unix(1750263774, 0)), RecipientId: "16505551234", PhoneNumberId: "106540352242922",
			Errors: []*wadispatchv1.WhatsAppError{{Code: 131026, Message: "Message undeliverable", Details: "Receiver is incapable", Reason: "undeliverable"}}},
	}
	if len(p.Statuses) != len(want) {
		t.Fatalf("statuses %v", p.Statuses)
	}
	for i := range want {
		if !proto.Equal(p.Statuses[i], want[i]) {
			t.Errorf("status %d\n got %v\nwant %v", i, p.Statuses[i], want[i])
		}
	}
	if len(p.Messages) != 0 || p.Skipped[SkipOtherStatus] != 1 {
		t.Errorf("messages %v, skipped %v", p.Messages, p.Skipped)
	}
}

// A pricing of an unexpected shape is dropped, never the status; values
// that are not short words are "unknown"; one with no category is none.
func TestParseStatusPricingBounded(t *testing.T) {
	for _, c := range []struct {
		pricing string
		want    *wadispatchv1.StatusPricing
	}{
		{`{"pricing_model":"PMP","category":"utility","type":"regular"}`, &wadispatchv1.StatusPricing{PricingModel: "PMP", Category: "utility", Type: "regular"}},
		{`{"category":"marketing"}`, &wadispatchv1.StatusPricing{PricingModel: "unknown", Category: "marketing", Type: "unknown"}},
		{`{"pricing_model":"PMP","category":"a/b","type":"` + strings.Repeat("x", 41) + `"}`, &wadispatchv1.StatusPricing{PricingModel: "PMP", Category: "unknown", Type: "unknown"}},
		{`{"pricing_model":"PMP","type":"regular"}`, nil},
		{`{"category":7}`, nil},
		{`"utility"`, nil},
	} {
		p, err := Parse([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[` +
			`{"id":"wamid.1","status":"sent","timestamp":"1750263773","pricing":` + c.pricing + `}]}}]}]}`))
		if err != nil || len(p.Statuses) != 1 {
			t.Fatalf("pricing %s: statuses %v, %v", c.pricing, p.Statuses, err)
		}
		if got := p.Statuses[0].GetPricing(); !proto.Equal(got, c.want) {
			t.Errorf("pricing %s: got %v, want %v", c.pricing, got, c.want)
		}
	}
}

func TestParseInbound(t *testing.T) {
	p, err := Parse([]byte(inboundBody))
	if err != nil {
		t.Fatal(err)
	}
	want := []*wadispatchv1.InboundMessage{
		{WhatsappMessageId: "wamid.in1", From: "+447911123401", PhoneNumberId: "106540352242922", Type: "text", Text: "On my way",
			ContextMessageId: "wamid.out1", Timestamp: timestamppb.New(time.Unix(1750263773, 0)),
			Content: mustStruct(t, map[string]any{"body": "On my way"})},
		{WhatsappMessageId: "wamid.in2", From: "+447911123401", PhoneNumberId: "106540352242922", Type: "button", Text: "Yes",
			Timestamp: timestamppb.New(time.Unix(1750263780, 0)),
			Content:   mustStruct(t, map[string]any{"text": "Yes", "payload": "yes"}), Reply: &wadispatchv1.InboundReply{Id: "yes", Title: "Yes"}},
	}
	if len(p.Messages) != len(want) {
		t.Fatalf("messages %v", p.Messages)
	}
	for i := range want {
		if !proto.Equal(p.Messages[i], want[i]) {
			t.Errorf("message %d\n got %v\nwant %v", i, p.Messages[i], want[i])
		}
	}
	if p.Skipped[SkipBadSender] != 1 || p.Skipped[SkipOtherField] != 1 {
		t.Errorf("skipped %v", p.Skipped)
	}
}

func TestParseRejectsOtherBodies(t *testing.T) {
	for _, b := range []string{``, `[]`, `{"object":"page","entry":[]}`, `{"object":"whatsapp_business_account","entry":{}}`} {
		if _, err := Parse([]byte(b)); err == nil {
			t.Errorf("Parse(%q) accepted", b)
		}
	}
	for _, b := range []string{
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w","status":"read","timestamp":"soon"}]}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"","status":"read"}]}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"a b","status":"read"}]}}]}]}`,
	} {
		p, err := Parse([]byte(b))
		if err != nil || len(p.Statuses) != 0 || len(p.Skipped) != 1 {
			t.Errorf("Parse(%s) = %+v, %v; want one part skipped", b, p, err)
		}
	}
}

// The simulator signs as Meta does; what it signs verifies, and nothing else.
func TestVerifySignature(t *testing.T) {
	secret, body := []byte("app-secret"), []byte(statusBody)
	good := whatsappsim.Sign(string(secret), body)
	if err := VerifySignature(secret, body, good); err != nil {
		t.Fatal(err)
	}
	for header, reason := range map[string]string{
		"":                                     ReasonMissing,
		"sha1=abc":                             ReasonMalformed,
		"sha256=zz":                            ReasonMalformed,
		good[:len(good)-2] + "zz":              ReasonMalformed,
		whatsappsim.Sign("other-secret", body): ReasonMismatch,
		whatsappsim.Sign(string(secret), append([]byte(statusBody), ' ')): ReasonMismatch,
	} {
		var se *SignatureError
		if err := VerifySignature(secret, body, header); !errors.As(err, &se) || se.Reason != reason {
			t.Errorf("header %q: %v, want %s", header, err, reason)
		}
	}
}

func TestVerifyToken(t *testing.T) {
	if !VerifyToken("tok", "tok") || VerifyToken("tok", "tok2") || VerifyToken("tok", "") || VerifyToken("", "") {
		t.Error("VerifyToken compares wrongly")
	}
}
