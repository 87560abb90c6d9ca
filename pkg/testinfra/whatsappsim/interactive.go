package whatsappsim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Meta's limits on interactive messages, in characters. Reply buttons:
// developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-reply-buttons-messages;
// lists: .../messages/interactive-list-messages (whose body may be 4096
// characters where a button message's is 1024).
const (
	maxButtons       = 3
	maxButtonID      = 256
	maxButtonTitle   = 20
	maxButtonBody    = 1024
	maxListBody      = 4096
	maxHeaderFooter  = 60
	maxListButton    = 20
	maxSections      = 10
	maxSectionTitle  = 24
	maxRows          = 10
	maxRowID         = 200
	maxRowTitle      = 24
	maxRowDesc       = 72
	maxTemplateIndex = 9 // a template has at most 10 buttons, index 0 to 9
)

// AcceptedInteractive is the interactive object of an accepted interactive
// message, as sent.
type AcceptedInteractive struct {
	Type       string              `json:"type"`
	Header     string              `json:"header,omitempty"`
	Body       string              `json:"body"`
	Footer     string              `json:"footer,omitempty"`
	Buttons    []InteractiveChoice `json:"buttons,omitempty"`
	ButtonText string              `json:"button_text,omitempty"`
	Sections   []AcceptedSection   `json:"sections,omitempty"`
}

// InteractiveChoice is a reply button or a list row.
type InteractiveChoice struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
}

// AcceptedSection is one section of an accepted list.
type AcceptedSection struct {
	Title string              `json:"title,omitempty"`
	Rows  []InteractiveChoice `json:"rows"`
}

// TemplateButton is a quick-reply button parameter of an accepted template.
type TemplateButton struct {
	Index   int    `json:"index"`
	Payload string `json:"payload"`
}

type wireText struct {
	Text *string `json:"text"`
}

type wireChoice struct {
	ID          *string `json:"id"`
	Title       *string `json:"title"`
	Description string  `json:"description"`
}

type wireInteractive struct {
	Type   string `json:"type"`
	Header *struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	} `json:"header"`
	Body   *wireText `json:"body"`
	Footer *wireText `json:"footer"`
	Action *struct {
		Buttons []struct {
			Type  string      `json:"type"`
			Reply *wireChoice `json:"reply"`
		} `json:"buttons"`
		Button   *string `json:"button"`
		Sections []struct {
			Title string       `json:"title"`
			Rows  []wireChoice `json:"rows"`
		} `json:"sections"`
	} `json:"action"`
}

func required(name string) *apiError {
	return newAPIError(131008, fmt.Sprintf("The parameter %s is required.", name))
}

func tooLong(name, s string, max int) *apiError {
	if n := utf8.RuneCountInString(s); n > max {
		return newAPIError(131009, fmt.Sprintf("Param %s must be at most %d characters long (got %d).", name, max, n))
	}
	return nil
}

// requiredText checks a required string: missing or empty 131008, too long
// 131009.
func requiredText(name string, s *string, max int) *apiError {
	if s == nil || *s == "" {
		return required(name)
	}
	return tooLong(name, *s, max)
}

