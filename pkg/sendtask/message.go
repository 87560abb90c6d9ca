// Package sendtask is the SendTask contract both ingest and the sender keep:
// the WhatsApp message a task stands for, and how a task is published.
package sendtask

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// etaParameter is the template parameter a non-zero ETA fills.
const etaParameter = "eta"

// Message turns a task into the WhatsApp message and the sending number
// (without its token). An error wraps whatsapp.ErrInvalidMessage: the task can
// never be sent as it is.
func Message(task *wadispatchv1.SendTask, defaultAPIVersion string) (whatsapp.Sender, whatsapp.Message, error) {
	d := task.GetLeaseWhatsappDetails()
	if d.GetPhoneNumberId() == "" {
		return whatsapp.Sender{}, whatsapp.Message{}, fmt.Errorf("%w: the lease's WhatsApp details have no phone number ID", whatsapp.ErrInvalidMessage)
	}
	sender := whatsapp.Sender{PhoneNumberID: d.GetPhoneNumberId(), APIVersion: d.GetApiVersion()}
	if sender.APIVersion == "" {
		sender.APIVersion = defaultAPIVersion
	}
	var (
		msg whatsapp.Message
		err error
	)
	switch task.GetType() {
	case wadispatchv1.MessageType_MESSAGE_TYPE_TEXT:
		msg = whatsapp.TextMessage(task.GetDriverMobileNumber(), task.GetMessage(), hasURL(task.GetMessage()))
		err = msg.Validate()
	case wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE:
		msg, err = whatsapp.TemplateMessage(task.GetDriverMobileNumber(), task.GetTemplateType(), d.GetTemplateLanguage(), TemplateParameters(task.GetPayload(), task.GetEta()), task.GetTemplateButtonPayloads()...)
	case wadispatchv1.MessageType_MESSAGE_TYPE_INTERACTIVE:
		msg, err = interactiveMessage(task)
	case wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT,
		wadispatchv1.MessageType_MESSAGE_TYPE_VIDEO, wadispatchv1.MessageType_MESSAGE_TYPE_AUDIO:
		msg, err = mediaMessage(task)
	default:
		err = fmt.Errorf("%w: message type %s", whatsapp.ErrInvalidMessage, task.GetType())
	}
	if err != nil {
		return whatsapp.Sender{}, whatsapp.Message{}, err
	}
	return sender, msg, nil
}

func interactiveMessage(task *wadispatchv1.SendTask) (whatsapp.Message, error) {
	in := task.GetInteractive()
	c := whatsapp.InteractiveContent{Header: in.GetHeader(), Body: task.GetMessage(), Footer: in.GetFooter(), ButtonText: in.GetButtonText()}
	switch in.GetKind() {
	case wadispatchv1.InteractiveKind_INTERACTIVE_KIND_BUTTON:
		c.Kind = whatsapp.InteractiveButton
	case wadispatchv1.InteractiveKind_INTERACTIVE_KIND_LIST:
		c.Kind = whatsapp.InteractiveList
	default:
		return whatsapp.Message{}, &whatsapp.FieldError{Field: "kind", Detail: fmt.Sprintf("%s is not button or list", in.GetKind())}
	}
	for _, b := range in.GetButtons() {
		c.Buttons = append(c.Buttons, whatsapp.Reply{ID: b.GetId(), Title: b.GetTitle()})
	}
	for _, s := range in.GetSections() {
		section := whatsapp.ListSection{Title: s.GetTitle()}
		for _, r := range s.GetRows() {
			section.Rows = append(section.Rows, whatsapp.ListRow{ID: r.GetId(), Title: r.GetTitle(), Description: r.GetDescription()})
		}
		c.Sections = append(c.Sections, section)
	}
	return whatsapp.InteractiveMessage(task.GetDriverMobileNumber(), c)
}

// MediaType is the WhatsApp message type of a media task type, "" for any
// other.
func MediaType(t wadispatchv1.MessageType) whatsapp.MessageType {
	switch t {
	case wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE:
		return whatsapp.TypeImage
	case wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT:
		return whatsapp.TypeDocument
	case wadispatchv1.MessageType_MESSAGE_TYPE_VIDEO:
		return whatsapp.TypeVideo
	case wadispatchv1.MessageType_MESSAGE_TYPE_AUDIO:
		return whatsapp.TypeAudio
	}
	return ""
}

// mediaMessage builds a media message. A link is sent as it is; a Cloud
// Storage object leaves the media id empty, for the sender to fill in once
// it has uploaded the object (whatsapp.Message.Validate requires it).
func mediaMessage(task *wadispatchv1.SendTask) (whatsapp.Message, error) {
	m := task.GetMedia()
	kind := MediaType(task.GetType())
	switch {
	case m.GetUri() != "" && m.GetLink() != "":
		return whatsapp.Message{}, &whatsapp.FieldError{Field: "media", Detail: "either uri or link, not both"}
	case m.GetUri() == "" && m.GetLink() == "":
		return whatsapp.Message{}, &whatsapp.FieldError{Field: "media", Detail: "a uri (gs://bucket/object) or a link (https) is required"}
	case m.GetUri() != "":
		if _, _, err := ParseGCSURI(m.GetUri()); err != nil {
			return whatsapp.Message{}, &whatsapp.FieldError{Field: "media.uri", Detail: err.Error()}
		}
		if m.GetMimeType() != "" {
			if err := whatsapp.CheckMedia(kind, m.GetMimeType(), -1); err != nil {
				return whatsapp.Message{}, &whatsapp.FieldError{Field: "media.mimeType", Detail: err.(*whatsapp.MediaRefusal).Detail}
			}
		}
	default:
		if m.GetMimeType() == "" {
			return whatsapp.Message{}, &whatsapp.FieldError{Field: "media.mimeType", Detail: "required with a link"}
		}
		if err := whatsapp.CheckMedia(kind, m.GetMimeType(), -1); err != nil {
			return whatsapp.Message{}, &whatsapp.FieldError{Field: "media.mimeType", Detail: err.(*whatsapp.MediaRefusal).Detail}
		}
	}
	return whatsapp.MediaMessage(task.GetDriverMobileNumber(), kind, whatsapp.MediaObject{
		Link: m.GetLink(), Caption: task.GetMessage(), Filename: m.GetFilename(),
	})
}

// ParseGCSURI splits gs://bucket/object.
func ParseGCSURI(uri string) (bucket, object string, err error) {
	rest, ok := strings.CutPrefix(uri, "gs://")
	bucket, object, _ = strings.Cut(rest, "/")
	if !ok || bucket == "" || object == "" {
		return "", "", fmt.Errorf("%q is not gs://bucket/object", uri)
	}
	return bucket, object, nil
}

// hasURL decides preview_url: a driver sent a link (a tracking page, a map)
// sees its preview; a body without one keeps Meta's default, false, so plain
// messages go out exactly as the Cloud API sends them by default.
func hasURL(body string) bool {
	return strings.Contains(body, "https://") || strings.Contains(body, "http://")
}

// TemplateParameters are the named parameters a template is sent with: the
// payload plus the ETA, which templates reference as {{eta}}. A payload key
// "eta" gives way to a non-zero ETA.
func TemplateParameters(payload map[string]string, eta int64) map[string]string {
	if eta == 0 {
		return payload
	}
	params := make(map[string]string, len(payload)+1)
	for k, v := range payload {
		params[k] = v
	}
	params[etaParameter] = strconv.FormatInt(eta, 10)
	return params
}
