package whatsapp

import (
	"fmt"
	"unicode/utf8"
)

// WhatsApp's limits on interactive messages, in characters (counted as
// Unicode code points, as for text bodies). Reply buttons:
// https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-reply-buttons-messages
// Lists:
// https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-list-messages
const (
	MaxReplyButtons      = 3
	MaxReplyButtonID     = 256
	MaxReplyButtonTitle  = 20
	MaxButtonBodyLength  = 1024
	MaxInteractiveHeader = 60
	MaxInteractiveFooter = 60
	// Meta's list page allows a list's body 4096 characters, where reply
	// buttons allow 1024.
	MaxListBodyLength     = 4096
	MaxListButtonText     = 20
	MaxListSections       = 10
	MaxListSectionTitle   = 24
	MaxListRows           = 10 // across all sections
	MaxListRowID          = 200
	MaxListRowTitle       = 24
	MaxListRowDescription = 72
)

// The interactive object's type.
const (
	InteractiveButton = "button"
	InteractiveList   = "list"
)

// Interactive is the "interactive" object of an interactive message: reply
// buttons or a list.
type Interactive struct {
	Type   string             `json:"type"`
	Header *InteractiveHeader `json:"header,omitempty"`
	Body   InteractiveText    `json:"body"`
	Footer *InteractiveText   `json:"footer,omitempty"`
	Action InteractiveAction  `json:"action"`
}

// InteractiveHeader is a text header; media headers are not sent.
type InteractiveHeader struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// InteractiveText is the body or the footer.
type InteractiveText struct {
	Text string `json:"text"`
}

// InteractiveAction holds the buttons of a button message, or the button
// and sections of a list.
type InteractiveAction struct {
	Buttons  []ReplyButton `json:"buttons,omitempty"`
	Button   string        `json:"button,omitempty"`
	Sections []ListSection `json:"sections,omitempty"`
}

// ReplyButton is one reply button; Type is always "reply".
type ReplyButton struct {
	Type  string `json:"type"`
	Reply Reply  `json:"reply"`
}

// Reply is a reply button's id (echoed in the driver's reply webhook) and
// label.
type Reply struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// ListSection is one section of a list.
type ListSection struct {
	Title string    `json:"title,omitempty"`
	Rows  []ListRow `json:"rows"`
}

// ListRow is one option of a list; its ID is echoed in the driver's reply
// webhook.
type ListRow struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
}

// FieldError is an ErrInvalidMessage naming the part of the message at
// fault, so that a caller can point at what it built the part from: body,
// header, footer, buttons[i] (.id, .title), buttonText, sections[i] (.title,
// .rows[j], .rows[j].id, .title, .description), kind or quickReplies[i].
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrInvalidMessage, e.Field, e.Detail)
}

func (e *FieldError) Unwrap() error { return ErrInvalidMessage }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)}
}

// InteractiveContent is what an interactive message is built from: its kind
// (InteractiveButton or InteractiveList), an optional text header and
// footer ("" sends none), the body, and the reply buttons, or the list's
// button text and sections. A part of the other kind is refused, not dropped.
type InteractiveContent struct {
	Kind       string
	Header     string
	Body       string
	Footer     string
	Buttons    []Reply
	ButtonText string
	Sections   []ListSection
}

