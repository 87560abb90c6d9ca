package whatsapp

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"unicode/utf8"
)

// MaxTextBodyLength is the Cloud API's limit on a text message body, in
// characters (counted here as Unicode code points).
const MaxTextBodyLength = 4096

// MaxCallbackDataLength is the Cloud API's limit on
// biz_opaque_callback_data, in characters.
const MaxCallbackDataLength = 512

// ErrInvalidMessage is wrapped by errors about a message or sender that the
// client refuses to send because Meta would reject it; such a send is never
// retryable.
var ErrInvalidMessage = errors.New("whatsapp: invalid message")

// MessageType is the Cloud API message "type".
type MessageType string

// The message types this client sends.
const (
	TypeText        MessageType = "text"
	TypeTemplate    MessageType = "template"
	TypeInteractive MessageType = "interactive"
)

// MaxTemplateButtons is how many buttons a template may have, indexed 0 to
// 9, per the Cloud API messages reference (components object, index):
// https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages
const MaxTemplateButtons = 10

// Message is one outbound message. Build it with TextMessage,
// TemplateMessage or InteractiveMessage.
type Message struct {
	// To is the recipient's phone number with country code, sent as given;
	// Meta accepts "+" and separators ("+44 7700 900123").
	To          string
	Type        MessageType
	Text        *Text
	Template    *Template
	Interactive *Interactive
	// Media is the object of an image, document, video or audio message.
	Media *MediaObject
	// CallbackData is sent as biz_opaque_callback_data: Meta does not
	// process it and echoes it in the message's sent, delivered and read
	// status webhooks. Empty sends none.
	CallbackData string
}

// Text is the "text" object of a text message.
type Text struct {
	Body       string `json:"body"`
	PreviewURL bool   `json:"preview_url"`
}

// Template is the "template" object of a template message.
type Template struct {
	Name       string      `json:"name"`
	Language   Language    `json:"language"`
	Components []Component `json:"components,omitempty"`
}

// Language selects the template translation.
type Language struct {
	Code string `json:"code"`
}

// Component fills the variables of one template component (header, body,
// button).
type Component struct {
	Type       string      `json:"type"`
	SubType    string      `json:"sub_type,omitempty"`
	Index      string      `json:"index,omitempty"`
	Parameters []Parameter `json:"parameters"`
}

// Parameter is one template variable value: Text for a "text" parameter
// (never empty), Payload for a quick-reply button's "payload" one.
// ParameterName is set for templates created with named parameters
// ({{first_name}}), empty for positional ones ({{1}}).
type Parameter struct {
	Type          string `json:"type"`
	ParameterName string `json:"parameter_name,omitempty"`
	Text          string `json:"text,omitempty"`
	Payload       string `json:"payload,omitempty"`
}

// TextMessage builds a free-form text message. previewURL asks WhatsApp to
// render a link preview for the first URL in the body.
func TextMessage(to, body string, previewURL bool) Message {
	return Message{To: to, Type: TypeText, Text: &Text{Body: body, PreviewURL: previewURL}}
}

// namedParameter is Meta's rule for named template parameters: lowercase
// letters, digits and underscores.
var namedParameter = regexp.MustCompile(`^[a-z0-9_]+$`)

