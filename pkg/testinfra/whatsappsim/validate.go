package whatsappsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// maxTextBody is Meta's text body limit in characters.
const maxTextBody = 4096

// maxCallbackData is Meta's limit on biz_opaque_callback_data in characters.
const maxCallbackData = 512

// message is a validated request.
type message struct {
	to          string
	waID        string
	typ         string
	text        *AcceptedText
	template    *AcceptedTemplate
	interactive *AcceptedInteractive
	media       *AcceptedMedia
	// callbackData is biz_opaque_callback_data, echoed in the statuses.
	callbackData string
}

// notSimulated are message types Meta supports that the simulator does not.
var notSimulated = map[string]bool{
	"contacts": true, "location": true, "reaction": true, "sticker": true,
}

var (
	digits      = regexp.MustCompile(`^[0-9]{7,15}$`)
	namedParam  = regexp.MustCompile(`^[a-z0-9_]+$`)
	componentOK = map[string]bool{"header": true, "body": true, "button": true, "footer": true}
)

// validate checks a request body as the Cloud API does, returning Meta's
// error: 100 for a malformed request or an invalid top-level parameter, 131008
// for a missing required parameter, 131009 for an invalid value, 131051 for an
// unsupported type, 132001/132000 for an unknown template or a parameter
// mismatch (only when templates are configured). The codes' meanings are
// Meta's error codes page:
// developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
func validate(body []byte, templates map[string]TemplateSpec) (*message, *apiError) {
	var top map[string]json.RawMessage
	if err := strictDecode(body, &top); err != nil || top == nil {
		return nil, newAPIError(100, "The request body is not a JSON object.")
	}
	var product string
	if e := field(top, "messaging_product", &product, true); e != nil {
		return nil, e
	}
	if product != "whatsapp" {
		return nil, newAPIError(100, fmt.Sprintf("Param messaging_product must be one of {WHATSAPP} - got %q.", product))
	}
	var recipientType string
	if e := field(top, "recipient_type", &recipientType, false); e != nil {
		return nil, e
	}
	if recipientType != "" && recipientType != "individual" {
		return nil, newAPIError(100, fmt.Sprintf("Param recipient_type must be one of {INDIVIDUAL} - got %q.", recipientType))
	}
	m := &message{}
	if e := field(top, "to", &m.to, true); e != nil {
		return nil, e
	}
	m.waID = normalize(m.to)
	if !digits.MatchString(m.waID) {
		return nil, newAPIError(131009, fmt.Sprintf("Param to %q is not a valid phone number.", m.to))
	}
	if e := field(top, "type", &m.typ, false); e != nil {
		return nil, e
	}
	if e := field(top, "biz_opaque_callback_data", &m.callbackData, false); e != nil {
		return nil, e
	}
	if n := utf8.RuneCountInString(m.callbackData); n > maxCallbackData {
		return nil, newAPIError(131009, fmt.Sprintf("Param biz_opaque_callback_data must be at most %d characters long (got %d).", maxCallbackData, n))
	}
	if m.typ == "" {
		m.typ = "text" // Meta's default
	}
	var e *apiError
	switch {
	case m.typ == "text":
		e = validateText(top, m)
	case m.typ == "template":
		e = validateTemplate(top, m, templates)
	case m.typ == "interactive":
		e = validateInteractive(top, m)
	case isMediaMessage(m.typ):
		e = validateMedia(top, m)
	case notSimulated[m.typ]:
		return nil, newAPIError(131051, fmt.Sprintf("Message type %q is not supported by the simulator.", m.typ))
	default:
		return nil, newAPIError(131051, fmt.Sprintf("Unsupported message type %q.", m.typ))
	}
	if e != nil {
		return nil, e
	}
	return m, nil
}

