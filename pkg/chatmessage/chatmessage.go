// Package chatmessage validates a chat message document written by the ViSN
// web app and turns it, with the lease's WhatsApp configuration, into the
// SendTask the sender works from.
//
// The rules are the seed's ("Trigger Function Activation"): the document holds
// valid data, the lease has a WhatsApp configuration, the message did not
// come from a driver, and it was not migrated during a reassignment. Every
// failure is a *Rejection with a machine-readable Reason, since none of them
// can succeed on a retry of the same event.
//
// Everything here is pure: documents arrive as the plain Go values
// firestoreevent.Plain (or the Firestore client's DataAt/Data) produces.
package chatmessage

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Reasons for rejecting a message.
const (
	ReasonInvalidData      = "invalid_data"
	ReasonNoWhatsAppConfig = "no_whatsapp_config"
	ReasonFromDriver       = "from_driver"
	ReasonMigrated         = "migrated"
)

// The values of a message document's type field.
const (
	TypeText        = "text"
	TypeTemplate    = "template"
	TypeInteractive = "interactive"
	TypeImage       = "image"
	TypeDocument    = "document"
	TypeVideo       = "video"
	TypeAudio       = "audio"
)

// mediaTypes are the media values of type and their task types.
var mediaTypes = map[string]wadispatchv1.MessageType{
	TypeImage:    wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE,
	TypeDocument: wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT,
	TypeVideo:    wadispatchv1.MessageType_MESSAGE_TYPE_VIDEO,
	TypeAudio:    wadispatchv1.MessageType_MESSAGE_TYPE_AUDIO,
}

// Rejection says why a message will never be sent.
type Rejection struct {
	Reason string
	// Field is the offending document field for invalid_data (a dotted
	// path such as "payload.eta"), or the whatsappConfig key for
	// no_whatsapp_config.
	Field  string
	Detail string
}

func (r *Rejection) Error() string {
	if r.Field != "" {
		return r.Reason + ": " + r.Field + ": " + r.Detail
	}
	return r.Reason + ": " + r.Detail
}

// RejectReason returns the machine-readable reason; callers find rejections
// of any package with errors.As on interface{ RejectReason() string }.
func (r *Rejection) RejectReason() string { return r.Reason }

// Actionable reports whether the V-Customer who wrote the message can act
// on the rejection (correct the data, have WhatsApp configured for the
// lease), so that it belongs on the message's document as its failure. A
// message from a driver or a migrated one is not the pipeline's to send:
// its document stays as the web app wrote it.
func (r *Rejection) Actionable() bool {
	switch r.Reason {
	case ReasonInvalidData, ReasonNoWhatsAppConfig, ReasonOptedOut, ReasonNumberChanged,
		ReasonTemplateNotApproved, ReasonTemplateLanguage, ReasonTemplateParameters:
		return true
	}
	return false
}

