package app

import (
	"context"
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/dispatch"
)

const (
	claimA = "0b6f5c1e-8d2a-4c3b-9e1f-7a6d5c4b3a21"
	claimB = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
)

// Each call carries the claim it is made under: after a released retry
// wait the send is claimed again, and the second call carries the new
// claim, so a status webhook of either call names its own.
func TestEachCallCarriesItsClaimInTheCallbackData(t *testing.T) {
	h := newHarness(t, claimsInTurn(sendAs(claimA), sendAs(claimB)), metaErr(500, 131000), ok("wamid.R"))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if len(h.requests) != 2 {
		t.Fatalf("%d calls, want 2", len(h.requests))
	}
	for i, claim := range []string{claimA, claimB} {
		got, _ := h.requests[i]["biz_opaque_callback_data"].(string)
		cb, err := dispatch.ParseCallback(got)
		if err != nil || cb.ClaimID != claim || cb.Ref.Path() != testPath {
			t.Errorf("call %d: biz_opaque_callback_data %q (%+v, %v), want claim %s and %s", i+1, got, cb, err, claim, testPath)
		}
	}
}

// A message whose ids leave no room in the field's 512 characters is sent
// without callback data, not refused.
func TestTooLongForACallbackIsSentWithout(t *testing.T) {
	h := newHarness(t, claimsInTurn(sendAs(claimA)), ok("wamid.L"))
	task := textTask()
	task.MessageId = strings.Repeat("m", 600)
	task.MessageDocId = "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + task.MessageId
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, task)), true, OutcomeSent)
	if len(h.requests) != 1 {
		t.Fatalf("%d calls, want 1", len(h.requests))
	}
	if v, ok := h.requests[0]["biz_opaque_callback_data"]; ok {
		t.Errorf("biz_opaque_callback_data %v sent", v)
	}
}
