package stack_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/tools/stack"
)

// WhatsApp pauses a template (its signed message_template_status_update
// webhook, for the lease's business account): ingest publishes it, the
// recorder writes it into the lease's registry, and a message of that
// template then ends FAILED template_not_approved without a call to
// WhatsApp.
func TestTemplateRegistryRefusesBeforeTheCall(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	if _, err := fs.Doc("leasecompany/"+stack.DemoLease).Set(ctx, map[string]any{
		"whatsappConfig": map[string]any{"businessAccountId": "2001"},
	}, firestore.MergeAll); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"2001","time":%d,"changes":[{"field":"message_template_status_update",`+
		`"value":{"event":"PAUSED","message_template_id":594425479261596,"message_template_name":"vehicle_delivery","message_template_language":"en_GB",`+
		`"reason":"FIRST_PAUSE","message_template_category":"UTILITY"}}]}]}`, time.Now().Unix())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.WebhookURL(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(whatsappsim.SignatureHeader, whatsappsim.Sign(s.AppSecret, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("template webhook answered %d", resp.StatusCode)
	}
	waitForDocWhere(t, ctx, fs, dispatch.TemplatePath(stack.DemoLease, "vehicle_delivery", "en_GB"), "PAUSED in the registry", func(d map[string]any) bool {
		return d["status"] == "PAUSED"
	})

	c := demoCase(t, "msg-template", "paused-template")
	if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
		t.Fatal(err)
	}
	doc := waitForStatus(t, ctx, fs, c.Path(), "FAILED")
	if reason, _ := doc["failureReason"].(string); !strings.Contains(reason, "template_not_approved") {
		t.Fatalf("failureReason %q, want template_not_approved", reason)
	}
	accepted, err := s.Accepted(ctx, "+447911123402")
	if err != nil {
		t.Fatal(err)
	}
	if len(accepted) != 0 {
		t.Fatalf("WhatsApp was called for a paused template: %v", accepted)
	}
}
