package webhook

import (
	"encoding/json"

	"google.golang.org/protobuf/types/known/structpb"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// An inbound part (value.messages[]) is read as a plain JSON object, not a
// struct: Meta adds types and fields without notice, and a field of a type
// we did not expect must not cost the driver's message. Only id, from and
// timestamp must be right; everything else is taken where it has the
// expected type and kept whole in content otherwise
// (developers.facebook.com/docs/whatsapp/cloud-api/webhooks/reference/messages).

// Media types: their object carries id, mime_type, sha256 and, by type,
// caption, filename, voice, animated.
var mediaTypes = map[string]bool{"image": true, "document": true, "audio": true, "video": true, "sticker": true}

func inbound(raw json.RawMessage, phoneID string) (*wadispatchv1.InboundMessage, string) {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil, SkipMalformed
	}
	id := str(m, "id")
	if !validID(id) {
		return nil, SkipNoID
	}
	from, ok := e164(str(m, "from"))
	if !ok {
		return nil, SkipBadSender
	}
	at, err := unixTime(str(m, "timestamp"))
	if err != nil {
		return nil, SkipBadTimestamp
	}
	typ := str(m, "type")
	in := &wadispatchv1.InboundMessage{
		WhatsappMessageId: id,
		From:              from,
		PhoneNumberId:     phoneID,
		Type:              clipType(typ),
		Timestamp:         at,
	}
	if c := str(obj(m, "context"), "id"); validID(c) {
		in.ContextMessageId = c
	}
	in.Content = content(m, typ)
	in.Referral = structOf(obj(m, "referral"))
	describe(in, typ, obj(m, typ))
	return in, ""
}

// describe fills what the pipeline acts on from the type's object o.
func describe(in *wadispatchv1.InboundMessage, typ string, o map[string]any) {
	switch {
	case typ == "text":
		in.Text = str(o, "body")
	case typ == "button":
		// A template's quick-reply button: payload is what the template
		// was sent with, text its label.
		in.Text = str(o, "text")
		in.Reply = &wadispatchv1.InboundReply{Id: str(o, "payload"), Title: in.Text}
	case typ == "interactive":
		for _, kind := range []string{"button_reply", "list_reply"} {
			if r := obj(o, kind); r != nil {
				in.Reply = &wadispatchv1.InboundReply{Id: str(r, "id"), Title: str(r, "title"), Description: str(r, "description")}
				in.Text = in.Reply.Title
			}
		}
		if r := obj(o, "nfm_reply"); r != nil { // a WhatsApp Flow's answer
			in.Text = str(r, "body")
		}
	case mediaTypes[typ]:
		in.Media = &wadispatchv1.InboundMedia{
			Id: str(o, "id"), MimeType: str(o, "mime_type"), Sha256: str(o, "sha256"),
			Caption: str(o, "caption"), Filename: str(o, "filename"), Voice: o["voice"] == true,
		}
		in.Text = in.Media.Caption
	case typ == "location":
		in.Text = firstOf(str(o, "name"), str(o, "address"))
	case typ == "reaction":
		in.TargetMessageId = validOr(str(o, "message_id"))
		in.Emoji = str(o, "emoji")
	case typ == "edit":
		in.TargetMessageId = validOr(str(o, "original_message_id"))
		edited := obj(o, "message")
		inner := str(edited, "type")
		if inner == "text" {
			in.Text = str(obj(edited, "text"), "body")
		} else {
			in.Text = str(obj(edited, inner), "caption")
		}
	case typ == "revoke":
		in.TargetMessageId = validOr(str(o, "original_message_id"))
	case typ == "order":
		in.Text = str(o, "text")
	case typ == "system":
		in.Text = str(o, "body")
	}
}

// content is the type's own object. Types whose data is not an object
// (contacts is an array of cards) or that put it elsewhere (unsupported
// carries errors) are kept under their field's name.
func content(m map[string]any, typ string) *structpb.Struct {
	switch v := m[typ].(type) {
	case map[string]any:
		return structOf(v)
	case nil:
		if errs, ok := m["errors"]; ok {
			return structOf(map[string]any{"errors": errs})
		}
		return nil
	default:
		return structOf(map[string]any{typ: v})
	}
}

// maxTypeLength bounds the type as stored and labelled: Meta's are short.
const maxTypeLength = 40

func clipType(t string) string {
	if len(t) > maxTypeLength || !validID(t) {
		return "unknown"
	}
	return t
}

func structOf(m map[string]any) *structpb.Struct {
	if m == nil {
		return nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		// Only values JSON cannot hold fail, and JSON gave us these.
		return nil
	}
	return s
}

func obj(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	return o
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func validOr(id string) string {
	if validID(id) {
		return id
	}
	return ""
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