func invalid(field, format string, args ...any) *Rejection {
	return &Rejection{Reason: ReasonInvalidData, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Message is a validated chat message.
type Message struct {
	Ref dispatch.MessageRef
	// DriverE164 is the driver's number in E.164, e.g. +447700900123.
	DriverE164 string
	Type       wadispatchv1.MessageType
	Body       string
	CreatedBy  string
	// AccountID and ServiceUnitID are empty when the document has none;
	// FillFromEnquiry completes them.
	AccountID     string
	ServiceUnitID string
	Payload       map[string]string
	TemplateType  string
	ETA           int64
	// Interactive is set for an interactive message, TemplateButtons (the
	// quick-reply payloads by button index) for a template.
	Interactive     *wadispatchv1.Interactive
	TemplateButtons []string
	// Media is set for an image, document, video or audio message; Body is
	// its caption.
	Media *wadispatchv1.OutboundMedia
}

// Parse validates a chat message document's fields. defaultRegion (an ISO
// 3166 region such as "GB") is assumed for a driver number written without
// country code.
//
// Driver and migrated messages are rejected before the data is checked: a
// reply recorded from a driver does not carry the fields an outbound message
// needs, and calling it invalid would hide what it is.
func Parse(ref dispatch.MessageRef, fields map[string]any, defaultRegion string) (*Message, error) {
	source, err := optionalString(fields, "source")
	if err != nil {
		return nil, err
	}
	if source == "driver" {
		return nil, &Rejection{Reason: ReasonFromDriver, Field: "source", Detail: "the message came from the driver"}
	}
	switch v := fields["isMigrated"].(type) {
	case nil:
	case bool:
		if v {
			return nil, &Rejection{Reason: ReasonMigrated, Field: "isMigrated", Detail: "the message was migrated during a reassignment"}
		}
	default:
		// Sending a message that may have been migrated could repeat it to
		// the driver; refuse rather than guess.
		return nil, invalid("isMigrated", "is a %s, want a boolean", typeName(v))
	}

	m := &Message{Ref: ref}
	// A media message's message is its caption, which it may lack; for
	// every other type it is checked first, as the seed's validation did.
	peeked, _ := fields["type"].(string)
	_, isMedia := mediaTypes[peeked]
	if m.Body, err = stringField(fields, "message", "message", !isMedia); err != nil {
		return nil, err
	}
	typ, err := requiredString(fields, "type")
	if err != nil {
		return nil, err
	}
	if m.CreatedBy, err = requiredString(fields, "createdBy"); err != nil {
		return nil, err
	}
	// It names the user's metrics document, where the send is counted.
	if err := dispatch.CheckDocumentID(m.CreatedBy); err != nil {
		return nil, invalid("createdBy", "%v", err)
	}
	number, err := requiredString(fields, "driverMobileNumber")
	if err != nil {
		return nil, err
	}
	if m.DriverE164, err = NormalizeNumber(number, defaultRegion); err != nil {
		return nil, invalid("driverMobileNumber", "%v", err)
	}
	if m.TemplateType, err = optionalString(fields, "templateType"); err != nil {
		return nil, err
	}
	switch typ {
	case TypeText:
		m.Type = wadispatchv1.MessageType_MESSAGE_TYPE_TEXT
		if m.Body == "" {
			return nil, invalid("message", "a text message needs a body")
		}
		if n := utf8.RuneCountInString(m.Body); n > whatsapp.MaxTextBodyLength {
			return nil, invalid("message", "has %d characters, WhatsApp allows %d", n, whatsapp.MaxTextBodyLength)
		}
	case TypeTemplate:
		m.Type = wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE
		if m.TemplateType == "" {
			return nil, invalid("templateType", "a template message must name its template")
		}
		if m.TemplateButtons, err = stringArray(fields["templateButtons"], "templateButtons"); err != nil {
			return nil, err
		}
	case TypeInteractive:
		// WhatsApp's limits on what is decoded here are checked in Task,
		// by the sender's own rule.
		m.Type = wadispatchv1.MessageType_MESSAGE_TYPE_INTERACTIVE
		if m.Interactive, err = interactive(fields["interactive"]); err != nil {
			return nil, err
		}
	case TypeImage, TypeDocument, TypeVideo, TypeAudio:
		// The media's types and the caption are checked in Task, by the
		// sender's own rule; its size only the sender can know.
		m.Type = mediaTypes[typ]
		if m.Media, err = media(fields["media"]); err != nil {
			return nil, err
		}
	default:
		return nil, invalid("type", "is %q, want text, template, interactive, image, document, video or audio", dispatch.Clip(typ, 100))
	}
	if m.AccountID, err = optionalString(fields, "accountId"); err != nil {
		return nil, err
	}
	if m.ServiceUnitID, err = optionalString(fields, "serviceUnitId"); err != nil {
		return nil, err
	}
	if m.Payload, err = payload(fields["payload"]); err != nil {
		return nil, err
	}
	if m.ETA, err = eta(fields["ETA"]); err != nil {
		return nil, err
	}
	return m, nil
}

// NeedsEnquiry reports whether accountId or serviceUnitId must come from the
// enquiry document.
func (m *Message) NeedsEnquiry() bool { return m.AccountID == "" || m.ServiceUnitID == "" }

// FillFromEnquiry completes accountId and serviceUnitId from the enquiry
// document's fields of the same names. The enquiry is not the web app's
// message and may predate it, so values of other types are ignored rather
// than rejected; a message without them is still sendable.
func (m *Message) FillFromEnquiry(enquiry map[string]any) {
	if s, ok := enquiry["accountId"].(string); ok && m.AccountID == "" {
		m.AccountID = s
	}
	if s, ok := enquiry["serviceUnitId"].(string); ok && m.ServiceUnitID == "" {
		m.ServiceUnitID = s
	}
}

// Task builds the SendTask for m with the lease's configuration. The task is
// checked with the sender's own rule (sendtask.Message: template
// parameter names and values, the ETA parameter, the recipient), so a task
// that can only fail is never published.
func (m *Message) Task(cfg WhatsAppConfig, eventID string, createdAt time.Time) (*wadispatchv1.SendTask, error) {
	t := &wadispatchv1.SendTask{
		LeaseId:              m.Ref.LeaseID,
		AccountId:            m.AccountID,
		ServiceUnitId:        m.ServiceUnitID,
		EnquiryId:            m.Ref.EnquiryID,
		MessageDocId:         m.Ref.Path(),
		MessageId:            m.Ref.MessageID,
		DriverMobileNumber:   m.DriverE164,
		Message:              m.Body,
		Type:                 m.Type,
		LeaseWhatsappDetails: cfg.Details(),
		CreatedBy:            m.CreatedBy,
		Payload:              m.Payload,
		TemplateType:         m.TemplateType,
		Eta:                  m.ETA,
		EventId:              eventID,

		Interactive:            m.Interactive,
		TemplateButtonPayloads: m.TemplateButtons,
		Media:                  m.Media,
	}
	if !createdAt.IsZero() {
		t.CreatedAt = timestamppb.New(createdAt)
	}
	if _, _, err := sendtask.Message(t, cfg.APIVersion); err != nil {
		if fe, ok := errors.AsType[*whatsapp.FieldError](err); ok {
			return nil, invalid(documentField(fe.Field), "%s", fe.Detail)
		}
		field := "message"
		if m.Type == wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE {
			field = "payload"
		}
		return nil, invalid(field, "%v", err)
	}
	return t, nil
}

// documentField names the document field a part of the WhatsApp message
// came from (whatsapp.FieldError's names).
func documentField(part string) string {
	switch {
	case part == "body":
		return "message"
	case strings.HasPrefix(part, "quickReplies"):
		return "templateButtons" + strings.TrimPrefix(part, "quickReplies")
	case part == "message", part == "type", part == "media", strings.HasPrefix(part, "media."):
		return part
	default:
		return "interactive." + part
	}
}

// NormalizeNumber parses a phone number, assuming defaultRegion when it has
// no country code, and returns it in E.164 if it is a valid number.
func NormalizeNumber(number, defaultRegion string) (string, error) {
	if len(number) > 64 {
		return "", fmt.Errorf("%d characters is too long for a phone number", len(number))
	}
	n, err := phonenumbers.Parse(number, defaultRegion)
	if err != nil {
		// The number itself stays out of the error: it ends up in logs.
		return "", fmt.Errorf("not a phone number: %w", err)
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", fmt.Errorf("not a valid phone number for its region")
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

func requiredString(fields map[string]any, key string) (string, error) {
	return stringField(fields, key, key, true)
}

// optionalString treats a missing or null field as "".
func optionalString(fields map[string]any, key string) (string, error) {
	return stringField(fields, key, key, false)
}

// stringField reads fields[key], named field in a rejection (the key's path
// in the document).
func stringField(fields map[string]any, key, field string, required bool) (string, error) {
	v, ok := fields[key]
	if !ok || v == nil {
		if required {
			return "", invalid(field, "is missing")
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid(field, "is a %s, want a string", typeName(v))
	}
	return s, nil
}

// media decodes the media map: uri or link, mimeType, filename.
func media(v any) (*wadispatchv1.OutboundMedia, error) {
	if v == nil {
		return nil, invalid("media", "is missing; a media message needs its uri (gs://bucket/object) or link (https)")
	}
	in, ok := v.(map[string]any)
	if !ok {
		return nil, invalid("media", "is a %s, want a map", typeName(v))
	}
	out := &wadispatchv1.OutboundMedia{}
	var err error
	if out.Uri, err = stringField(in, "uri", "media.uri", false); err != nil {
		return nil, err
	}
	if out.Link, err = stringField(in, "link", "media.link", false); err != nil {
		return nil, err
	}
	if out.MimeType, err = stringField(in, "mimeType", "media.mimeType", false); err != nil {
		return nil, err
	}
	if out.Filename, err = stringField(in, "filename", "media.filename", false); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckMediaBucket refuses a media message whose Cloud Storage object is
// in none of the buckets wadispatch sends media from (the sender could not
// read it). A link, or a message without media, passes.
func (m *Message) CheckMediaBucket(allowed []string) error {
	uri := m.Media.GetUri()
	if uri == "" {
		return nil
	}
	bucket, _, err := sendtask.ParseGCSURI(uri)
	if err != nil {
		return invalid("media.uri", "%v", err)
	}
	if !slices.Contains(allowed, bucket) {
		return invalid("media.uri", "bucket %q is not one wadispatch sends media from", dispatch.Clip(bucket, 100))
	}
	return nil
}

// interactive decodes the interactive map: its kind, header and footer,
// and the buttons or the list (buttonText, sections with their rows).
// Whatever of them is present is decoded whatever the kind, so that the
// sender's rule refuses a mix rather than this one dropping part of it.
func interactive(v any) (*wadispatchv1.Interactive, error) {
	if v == nil {
		return nil, invalid("interactive", "is missing; an interactive message needs its buttons or list")
	}
	in, ok := v.(map[string]any)
	if !ok {
		return nil, invalid("interactive", "is a %s, want a map", typeName(v))
	}
	kind, err := stringField(in, "kind", "interactive.kind", true)
	if err != nil {
		return nil, err
	}
	out := &wadispatchv1.Interactive{}
	switch kind {
	case "button":
		out.Kind = wadispatchv1.InteractiveKind_INTERACTIVE_KIND_BUTTON
	case "list":
		out.Kind = wadispatchv1.InteractiveKind_INTERACTIVE_KIND_LIST
	default:
		return nil, invalid("interactive.kind", "is %q, want button or list", dispatch.Clip(kind, 100))
	}
	if out.Header, err = stringField(in, "header", "interactive.header", false); err != nil {
		return nil, err
	}
	if out.Footer, err = stringField(in, "footer", "interactive.footer", false); err != nil {
		return nil, err
	}
	if out.ButtonText, err = stringField(in, "buttonText", "interactive.buttonText", false); err != nil {
		return nil, err
	}
	err = eachMap(in["buttons"], "interactive.buttons", func(b map[string]any, at string) error {
		id, err := stringField(b, "id", at+".id", true)
		if err != nil {
			return err
		}
		title, err := stringField(b, "title", at+".title", true)
		if err != nil {
			return err
		}
		out.Buttons = append(out.Buttons, &wadispatchv1.InteractiveButton{Id: id, Title: title})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachMap(in["sections"], "interactive.sections", func(s map[string]any, at string) error {
		title, err := stringField(s, "title", at+".title", false)
		if err != nil {
			return err
		}
		section := &wadispatchv1.InteractiveSection{Title: title}
		err = eachMap(s["rows"], at+".rows", func(r map[string]any, at string) error {
			row := &wadispatchv1.InteractiveRow{}
			var err error
			if row.Id, err = stringField(r, "id", at+".id", true); err != nil {
				return err
			}
			if row.Title, err = stringField(r, "title", at+".title", true); err != nil {
				return err
			}
			if row.Description, err = stringField(r, "description", at+".description", false); err != nil {
				return err
			}
			section.Rows = append(section.Rows, row)
			return nil
		})
		if err != nil {
			return err
		}
		out.Sections = append(out.Sections, section)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachMap calls fn with each element of the optional array v, each of which
// must be a map, and its path (field[i]).
func eachMap(v any, field string, fn func(m map[string]any, at string) error) error {
	if v == nil {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		return invalid(field, "is a %s, want an array", typeName(v))
	}
	for i, e := range arr {
		at := fmt.Sprintf("%s[%d]", field, i)
		m, ok := e.(map[string]any)
		if !ok {
			return invalid(at, "is a %s, want a map", typeName(e))
		}
		if err := fn(m, at); err != nil {
			return err
		}
	}
	return nil
}

// stringArray reads an optional array of strings.
func stringArray(v any, field string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, invalid(field, "is a %s, want an array of strings", typeName(v))
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "is a %s, want a string", typeName(e))
		}
		out[i] = s
	}
	return out, nil
}

// payload reads the optional payload map. WhatsApp template parameters are
// text, so scalar values are rendered as the web app would print them:
// integers in decimal, doubles in the shortest decimal form, booleans as
// true/false, timestamps in RFC 3339. Null, bytes, arrays, maps, references
// and geo points have no single text form and are rejected, naming the key.
func payload(v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	in, ok := v.(map[string]any)
	if !ok {
		return nil, invalid("payload", "is a %s, want a map", typeName(v))
	}
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		field := "payload." + dispatch.Clip(k, 100)
		switch v := v.(type) {
		case string:
			out[k] = v
		case int64:
			out[k] = strconv.FormatInt(v, 10)
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, invalid(field, "is %v", v)
			}
			out[k] = strconv.FormatFloat(v, 'f', -1, 64)
		case bool:
			out[k] = strconv.FormatBool(v)
		case time.Time:
			out[k] = v.UTC().Format(time.RFC3339)
		default:
			return nil, invalid(field, "is a %s, want a string, number, boolean or timestamp", typeName(v))
		}
	}
	return out, nil
}

// eta reads the optional ETA: an integer, or a double with no fractional
// part (JavaScript writes whole numbers as either); absent or null is 0.
func eta(v any) (int64, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case int64:
		return v, nil
	case float64:
		// 2^63 itself does not fit; every double below it that is whole does.
		if v != math.Trunc(v) || v < -(1<<63) || v >= 1<<63 {
			return 0, invalid("ETA", "%v is not a whole number in the int64 range", v)
		}
		return int64(v), nil
	default:
		return 0, invalid("ETA", "is a %s, want an integer", typeName(v))
	}
}

// typeName names a Firestore value's type in Firestore's words, for
// rejection details.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "double"
	case string:
		return "string"
	case []byte:
		return "bytes"
	case time.Time:
		return "timestamp"
	case []any:
		return "array"
	case map[string]any:
		return "map"
	default:
		return fmt.Sprintf("%T", v)
	}
}
