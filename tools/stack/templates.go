package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// DemoBusinessAccount is the WhatsApp Business Account of the demo lease
// (whatsappConfig.businessAccountId), whose template webhooks ingest maps
// to the lease.
const DemoBusinessAccount = "2001"

// TemplateStatus posts WhatsApp's message_template_status_update webhook
// for a template of the business account, signed as Meta signs it, to
// ingest: event is the new status (APPROVED, PAUSED…), category Meta's.
func (s *Stack) TemplateStatus(ctx context.Context, account, name, language, event, category string) error {
	body, err := json.Marshal(map[string]any{
		"object": "whatsapp_business_account",
		"entry": []any{map[string]any{"id": account, "time": time.Now().Unix(), "changes": []any{map[string]any{
			"field": "message_template_status_update",
			"value": map[string]any{"event": event, "message_template_id": 594425479261596, "message_template_name": name,
				"message_template_language": language, "reason": "NONE", "message_template_category": category},
		}}}},
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.WebhookURL(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(whatsappsim.SignatureHeader, whatsappsim.Sign(s.AppSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("template webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("template webhook answered %d", resp.StatusCode)
	}
	return nil
}

// Demo drivers and templates of what WhatsApp told the pipeline before the
// demo's messages are written.
const (
	demoOptedOutDriver = "+447911123410"
	demoPausedTemplate = "collection_reminder"
	demoOfferTemplate  = "summer_offer"
)

// SeedWhatsAppState has WhatsApp tell the pipeline, through its webhooks,
// what the demo's refusals rest on: the lease's template
// collection_reminder is PAUSED, summer_offer an APPROVED MARKETING
// template, and driver +447911123410 wrote STOP. It returns once the
// recorder has written each into the lease's registry and driver records.
func (s *Stack) SeedWhatsAppState(ctx context.Context, fs *firestore.Client) error {
	for _, t := range []struct{ name, event, category string }{
		{demoPausedTemplate, "PAUSED", "UTILITY"},
		{demoOfferTemplate, "APPROVED", "MARKETING"},
	} {
		if err := s.TemplateStatus(ctx, DemoBusinessAccount, t.name, "en_GB", t.event, t.category); err != nil {
			return err
		}
		if _, err := waitForDocumentWhere(ctx, fs, dispatch.TemplatePath(DemoLease, t.name, "en_GB"), func(d map[string]any) bool {
			return d[dispatch.TemplateStatus] == t.event && d[dispatch.TemplateCategory] == t.category
		}); err != nil {
			return fmt.Errorf("template %s in the registry: %w", t.name, err)
		}
	}
	if _, err := s.Reply(ctx, demoOptedOutDriver, "STOP", ""); err != nil {
		return err
	}
	if _, err := waitForDocumentWhere(ctx, fs, dispatch.DriverRecordPath(DemoLease, demoOptedOutDriver), func(d map[string]any) bool {
		return d[dispatch.DriverOptedOut] == true
	}); err != nil {
		return fmt.Errorf("the STOP on the driver's record: %w", err)
	}
	return nil
}
