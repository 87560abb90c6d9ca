package stack_test

import (
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/stack"
)

// WhatsApp pauses a template (its signed message_template_status_update
// webhook, for the lease's business account): ingest publishes it, the
// recorder writes it into the lease's registry, and a message of that
// template then ends FAILED template_not_approved without a call to
// WhatsApp.
func TestTemplateRegistryRefusesBeforeTheCall(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	if err := s.TemplateStatus(ctx, stack.DemoBusinessAccount, "vehicle_delivery", "en_GB", "PAUSED", "UTILITY"); err != nil {
		t.Fatal(err)
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