// InteractiveMessage builds an interactive message and checks it against
// Meta's limits.
func InteractiveMessage(to string, c InteractiveContent) (Message, error) {
	in := &Interactive{Type: c.Kind, Body: InteractiveText{Text: c.Body},
		Action: InteractiveAction{Button: c.ButtonText, Sections: c.Sections}}
	if c.Header != "" {
		in.Header = &InteractiveHeader{Type: "text", Text: c.Header}
	}
	if c.Footer != "" {
		in.Footer = &InteractiveText{Text: c.Footer}
	}
	for _, b := range c.Buttons {
		in.Action.Buttons = append(in.Action.Buttons, ReplyButton{Type: "reply", Reply: b})
	}
	m := Message{To: to, Type: TypeInteractive, Interactive: in}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// validate applies Meta's limits; each error is a *FieldError.
func (in *Interactive) validate() error {
	maxBody := MaxButtonBodyLength
	if in.Type == InteractiveList {
		maxBody = MaxListBodyLength
	}
	if in.Body.Text == "" {
		return fieldErr("body", "an interactive message needs a body")
	}
	if err := maxChars("body", in.Body.Text, maxBody); err != nil {
		return err
	}
	if in.Header != nil {
		if in.Header.Type != "text" || in.Header.Text == "" {
			return fieldErr("header", "only a non-empty text header is sent")
		}
		if err := maxChars("header", in.Header.Text, MaxInteractiveHeader); err != nil {
			return err
		}
	}
	if in.Footer != nil {
		if in.Footer.Text == "" {
			return fieldErr("footer", "is empty")
		}
		if err := maxChars("footer", in.Footer.Text, MaxInteractiveFooter); err != nil {
			return err
		}
	}
	switch in.Type {
	case InteractiveButton:
		return in.Action.validateButtons()
	case InteractiveList:
		return in.Action.validateList()
	default:
		return fieldErr("kind", "%q is not button or list", in.Type)
	}
}

func (a InteractiveAction) validateButtons() error {
	if a.Button != "" || len(a.Sections) > 0 {
		return fieldErr("buttonText", "a button message has no list")
	}
	if len(a.Buttons) == 0 {
		return fieldErr("buttons", "a button message needs at least one reply button")
	}
	if len(a.Buttons) > MaxReplyButtons {
		return fieldErr(fmt.Sprintf("buttons[%d]", MaxReplyButtons), "WhatsApp allows at most %d reply buttons", MaxReplyButtons)
	}
	ids, titles := map[string]bool{}, map[string]bool{}
	for i, b := range a.Buttons {
		at := fmt.Sprintf("buttons[%d]", i)
		if b.Type != "reply" {
			return fieldErr(at, "type %q is not reply", b.Type)
		}
		if err := requiredChars(at+".id", b.Reply.ID, MaxReplyButtonID); err != nil {
			return err
		}
		if err := requiredChars(at+".title", b.Reply.Title, MaxReplyButtonTitle); err != nil {
			return err
		}
		if ids[b.Reply.ID] {
			return fieldErr(at+".id", "repeats another button's id")
		}
		if titles[b.Reply.Title] {
			return fieldErr(at+".title", "repeats another button's title; WhatsApp wants them unique")
		}
		ids[b.Reply.ID], titles[b.Reply.Title] = true, true
	}
	return nil
}

func (a InteractiveAction) validateList() error {
	if len(a.Buttons) > 0 {
		return fieldErr("buttons", "a list message has no reply buttons")
	}
	if err := requiredChars("buttonText", a.Button, MaxListButtonText); err != nil {
		return err
	}
	if len(a.Sections) == 0 {
		return fieldErr("sections", "a list needs at least one section")
	}
	if len(a.Sections) > MaxListSections {
		return fieldErr(fmt.Sprintf("sections[%d]", MaxListSections), "WhatsApp allows at most %d sections", MaxListSections)
	}
	rows, ids := 0, map[string]bool{}
	for i, s := range a.Sections {
		at := fmt.Sprintf("sections[%d]", i)
		if s.Title == "" && len(a.Sections) > 1 {
			return fieldErr(at+".title", "every section needs a title when there is more than one")
		}
		if err := maxChars(at+".title", s.Title, MaxListSectionTitle); err != nil {
			return err
		}
		if len(s.Rows) == 0 {
			return fieldErr(at+".rows", "a section needs at least one row")
		}
		for j, r := range s.Rows {
			row := fmt.Sprintf("%s.rows[%d]", at, j)
			if rows++; rows > MaxListRows {
				return fieldErr(row, "WhatsApp allows at most %d rows in all sections", MaxListRows)
			}
			if err := requiredChars(row+".id", r.ID, MaxListRowID); err != nil {
				return err
			}
			if ids[r.ID] {
				return fieldErr(row+".id", "repeats another row's id")
			}
			ids[r.ID] = true
			if err := requiredChars(row+".title", r.Title, MaxListRowTitle); err != nil {
				return err
			}
			if err := maxChars(row+".description", r.Description, MaxListRowDescription); err != nil {
				return err
			}
		}
	}
	return nil
}

func requiredChars(field, s string, max int) error {
	if s == "" {
		return fieldErr(field, "is required")
	}
	return maxChars(field, s, max)
}

func maxChars(field, s string, max int) error {
	if n := utf8.RuneCountInString(s); n > max {
		return fieldErr(field, "has %d characters, WhatsApp allows %d", n, max)
	}
	return nil
}
