package whatsappsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The template registry of the simulated business accounts, after Meta's
// pages: Graph API's message_templates listing
// (developers.facebook.com/docs/graph-api/reference/whats-app-business-account/message_templates),
// the message_template_status_update and template_category_update webhooks
// (developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/message_template_status_update
// and .../template_category_update), and the send errors of a template not
// approved (132015 paused, 132016 disabled; Cloud API error codes).

// TemplateApproved is the status of a template WhatsApp sends.
const TemplateApproved = "APPROVED"

// templateStatusesKnown are the statuses SetTemplateStatus accepts.
var templateStatusesKnown = map[string]bool{
	"APPROVED": true, "PAUSED": true, "DISABLED": true, "REJECTED": true, "PENDING": true, "IN_APPEAL": true, "PENDING_DELETION": true, "DELETED": true,
}

func templateStatuses(templates map[string]TemplateSpec) map[string]string {
	out := make(map[string]string, len(templates))
	for k, t := range templates {
		out[k] = t.Status
	}
	return out
}

// checkTemplateStatus refuses a template that is not approved, as the
// Cloud API does: 132015 for a paused one, 132016 for a disabled one,
// 132001 for one rejected, pending or deleted (it cannot be sent).
func (s *Simulator) checkTemplateStatus(m *message) *apiError {
	if m.template == nil {
		return nil
	}
	s.mu.Lock()
	status, ok := s.status[m.template.Name+"\x00"+m.template.Language]
	s.mu.Unlock()
	switch {
	case !ok || status == TemplateApproved:
		return nil
	case status == "PAUSED":
		return newAPIError(132015, fmt.Sprintf("Template %s is paused due to low quality.", m.template.Name))
	case status == "DISABLED":
		return newAPIError(132016, fmt.Sprintf("Template %s is disabled.", m.template.Name))
	default:
		return newAPIError(132001, fmt.Sprintf("template name (%s) is %s in %s", m.template.Name, status, m.template.Language))
	}
}

// SetTemplateStatus changes a template's status (PAUSED, DISABLED,
// APPROVED...) and, with a webhook receiver, posts
// message_template_status_update for its business account.
func (s *Simulator) SetTemplateStatus(name, language, status, reason string) error {
	key := name + "\x00" + language
	t, ok := s.templates[key]
	if !ok {
		return fmt.Errorf("whatsappsim: no template %q in %q", name, language)
	}
	if !templateStatusesKnown[status] {
		return fmt.Errorf("whatsappsim: template status %q", status)
	}
	s.mu.Lock()
	s.status[key] = status
	category := s.categories[name]
	s.mu.Unlock()
	if category == "" {
		category = DefaultTemplateCategory
	}
	if reason == "" {
		reason = "NONE"
	}
	return s.templateWebhook(t, "message_template_status_update", map[string]any{
		"event": status, "message_template_id": templateID(t), "message_template_name": name,
		"message_template_language": language, "reason": reason, "message_template_category": strings.ToUpper(category),
	})
}

// ChangeTemplateCategory sets a template's category (SetTemplateCategory)
// and posts template_category_update for each of its languages.
func (s *Simulator) ChangeTemplateCategory(name, category string) error {
	s.mu.Lock()
	previous := s.categories[name]
	s.mu.Unlock()
	if previous == "" {
		previous = DefaultTemplateCategory
	}
	if err := s.SetTemplateCategory(name, category); err != nil {
		return err
	}
	for _, t := range s.sortedTemplates() {
		if t.Name != name {
			continue
		}
		if err := s.templateWebhook(t, "template_category_update", map[string]any{
			"message_template_id": templateID(t), "message_template_name": name, "message_template_language": t.Language,
			"previous_category": strings.ToUpper(previous), "new_category": strings.ToUpper(category),
		}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Simulator) templateWebhook(t TemplateSpec, field string, value map[string]any) error {
	if s.opts.Webhook.URL == "" || t.BusinessAccountID == "" {
		return nil
	}
	body, err := json.Marshal(map[string]any{"object": "whatsapp_business_account", "entry": []any{map[string]any{
		"id": t.BusinessAccountID, "time": time.Now().Unix(),
		"changes": []any{map[string]any{"field": field, "value": value}},
	}}})
	if err != nil {
		return fmt.Errorf("whatsappsim: encode template webhook: %w", err)
	}
	s.pending.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.pending.Add(-1)
		s.deliver(body, field+" "+t.Name)
	}()
	return nil
}

// templateID is a stable numeric id of a template, as Meta's are numbers.
func templateID(t TemplateSpec) string {
	var h uint64 = 1469598103934665603
	for _, c := range []byte(t.Name + "\x00" + t.Language) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return strconv.FormatUint(h%1e15, 10)
}

func (s *Simulator) sortedTemplates() []TemplateSpec {
	out := make([]TemplateSpec, 0, len(s.templates))
	for _, t := range s.templates {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b TemplateSpec) int {
		return strings.Compare(a.Name+"\x00"+a.Language, b.Name+"\x00"+b.Language)
	})
	return out
}

var templatesPath = regexp.MustCompile(`^/(v[0-9]+\.[0-9]+)/([0-9]+)/message_templates$`)

// serveTemplates answers GET /{api-version}/{waba-id}/message_templates:
// the account's templates in name order, limit per page (Meta's default
// 25), the next page by paging.cursors.after while paging.next is given.
// Any token the simulator knows is accepted (Meta checks the token's
// access to the account; the simulator has no such grants).
func (s *Simulator) serveTemplates(w http.ResponseWriter, r *http.Request) bool {
	m := templatesPath.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodGet {
		return false
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	known := false
	for _, t := range s.tokens {
		known = known || (tok != "" && t == tok)
	}
	s.mu.Unlock()
	if !known {
		s.reject(w, newAPIError(190, "Invalid OAuth access token."))
		return true
	}
	limit := 25
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 {
		limit = min(l, 1000)
	}
	offset := 0
	if a := r.URL.Query().Get("after"); a != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(a, "c"))
		if err != nil || n < 0 {
			s.reject(w, newAPIError(100, "Invalid parameter: after"))
			return true
		}
		offset = n
	}
	var all []map[string]any
	for _, t := range s.sortedTemplates() {
		if t.BusinessAccountID != m[2] {
			continue
		}
		s.mu.Lock()
		status, category := s.status[t.Name+"\x00"+t.Language], s.categories[t.Name]
		s.mu.Unlock()
		if category == "" {
			category = DefaultTemplateCategory
		}
		body := "Template " + t.Name
		for _, p := range t.BodyParameters {
			body += " {{" + p + "}}"
		}
		all = append(all, map[string]any{"id": templateID(t), "name": t.Name, "language": t.Language, "status": status,
			"category": strings.ToUpper(category), "components": []any{map[string]any{"type": "BODY", "text": body}}})
	}
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	paging := map[string]any{"cursors": map[string]string{"before": "c" + strconv.Itoa(offset), "after": "c" + strconv.Itoa(offset+len(page))}}
	if offset+len(page) < len(all) {
		paging["next"] = "https://graph.facebook.com" + r.URL.Path + "?after=c" + strconv.Itoa(offset+len(page))
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": page, "paging": paging})
	return true
}
