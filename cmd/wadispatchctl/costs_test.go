package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// costs prints the lease's month as the recorder folded it: a table, or
// the API's answer as JSON; a month with nothing priced says so.
func TestCosts(t *testing.T) {
	rec, addr := recorderFor(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for _, s := range []wadispatchv1.MessageStatus{wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED} {
		ev := &wadispatchv1.StatusEvent{WhatsappMessageId: "wamid.m2", Status: s, Timestamp: timestamppb.New(at),
			Pricing: &wadispatchv1.StatusPricing{PricingModel: "PMP", Category: "utility", Type: "regular"}}
		if _, err := rec.Status(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := rec.Fold(ctx); err != nil || n != 2 { // m2's send and its pricing
		t.Fatalf("fold: %d %v", n, err)
	}
	env := map[string]string{"WADISPATCH_RECORDER_ADDR": addr}
	code, out, errOut := ctl(t, env, "costs", "l1", "2026-12")
	if code != 0 || !strings.Contains(out, "CATEGORY") || !strings.Contains(out, "utility   regular  1") || !strings.Contains(out, "total") {
		t.Errorf("costs: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ctl(t, env, "costs", "l1", "2026-12", "--json")
	var resp wadispatchv1.GetCostsResponse
	if code != 0 || protojson.Unmarshal([]byte(out), &resp) != nil || resp.GetMessages() != 1 || len(resp.GetLines()) != 1 || resp.GetLines()[0].GetCategory() != "utility" {
		t.Errorf("costs --json: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl(t, env, "costs", "l1", "2026-11")
	if code != 0 || !strings.Contains(out, "no priced messages for lease l1 in 2026-11") {
		t.Errorf("costs of a month with none: %d\n%s", code, out)
	}
	code, _, errOut = ctl(t, env, "costs", "l1", "December")
	if code != 1 || !strings.Contains(errOut, "InvalidArgument") {
		t.Errorf("costs of a bad month: %d %s", code, errOut)
	}
	if code, _, errOut := ctl(t, env, "costs", "l1"); code != 2 || !strings.Contains(errOut, "costs takes 2 argument(s)") {
		t.Errorf("costs without a month: %d %s", code, errOut)
	}
}
