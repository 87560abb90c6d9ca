package whatsapp

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const driver = "+447700900123"

func body(t *testing.T, m Message) string {
	t.Helper()
	b, err := json.Marshal(m.request())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInteractiveButtonsRequest(t *testing.T) {
	m, err := InteractiveMessage(driver, InteractiveContent{Kind: InteractiveButton, Header: "Collection", Body: "Can you collect at 10:30?",
		Footer: "Reply to confirm", Buttons: []Reply{{ID: "yes", Title: "Yes"}, {ID: "later", Title: "Later today"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+447700900123","type":"interactive",` +
		`"interactive":{"type":"button","header":{"type":"text","text":"Collection"},"body":{"text":"Can you collect at 10:30?"},` +
		`"footer":{"text":"Reply to confirm"},"action":{"buttons":[{"type":"reply","reply":{"id":"yes","title":"Yes"}},` +
		`{"type":"reply","reply":{"id":"later","title":"Later today"}}]}}}`
	if got := body(t, m); got != want {
		t.Fatalf("request body\n got %s\nwant %s", got, want)
	}
}

func TestInteractiveListRequest(t *testing.T) {
	m, err := InteractiveMessage(driver, InteractiveContent{Kind: InteractiveList, Body: "Pick a slot", ButtonText: "Slots", Sections: []ListSection{
		{Title: "Morning", Rows: []ListRow{{ID: "am-9", Title: "09:00", Description: "Depot A"}}},
		{Title: "Afternoon", Rows: []ListRow{{ID: "pm-2", Title: "14:00"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+447700900123","type":"interactive",` +
		`"interactive":{"type":"list","body":{"text":"Pick a slot"},"action":{"button":"Slots","sections":[` +
		`{"title":"Morning","rows":[{"id":"am-9","title":"09:00","description":"Depot A"}]},` +
		`{"title":"Afternoon","rows":[{"id":"pm-2","title":"14:00"}]}]}}}`
	if got := body(t, m); got != want {
		t.Fatalf("request body\n got %s\nwant %s", got, want)
	}
}

func TestTemplateQuickReplyComponents(t *testing.T) {
	m, err := TemplateMessage(driver, "collection_check", "en_GB", map[string]string{"eta": "15"}, "confirm:m1", "move:m1")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+447700900123","type":"template",` +
		`"template":{"name":"collection_check","language":{"code":"en_GB"},"components":[` +
		`{"type":"body","parameters":[{"type":"text","parameter_name":"eta","text":"15"}]},` +
		`{"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"confirm:m1"}]},` +
		`{"type":"button","sub_type":"quick_reply","index":"1","parameters":[{"type":"payload","payload":"move:m1"}]}]}}`
	if got := body(t, m); got != want {
		t.Fatalf("request body\n got %s\nwant %s", got, want)
	}
}

func TestTemplateQuickReplyLimits(t *testing.T) {
	if _, err := TemplateMessage(driver, "t", "en", nil, make([]string, MaxTemplateButtons)...); fieldOf(t, err) != "quickReplies[0]" {
		t.Errorf("empty payload: %v", err)
	}
	ten := strings.Split(strings.Repeat("p,", MaxTemplateButtons), ",")
	if _, err := TemplateMessage(driver, "t", "en", nil, ten[:MaxTemplateButtons]...); err != nil {
		t.Errorf("%d payloads: %v", MaxTemplateButtons, err)
	}
	if _, err := TemplateMessage(driver, "t", "en", nil, ten...); fieldOf(t, err) != "quickReplies[10]" {
		t.Errorf("%d payloads: %v", len(ten), err)
	}
}

func fieldOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	if !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("%v does not wrap ErrInvalidMessage", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("%v is not a *FieldError", err)
	}
	return fe.Field
}

func buttons(n int) []Reply {
	out := make([]Reply, n)
	for i := range out {
		out[i] = Reply{ID: fmt.Sprint("id", i), Title: fmt.Sprint("Title ", i)}
	}
	return out
}

func rows(n int) []ListRow {
	out := make([]ListRow, n)
	for i := range out {
		out[i] = ListRow{ID: fmt.Sprint("r", i), Title: fmt.Sprint("Row ", i)}
	}
	return out
}

// Each of Meta's limits, at the limit (accepted) and one past it (refused,
// naming the part).
func TestInteractiveLimits(t *testing.T) {
	x := strings.Repeat
	btn := func(header, body, footer string, b []Reply) error {
		_, err := InteractiveMessage(driver, InteractiveContent{Kind: InteractiveButton, Header: header, Body: body, Footer: footer, Buttons: b})
		return err
	}
	list := func(body, button string, s []ListSection) error {
		_, err := InteractiveMessage(driver, InteractiveContent{Kind: InteractiveList, Body: body, ButtonText: button, Sections: s})
		return err
	}
	one := []ListSection{{Rows: rows(1)}}
	cases := []struct {
		name string
		err  error
		want string // "" accepted
	}{
		{"button body at 1024", btn("", x("é", MaxButtonBodyLength), "", buttons(1)), ""},
		{"button body over 1024", btn("", x("é", MaxButtonBodyLength+1), "", buttons(1)), "body"},
		{"no body", btn("", "", "", buttons(1)), "body"},
		{"header at 60", btn(x("h", MaxInteractiveHeader), "b", "", buttons(1)), ""},
		{"header over 60", btn(x("h", MaxInteractiveHeader+1), "b", "", buttons(1)), "header"},
		{"footer at 60", btn("", "b", x("f", MaxInteractiveFooter), buttons(1)), ""},
		{"footer over 60", btn("", "b", x("f", MaxInteractiveFooter+1), buttons(1)), "footer"},
		{"three buttons", btn("", "b", "", buttons(3)), ""},
		{"four buttons", btn("", "b", "", buttons(4)), "buttons[3]"},
		{"no buttons", btn("", "b", "", nil), "buttons"},
		{"button title at 20", btn("", "b", "", []Reply{{ID: "a", Title: x("t", MaxReplyButtonTitle)}}), ""},
		{"button title over 20", btn("", "b", "", []Reply{{ID: "a", Title: x("t", MaxReplyButtonTitle+1)}}), "buttons[0].title"},
		{"button id at 256", btn("", "b", "", []Reply{{ID: x("i", MaxReplyButtonID), Title: "t"}}), ""},
		{"button id over 256", btn("", "b", "", []Reply{{ID: x("i", MaxReplyButtonID+1), Title: "t"}}), "buttons[0].id"},
		{"button without id", btn("", "b", "", []Reply{{Title: "t"}}), "buttons[0].id"},
		{"button without title", btn("", "b", "", []Reply{{ID: "a"}}), "buttons[0].title"},
		{"duplicate button id", btn("", "b", "", []Reply{{ID: "a", Title: "A"}, {ID: "a", Title: "B"}}), "buttons[1].id"},
		{"duplicate button title", btn("", "b", "", []Reply{{ID: "a", Title: "A"}, {ID: "b", Title: "A"}}), "buttons[1].title"},
		{"list body at 4096", list(x("b", MaxListBodyLength), "Pick", one), ""},
		{"list body over 4096", list(x("b", MaxListBodyLength+1), "Pick", one), "body"},
		{"list without button text", list("b", "", one), "buttonText"},
		{"button text over 20", list("b", x("p", MaxListButtonText+1), one), "buttonText"},
		{"no sections", list("b", "Pick", nil), "sections"},
		{"ten sections", list("b", "Pick", func() []ListSection {
			s := make([]ListSection, MaxListSections)
			for i := range s {
				s[i] = ListSection{Title: fmt.Sprint("S", i), Rows: []ListRow{{ID: fmt.Sprint(i), Title: "r"}}}
			}
			return s
		}()), ""},
		{"eleven sections", list("b", "Pick", make([]ListSection, MaxListSections+1)), "sections[10]"},
		{"untitled second section", list("b", "Pick", []ListSection{{Title: "A", Rows: rows(1)}, {Rows: []ListRow{{ID: "z", Title: "z"}}}}), "sections[1].title"},
		{"section title over 24", list("b", "Pick", []ListSection{{Title: x("s", MaxListSectionTitle+1), Rows: rows(1)}}), "sections[0].title"},
		{"section without rows", list("b", "Pick", []ListSection{{Title: "A"}}), "sections[0].rows"},
		{"ten rows", list("b", "Pick", []ListSection{{Rows: rows(MaxListRows)}}), ""},
		{"eleven rows across sections", list("b", "Pick", []ListSection{{Title: "A", Rows: rows(6)}, {Title: "B", Rows: []ListRow{
			{ID: "b0", Title: "x"}, {ID: "b1", Title: "x"}, {ID: "b2", Title: "x"}, {ID: "b3", Title: "x"}, {ID: "b4", Title: "x"}}}}), "sections[1].rows[4]"},
		{"row id over 200", list("b", "Pick", []ListSection{{Rows: []ListRow{{ID: x("i", MaxListRowID+1), Title: "t"}}}}), "sections[0].rows[0].id"},
		{"row title over 24", list("b", "Pick", []ListSection{{Rows: []ListRow{{ID: "i", Title: x("t", MaxListRowTitle+1)}}}}), "sections[0].rows[0].title"},
		{"row description at 72", list("b", "Pick", []ListSection{{Rows: []ListRow{{ID: "i", Title: "t", Description: x("d", MaxListRowDescription)}}}}), ""},
		{"row description over 72", list("b", "Pick", []ListSection{{Rows: []ListRow{{ID: "i", Title: "t", Description: x("d", MaxListRowDescription+1)}}}}), "sections[0].rows[0].description"},
		{"row ids repeat across sections", list("b", "Pick", []ListSection{{Title: "A", Rows: rows(1)}, {Title: "B", Rows: rows(1)}}), "sections[1].rows[0].id"},
	}
	for _, c := range cases {
		if got := fieldOf(t, c.err); got != c.want {
			t.Errorf("%s: refused on %q (%v), want %q", c.name, got, c.err, c.want)
		}
	}
}

// A message mixing the kinds' parts is refused rather than sent with half
// of it.
func TestInteractiveKindsDoNotMix(t *testing.T) {
	list := []ListSection{{Rows: rows(1)}}
	for _, c := range []struct {
		content InteractiveContent
		want    string
	}{
		{InteractiveContent{Kind: InteractiveButton, Body: "b", Buttons: buttons(1), Sections: list}, "buttonText"},
		{InteractiveContent{Kind: InteractiveButton, Body: "b", Buttons: buttons(1), ButtonText: "Pick"}, "buttonText"},
		{InteractiveContent{Kind: InteractiveList, Body: "b", ButtonText: "Pick", Sections: list, Buttons: buttons(1)}, "buttons"},
		{InteractiveContent{Kind: "product", Body: "b"}, "kind"},
	} {
		_, err := InteractiveMessage(driver, c.content)
		if f := fieldOf(t, err); f != c.want {
			t.Errorf("%+v: refused on %q, want %q", c.content, f, c.want)
		}
	}
}