// TemplateMessage builds a template message from the plain values the pipeline
// carries: the template name, its language code, the task payload, which
// becomes one body component with a named text parameter per key, and the
// payloads of the template's quick-reply buttons, one button component per
// index. Keys are sorted so the same payload always gives the same request.
func TemplateMessage(to, name, languageCode string, payload map[string]string, quickReplies ...string) (Message, error) {
	t := &Template{Name: name, Language: Language{Code: languageCode}}
	if len(payload) > 0 {
		keys := make([]string, 0, len(payload))
		for k := range payload {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		params := make([]Parameter, 0, len(keys))
		for _, k := range keys {
			if !namedParameter.MatchString(k) {
				return Message{}, fmt.Errorf("%w: template parameter name %q: Meta allows only lowercase letters, digits and underscores", ErrInvalidMessage, k)
			}
			if payload[k] == "" {
				return Message{}, fmt.Errorf("%w: template parameter %q has an empty value", ErrInvalidMessage, k)
			}
			params = append(params, Parameter{Type: "text", ParameterName: k, Text: payload[k]})
		}
		t.Components = []Component{{Type: "body", Parameters: params}}
	}
	if len(quickReplies) > MaxTemplateButtons {
		return Message{}, fieldErr(fmt.Sprintf("quickReplies[%d]", MaxTemplateButtons), "a template has at most %d buttons", MaxTemplateButtons)
	}
	for i, p := range quickReplies {
		// Meta documents no length limit on a payload, only that a
		// quick-reply button's parameter carries one.
		if p == "" {
			return Message{}, fieldErr(fmt.Sprintf("quickReplies[%d]", i), "a quick-reply button's payload is required")
		}
		t.Components = append(t.Components, Component{Type: "button", SubType: "quick_reply", Index: strconv.Itoa(i),
			Parameters: []Parameter{{Type: "payload", Payload: p}}})
	}
	m := Message{To: to, Type: TypeTemplate, Template: t}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// Validate checks what Meta would reject synchronously with a parameter error,
// so a doomed message costs no API call. Errors wrap ErrInvalidMessage.
func (m Message) Validate() error {
	if !validRecipient(m.To) {
		return fmt.Errorf("%w: recipient %q is not a phone number with country code", ErrInvalidMessage, m.To)
	}
	switch m.Type {
	case TypeText:
		if m.Text == nil || m.Text.Body == "" {
			return fmt.Errorf("%w: text message without a body", ErrInvalidMessage)
		}
		if n := utf8.RuneCountInString(m.Text.Body); n > MaxTextBodyLength {
			return fmt.Errorf("%w: text body has %d characters, the limit is %d", ErrInvalidMessage, n, MaxTextBodyLength)
		}
		if m.Template != nil || m.Interactive != nil {
			return fmt.Errorf("%w: text message with a template or interactive object", ErrInvalidMessage)
		}
	case TypeTemplate:
		if m.Template == nil || m.Template.Name == "" {
			return fmt.Errorf("%w: template message without a template name", ErrInvalidMessage)
		}
		if m.Template.Language.Code == "" {
			return fmt.Errorf("%w: template %q without a language code", ErrInvalidMessage, m.Template.Name)
		}
		if m.Text != nil || m.Interactive != nil {
			return fmt.Errorf("%w: template message with a text or interactive object", ErrInvalidMessage)
		}
	case TypeInteractive:
		if m.Interactive == nil {
			return fmt.Errorf("%w: interactive message without an interactive object", ErrInvalidMessage)
		}
		if m.Text != nil || m.Template != nil {
			return fmt.Errorf("%w: interactive message with a text or template object", ErrInvalidMessage)
		}
		if err := m.Interactive.validate(); err != nil {
			return err
		}
	case TypeImage, TypeDocument, TypeVideo, TypeAudio:
		if m.Media == nil {
			return fmt.Errorf("%w: %s message without its media object", ErrInvalidMessage, m.Type)
		}
		if m.Text != nil || m.Template != nil || m.Interactive != nil {
			return fmt.Errorf("%w: %s message with a text, template or interactive object", ErrInvalidMessage, m.Type)
		}
		if err := m.Media.validate(m.Type, true); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unsupported message type %q", ErrInvalidMessage, m.Type)
	}
	if m.Media != nil && !IsMediaType(m.Type) {
		return fmt.Errorf("%w: %s message with a media object", ErrInvalidMessage, m.Type)
	}
	if n := utf8.RuneCountInString(m.CallbackData); n > MaxCallbackDataLength {
		return fmt.Errorf("%w: callback data has %d characters, the limit is %d", ErrInvalidMessage, n, MaxCallbackDataLength)
	}
	return nil
}

// validRecipient accepts what Meta accepts in "to": a phone number with its
// country code, optionally with "+" and the usual separators (spaces, dashes,
// dots, parentheses), holding 7 to 15 digits (E.164 allows at most 15).
func validRecipient(to string) bool {
	n := 0
	for i := 0; i < len(to); i++ {
		switch c := to[i]; {
		case c >= '0' && c <= '9':
			n++
		case c == '+' && i == 0, c == ' ', c == '-', c == '.', c == '(', c == ')':
		default:
			return false
		}
	}
	return n >= 7 && n <= 15
}

// request is the JSON body of POST /{phone-number-id}/messages.
type request struct {
	MessagingProduct string       `json:"messaging_product"`
	RecipientType    string       `json:"recipient_type"`
	To               string       `json:"to"`
	Type             string       `json:"type"`
	Text             *Text        `json:"text,omitempty"`
	Template         *Template    `json:"template,omitempty"`
	Interactive      *Interactive `json:"interactive,omitempty"`
	Image            *MediaObject `json:"image,omitempty"`
	Document         *MediaObject `json:"document,omitempty"`
	Video            *MediaObject `json:"video,omitempty"`
	Audio            *MediaObject `json:"audio,omitempty"`
	CallbackData     string       `json:"biz_opaque_callback_data,omitempty"`
}

func (m Message) request() request {
	r := request{
		MessagingProduct: "whatsapp",
		RecipientType:    "individual",
		To:               m.To,
		Type:             string(m.Type),
		Text:             m.Text,
		Template:         m.Template,
		Interactive:      m.Interactive,
		CallbackData:     m.CallbackData,
	}
	switch m.Type {
	case TypeImage:
		r.Image = m.Media
	case TypeDocument:
		r.Document = m.Media
	case TypeVideo:
		r.Video = m.Media
	case TypeAudio:
		r.Audio = m.Media
	}
	return r
}