func validateText(top map[string]json.RawMessage, m *message) *apiError {
	raw, ok := top["text"]
	if !ok {
		return newAPIError(131008, "The parameter text is required.")
	}
	var t struct {
		Body       *string `json:"body"`
		PreviewURL *bool   `json:"preview_url"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return newAPIError(131009, "Param text must be an object with a string body and a boolean preview_url.")
	}
	if t.Body == nil || *t.Body == "" {
		return newAPIError(131008, "The parameter text['body'] is required.")
	}
	if n := utf8.RuneCountInString(*t.Body); n > maxTextBody {
		return newAPIError(131009, fmt.Sprintf("Param text['body'] must be at most %d characters long (got %d).", maxTextBody, n))
	}
	m.text = &AcceptedText{Body: *t.Body, PreviewURL: t.PreviewURL != nil && *t.PreviewURL}
	return nil
}

type wireTemplate struct {
	Name     string `json:"name"`
	Language *struct {
		Code string `json:"code"`
	} `json:"language"`
	Components []struct {
		Type       string          `json:"type"`
		SubType    string          `json:"sub_type"`
		Index      json.RawMessage `json:"index"`
		Parameters []wireParameter `json:"parameters"`
	} `json:"components"`
}

type wireParameter struct {
	Type          string  `json:"type"`
	ParameterName string  `json:"parameter_name"`
	Text          *string `json:"text"`
	Payload       *string `json:"payload"`
}

func validateTemplate(top map[string]json.RawMessage, m *message, templates map[string]TemplateSpec) *apiError {
	raw, ok := top["template"]
	if !ok {
		return newAPIError(131008, "The parameter template is required.")
	}
	var t wireTemplate
	if err := json.Unmarshal(raw, &t); err != nil {
		return newAPIError(131009, fmt.Sprintf("Param template is malformed: %v.", err))
	}
	if t.Name == "" {
		return newAPIError(131008, "The parameter template['name'] is required.")
	}
	if t.Language == nil || t.Language.Code == "" {
		return newAPIError(131008, "The parameter template['language']['code'] is required.")
	}
	acc := &AcceptedTemplate{Name: t.Name, Language: t.Language.Code, Parameters: []TemplateParam{}}
	var bodyNames []string
	bodyCount := 0
	buttonIndexes := map[int]bool{}
	for i, c := range t.Components {
		ctype := strings.ToLower(c.Type)
		if !componentOK[ctype] {
			return newAPIError(131009, fmt.Sprintf("Param template['components'][%d]['type'] %q is not one of header, body, button, footer.", i, c.Type))
		}
		if ctype == "button" && strings.EqualFold(c.SubType, "quick_reply") {
			b, e := quickReplyButton(i, c.Index, c.Parameters, buttonIndexes)
			if e != nil {
				return e
			}
			acc.Buttons = append(acc.Buttons, b)
			continue
		}
		named, positional := 0, 0
		for j, p := range c.Parameters {
			where := fmt.Sprintf("template['components'][%d]['parameters'][%d]", i, j)
			if p.Type == "" {
				return newAPIError(131008, fmt.Sprintf("The parameter %s['type'] is required.", where))
			}
			if p.Type != "text" {
				// Currency, date_time, media... are accepted as-is.
				continue
			}
			if p.Text == nil {
				return newAPIError(131008, fmt.Sprintf("The parameter %s['text'] is required.", where))
			}
			if *p.Text == "" {
				return newAPIError(131009, fmt.Sprintf("Param %s['text'] must not be empty.", where))
			}
			if p.ParameterName != "" {
				if !namedParam.MatchString(p.ParameterName) {
					return newAPIError(131009, fmt.Sprintf("Param %s['parameter_name'] %q may only hold lowercase letters, digits and underscores.", where, p.ParameterName))
				}
				named++
			} else {
				positional++
			}
			if ctype == "body" {
				bodyCount++
				if p.ParameterName != "" {
					bodyNames = append(bodyNames, p.ParameterName)
				}
			}
			acc.Parameters = append(acc.Parameters, TemplateParam{Component: ctype, Name: p.ParameterName, Text: *p.Text})
		}
		if named > 0 && positional > 0 {
			return newAPIError(132012, fmt.Sprintf("Component %d mixes named and positional parameters.", i))
		}
	}
	if len(templates) > 0 {
		spec, ok := templates[t.Name+"\x00"+t.Language.Code]
		if !ok {
			return newAPIError(132001, fmt.Sprintf("template name (%s) does not exist in %s", t.Name, t.Language.Code))
		}
		if bodyCount != len(spec.BodyParameters) {
			return newAPIError(132000, fmt.Sprintf("Number of parameters does not match the expected number of params (body: expected %d, got %d).", len(spec.BodyParameters), bodyCount))
		}
		if len(bodyNames) > 0 && !sameSet(bodyNames, spec.BodyParameters) {
			return newAPIError(132000, fmt.Sprintf("Body parameter names %v do not match the template's %v.", bodyNames, spec.BodyParameters))
		}
	}
	m.template = acc
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// field decodes top[name] into a string; absent or empty is 131008 when
// required, a non-string 100 as Graph's parameter checks answer.
func field(top map[string]json.RawMessage, name string, dst *string, required bool) *apiError {
	raw, ok := top[name]
	if !ok || string(raw) == "null" {
		if required {
			return newAPIError(131008, fmt.Sprintf("The parameter %s is required.", name))
		}
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return newAPIError(100, fmt.Sprintf("Param %s must be a string.", name))
	}
	if required && *dst == "" {
		return newAPIError(131008, fmt.Sprintf("The parameter %s is required.", name))
	}
	return nil
}

// strictDecode rejects trailing data after the JSON value.
func strictDecode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// normalize turns a recipient as sent ("+44 7700-900123") into a WhatsApp ID
// (digits only), as Meta's contacts[].wa_id does.
func normalize(to string) string {
	var b strings.Builder
	for _, r := range to {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if r != '+' && r != ' ' && r != '-' && r != '.' && r != '(' && r != ')' {
			return to // not a phone number; left for the digits check to reject
		}
	}
	return b.String()
}
