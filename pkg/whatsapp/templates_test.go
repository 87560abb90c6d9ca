package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// ListTemplates reads every page by the after cursor, with the token in
// the header and the fields asked for, and takes each template's named
// parameters from its header and body; Graph's error is an *Error without
// the token.
func TestListTemplatesPages(t *testing.T) {
	pages := map[string]string{
		"": `{"data":[{"id":"1","name":"eta_update","language":"en_US","category":"UTILITY","status":"APPROVED","components":[
			{"type":"HEADER","format":"TEXT","text":"Hi {{driver_name}}"},{"type":"BODY","text":"{{driver_name}}, your van comes in {{ eta }} minutes"},
			{"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":"OK {{x}}"}]}]}],
			"paging":{"cursors":{"before":"b0","after":"c1"},"next":"https://graph.facebook.com/v23.0/2001/message_templates?after=c1"}}`,
		"c1": `{"data":[{"id":"2","name":"promo","language":"de","category":"MARKETING","status":"PAUSED","components":[{"type":"BODY","text":"Angebot"}]}],
			"paging":{"cursors":{"before":"c1","after":"c2"}}}`,
	}
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.URL.Path != "/v23.0/2001/message_templates" || r.Header.Get("Authorization") != "Bearer tok" ||
			r.URL.Query().Get("fields") != "name,language,category,status,components" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"message":"bad request tok","type":"OAuthException","code":100}}`)
			return
		}
		fmt.Fprint(w, pages[r.URL.Query().Get("after")])
	}))
	defer srv.Close()
	c, err := NewClient(Config{BaseURL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got, complete, err := c.ListTemplates(context.Background(), Account{BusinessAccountID: "2001", APIVersion: "v23.0", Token: NewToken("tok")})
	if err != nil || !complete || calls != 2 || len(got) != 2 {
		t.Fatalf("%+v complete=%v calls=%d: %v", got, complete, calls, err)
	}
	if e := got[0]; e.Name != "eta_update" || e.Status != "APPROVED" || e.Category != "UTILITY" || fmt.Sprint(e.Parameters) != "[driver_name eta]" {
		t.Errorf("first %+v", e)
	}
	if e := got[1]; e.Name != "promo" || e.Language != "de" || e.Status != "PAUSED" || len(e.Parameters) != 0 {
		t.Errorf("second %+v", e)
	}
	_, _, err = c.ListTemplates(context.Background(), Account{BusinessAccountID: "2001", APIVersion: "v23.0", Token: NewToken("other")})
	var we *Error
	if !errors.As(err, &we) || we.Code != 100 || strings.Contains(err.Error(), "other") {
		t.Fatalf("error %v", err)
	}
	if _, _, err := c.ListTemplates(context.Background(), Account{BusinessAccountID: "../x", APIVersion: "v23.0", Token: NewToken("tok")}); err == nil {
		t.Fatal("a business account id that is no number was asked for")
	}
}

func TestTemplateParameterNames(t *testing.T) {
	if got := fmt.Sprint(TemplateParameterNames("{{a}} {{ b_2 }} {{a}} {{1}} {{Bad}} {x}")); got != "[a b_2 1]" {
		t.Fatalf("%s", got)
	}
}
