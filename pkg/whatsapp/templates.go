package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Account is what listing a WhatsApp Business Account's templates takes:
// its id, the Cloud API version and the lease's token.
type Account struct {
	BusinessAccountID string
	APIVersion        string
	Token             Token
}

// TemplateInfo is one template as Graph API's message_templates lists it,
// with the named parameters its header and body declare ({{name}}).
type TemplateInfo struct {
	ID, Name, Language, Category, Status string
	Parameters                           []string
}

// templateFields are the fields asked of message_templates.
const templateFields = "name,language,category,status,components"

// maxTemplatePages bounds one listing: 100 pages of templatePageSize is
// more templates than Meta lets an account have.
const (
	maxTemplatePages = 100
	templatePageSize = 100
)

type templatesBody struct {
	Data []struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		Language   string `json:"language"`
		Category   string `json:"category"`
		Status     string `json:"status"`
		Components []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"components"`
	} `json:"data"`
	Paging struct {
		Cursors struct {
			After string `json:"after"`
		} `json:"cursors"`
		Next string `json:"next"`
	} `json:"paging"`
}

// ListTemplates reads every page of GET /{api-version}/{waba-id}/
// message_templates (developers.facebook.com/docs/graph-api/reference/
// whats-app-business-account/message_templates), following the after
// cursor while the answer names a next page. complete is false when it
// stopped at maxTemplatePages. Every failure is an *Error.
func (c *Client) ListTemplates(ctx context.Context, a Account) (templates []TemplateInfo, complete bool, err error) {
	if !phoneNumberID.MatchString(a.BusinessAccountID) {
		return nil, false, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: business account id is not numeric", ErrInvalidMessage))
	}
	if !apiVersion.MatchString(a.APIVersion) {
		return nil, false, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: API version %q is not of the form v21.0", ErrInvalidMessage, a.APIVersion))
	}
	if a.Token.IsZero() {
		return nil, false, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: empty access token", ErrInvalidMessage))
	}
	after := ""
	for range maxTemplatePages {
		q := url.Values{"fields": {templateFields}, "limit": {fmt.Sprint(templatePageSize)}}
		if after != "" {
			q.Set("after", after)
		}
		page, next, err := c.templatePage(ctx, a, c.base+"/"+a.APIVersion+"/"+a.BusinessAccountID+"/message_templates?"+q.Encode())
		if err != nil {
			return nil, false, err
		}
		templates = append(templates, page...)
		if next == "" {
			return templates, true, nil
		}
		after = next
	}
	return templates, false, nil
}

func (c *Client) templatePage(ctx context.Context, a Account, endpoint string) ([]TemplateInfo, string, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := c.get(ctx, a.Token, endpoint)
	if err != nil {
		return nil, "", err
	}
	defer drain(resp)
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return nil, "", transportError(resp.StatusCode, ReasonNetwork, true, fmt.Errorf("read templates answer: %w", err))
	}
	page, next, err := parseTemplates(resp.StatusCode, resp.Header.Get("Retry-After"), data)
	if err != nil {
		scrub(err, a.Token.Reveal())
	}
	return page, next, err
}

// parseTemplates turns one answer of message_templates into its templates
// and the cursor of the next page ("" on the last). It never panics.
func parseTemplates(status int, retryAfter string, body []byte) ([]TemplateInfo, string, error) {
	if status < 200 || status >= 300 {
		var e struct {
			Error *errorBody `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == nil {
			return nil, "", mediaStatusError(status, retryAfter, errors.New("answer without a Meta error object"))
		}
		return nil, "", metaError(status, *e.Error.Code, *e.Error, parseRetryAfter(retryAfter))
	}
	var b templatesBody
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, "", transportError(status, ReasonHTTPStatus, true, fmt.Errorf("unparseable templates answer: %w", err))
	}
	out := make([]TemplateInfo, 0, len(b.Data))
	for _, d := range b.Data {
		t := TemplateInfo{ID: d.ID, Name: d.Name, Language: d.Language, Category: d.Category, Status: d.Status}
		for _, comp := range d.Components {
			if typ := strings.ToUpper(comp.Type); typ == "HEADER" || typ == "BODY" {
				t.Parameters = append(t.Parameters, TemplateParameterNames(comp.Text)...)
			}
		}
		slices.Sort(t.Parameters)
		t.Parameters = slices.Compact(t.Parameters)
		out = append(out, t)
	}
	next := ""
	if b.Paging.Next != "" {
		next = b.Paging.Cursors.After
	}
	return out, next, nil
}

var placeholder = regexp.MustCompile(`\{\{\s*([a-z0-9_]+)\s*\}\}`)

// TemplateParameterNames are the parameters a template component's text
// declares, {{name}} (or {{1}} for a positional one), in order of first use.
func TemplateParameterNames(text string) []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(text, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}
