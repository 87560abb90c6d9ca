package stack_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/visn/wadispatch/tools/stack"
)

// Through the real processes, with every status webhook posted twice and
// in reverse order: each message's sent and delivered statuses both carry
// WhatsApp's pricing, the message document keeps it, and the lease's cost
// table of the month (wadispatchctl costs) counts each message once, in
// the category the simulator priced it in; the ledger is left empty and
// the priced-messages metric agrees.
func TestCostsCountedOnceThroughTheStack(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{SimulatorArgs: []string{"--reorder-webhooks", "--duplicate-webhooks"}})
	if err := s.OpenWindow(ctx, "+447911123401"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTemplateCategory(ctx, "vehicle_delivery", "marketing"); err != nil {
		t.Fatal(err)
	}
	cases := []stack.Case{demoCase(t, "msg-text", "cost-text"), demoCase(t, "msg-template", "cost-template")}
	for _, c := range cases {
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"cost-text": "service/free_customer_service", "cost-template": "marketing/regular"}
	for _, c := range cases {
		doc := waitForRead(t, ctx, fs, c.Path())
		p, _ := doc["pricing"].(map[string]any)
		if got := fmt.Sprintf("%v/%v", p["category"], p["type"]); got != want[c.ID] || p["pricingModel"] != "PMP" || p["firstSeenAt"] == nil {
			t.Errorf("%s: pricing %v, want %s (PMP)", c.ID, p, want[c.ID])
		}
	}
	waitForWebhooks(t, ctx, s)
	accepted, err := s.Accepted(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	month := time.Now().UTC().Format("2006-01")
	expected := stack.ExpectedCosts(accepted, month)
	resp, err := s.WaitForCosts(ctx, stack.DemoLease, month, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := stack.CostsOf(resp); fmt.Sprint(got) != fmt.Sprint(expected) || resp.GetMessages() != 2 {
		t.Errorf("costs of %s: %v (%d messages), want %v as the simulator priced them", month, got, resp.GetMessages(), expected)
	}
	table := ctl(t, ctx, s, "costs", stack.DemoLease, month)
	if !strings.Contains(table, "marketing") || !strings.Contains(table, "free_customer_service") || !strings.Contains(table, "total") {
		t.Errorf("wadispatchctl costs:\n%s", table)
	}
	if left, err := fs.Collection("leasecompany/" + stack.DemoLease + "/whatsappCostLedger").Documents(ctx).GetAll(); err != nil || len(left) != 0 {
		t.Errorf("cost ledger after the fold: %d entries (%v)", len(left), err)
	}
	priced := 0
	for series, v := range scrape(t, ctx, s.RecorderURL) {
		if strings.HasPrefix(series, "wadispatch_recorder_messages_priced_total{") {
			n, _ := strconv.Atoi(v)
			priced += n
		}
	}
	if priced != 2 {
		t.Errorf("wadispatch_recorder_messages_priced_total sums to %d, want 2", priced)
	}
}