// validateInteractive checks reply buttons and list messages as Meta
// documents them: a missing required part is 131008, a value out of bounds
// (too long, too many, repeated, a part of the other kind) 131009, a type
// the simulator does not model (cta_url, flow, product...) 131051.
func validateInteractive(top map[string]json.RawMessage, m *message) *apiError {
	raw, ok := top["interactive"]
	if !ok {
		return required("interactive")
	}
	var in wireInteractive
	if err := json.Unmarshal(raw, &in); err != nil {
		return newAPIError(131009, fmt.Sprintf("Param interactive is malformed: %v.", err))
	}
	acc := &AcceptedInteractive{Type: in.Type}
	switch in.Type {
	case "":
		return required("interactive['type']")
	case "button", "list":
	default:
		return newAPIError(131051, fmt.Sprintf("Interactive type %q is not supported by the simulator.", in.Type))
	}
	maxBody := maxButtonBody
	if in.Type == "list" {
		maxBody = maxListBody
	}
	if in.Body == nil {
		return required("interactive['body']")
	}
	if e := requiredText("interactive['body']['text']", in.Body.Text, maxBody); e != nil {
		return e
	}
	acc.Body = *in.Body.Text
	if in.Header != nil {
		if in.Header.Type != "text" {
			return newAPIError(131051, fmt.Sprintf("Header type %q is not supported by the simulator.", in.Header.Type))
		}
		if e := requiredText("interactive['header']['text']", in.Header.Text, maxHeaderFooter); e != nil {
			return e
		}
		acc.Header = *in.Header.Text
	}
	if in.Footer != nil {
		if e := requiredText("interactive['footer']['text']", in.Footer.Text, maxHeaderFooter); e != nil {
			return e
		}
		acc.Footer = *in.Footer.Text
	}
	if in.Action == nil {
		return required("interactive['action']")
	}
	a := in.Action
	if in.Type == "button" {
		if a.Button != nil || len(a.Sections) > 0 {
			return newAPIError(131009, "Param interactive['action'] of a button message takes no button or sections.")
		}
		if len(a.Buttons) == 0 {
			return required("interactive['action']['buttons']")
		}
		if len(a.Buttons) > maxButtons {
			return newAPIError(131009, fmt.Sprintf("Param interactive['action']['buttons'] must have at most %d buttons (got %d).", maxButtons, len(a.Buttons)))
		}
		ids, titles := map[string]bool{}, map[string]bool{}
		for i, b := range a.Buttons {
			at := fmt.Sprintf("interactive['action']['buttons'][%d]", i)
			if b.Type != "reply" {
				return newAPIError(131009, fmt.Sprintf("Param %s['type'] must be reply.", at))
			}
			if b.Reply == nil {
				return required(at + "['reply']")
			}
			if e := requiredText(at+"['reply']['id']", b.Reply.ID, maxButtonID); e != nil {
				return e
			}
			if e := requiredText(at+"['reply']['title']", b.Reply.Title, maxButtonTitle); e != nil {
				return e
			}
			if ids[*b.Reply.ID] || titles[*b.Reply.Title] {
				return newAPIError(131009, fmt.Sprintf("Param %s['reply'] repeats another button's id or title.", at))
			}
			ids[*b.Reply.ID], titles[*b.Reply.Title] = true, true
			acc.Buttons = append(acc.Buttons, InteractiveChoice{ID: *b.Reply.ID, Title: *b.Reply.Title})
		}
		m.interactive = acc
		return nil
	}
	if len(a.Buttons) > 0 {
		return newAPIError(131009, "Param interactive['action'] of a list message takes no buttons.")
	}
	if e := requiredText("interactive['action']['button']", a.Button, maxListButton); e != nil {
		return e
	}
	acc.ButtonText = *a.Button
	if len(a.Sections) == 0 {
		return required("interactive['action']['sections']")
	}
	if len(a.Sections) > maxSections {
		return newAPIError(131009, fmt.Sprintf("Param interactive['action']['sections'] must have at most %d sections (got %d).", maxSections, len(a.Sections)))
	}
	rows, ids := 0, map[string]bool{}
	for i, s := range a.Sections {
		at := fmt.Sprintf("interactive['action']['sections'][%d]", i)
		if s.Title == "" && len(a.Sections) > 1 {
			return required(at + "['title']")
		}
		if e := tooLong(at+"['title']", s.Title, maxSectionTitle); e != nil {
			return e
		}
		if len(s.Rows) == 0 {
			return required(at + "['rows']")
		}
		section := AcceptedSection{Title: s.Title}
		for j, r := range s.Rows {
			row := fmt.Sprintf("%s['rows'][%d]", at, j)
			if rows++; rows > maxRows {
				return newAPIError(131009, fmt.Sprintf("Param interactive['action']['sections'] must have at most %d rows in all.", maxRows))
			}
			if e := requiredText(row+"['id']", r.ID, maxRowID); e != nil {
				return e
			}
			if ids[*r.ID] {
				return newAPIError(131009, fmt.Sprintf("Param %s['id'] repeats another row's id.", row))
			}
			ids[*r.ID] = true
			if e := requiredText(row+"['title']", r.Title, maxRowTitle); e != nil {
				return e
			}
			if e := tooLong(row+"['description']", r.Description, maxRowDesc); e != nil {
				return e
			}
			section.Rows = append(section.Rows, InteractiveChoice{ID: *r.ID, Title: *r.Title, Description: r.Description})
		}
		acc.Sections = append(acc.Sections, section)
	}
	m.interactive = acc
	return nil
}

// quickReplyButton checks a template's button component of sub_type
// quick_reply: an index 0 to 9 (a string or a number, as Meta accepts),
// unique in the template, and one payload parameter.
func quickReplyButton(i int, index json.RawMessage, params []wireParameter, seen map[int]bool) (TemplateButton, *apiError) {
	at := fmt.Sprintf("template['components'][%d]", i)
	var s string
	if len(index) == 0 {
		return TemplateButton{}, required(at + "['index']")
	}
	if json.Unmarshal(index, &s) != nil {
		s = string(index)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxTemplateIndex || seen[n] {
		return TemplateButton{}, newAPIError(131009, fmt.Sprintf("Param %s['index'] must be a distinct button index from 0 to %d (got %s).", at, maxTemplateIndex, index))
	}
	seen[n] = true
	if len(params) != 1 {
		return TemplateButton{}, newAPIError(131009, fmt.Sprintf("Param %s['parameters'] of a quick-reply button takes one payload parameter.", at))
	}
	if params[0].Type != "payload" {
		return TemplateButton{}, newAPIError(131009, fmt.Sprintf("Param %s['parameters'][0]['type'] must be payload.", at))
	}
	if params[0].Payload == nil || *params[0].Payload == "" {
		return TemplateButton{}, required(at + "['parameters'][0]['payload']")
	}
	return TemplateButton{Index: n, Payload: *params[0].Payload}, nil
}
