package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

const (
	statusSent      = wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT
	statusDelivered = wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED
	statusRead      = wadispatchv1.MessageStatus_MESSAGE_STATUS_READ
)

// pricedStatus is a status webhook stating Meta's per-message pricing.
func pricedStatus(wamid string, s wadispatchv1.MessageStatus, at time.Time, category, typ string) *wadispatchv1.StatusEvent {
	ev := statusEvent(wamid, s, at)
	ev.Pricing = &wadispatchv1.StatusPricing{PricingModel: "PMP", Category: category, Type: typ}
	return ev
}

// costLedger lists the pending cost-ledger entries of every lease.
func (e *env) costLedger(t testing.TB) []string {
	t.Helper()
	snaps, err := e.db.CollectionGroup("whatsappCostLedger").Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range snaps {
		out = append(out, s.Ref.Path)
	}
	return out
}

func (e *env) costs(t testing.TB, month string) *wadispatchv1.GetCostsResponse {
	t.Helper()
	e.fold(t)
	resp, err := e.rec.GetCosts(context.Background(), &wadispatchv1.GetCostsRequest{LeaseId: "l1", Month: month})
	if err != nil {
		t.Fatalf("GetCosts: %v", err)
	}
	return resp
}

func costTable(resp *wadispatchv1.GetCostsResponse) string {
	out := fmt.Sprint(resp.GetMessages())
	for _, l := range resp.GetLines() {
		out += fmt.Sprintf(" %s/%s:%d", l.GetCategory(), l.GetType(), l.GetMessages())
	}
	return out
}

// The pricing of a message's statuses, sent and delivered both stating
// it, each delivered twice, is kept on the message from the first and
// counted once in the month of that status (UTC); read, which states none,
// changes nothing of it, nor does a repeat after the fold.
func TestPricingCountedOncePerMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	e.record(t, sent(task, e.claim(t, task, 0).GetClaimId(), "wamid.P"))
	// 23:30 on 30 November at UTC-1 is December in UTC.
	at := time.Date(2026, 11, 30, 23, 30, 0, 0, time.FixedZone("-01", -3600))
	evs := []*wadispatchv1.StatusEvent{
		pricedStatus("wamid.P", statusSent, at, "utility", "regular"),
		pricedStatus("wamid.P", statusSent, at, "utility", "regular"),
		pricedStatus("wamid.P", statusDelivered, at.Add(time.Second), "utility", "regular"),
		pricedStatus("wamid.P", statusDelivered, at.Add(time.Second), "utility", "regular"),
		statusEvent("wamid.P", statusRead, at.Add(2*time.Second)),
	}
	for _, ev := range evs {
		e.apply(t, ev)
	}
	m := doc(t, e.db, messagePath("m1"))
	pricing, _ := m["pricing"].(map[string]any)
	if m["status"] != "READ" || pricing["category"] != "utility" || pricing["pricingModel"] != "PMP" || pricing["type"] != "regular" || !sameTime(pricing["firstSeenAt"], at) {
		t.Errorf("message document %v", m)
	}
	if got := len(e.costLedger(t)); got != 1 {
		t.Fatalf("%d cost-ledger entries, want 1", got)
	}
	if got := costTable(e.costs(t, "2026-12")); got != "1 utility/regular:1" {
		t.Errorf("costs of 2026-12: %s, want 1 utility/regular:1", got)
	}
	if got := costTable(e.costs(t, "2026-11")); got != "0" {
		t.Errorf("costs of 2026-11: %s, want none", got)
	}
	e.apply(t, evs[2])
	if got := costTable(e.costs(t, "2026-12")); got != "1 utility/regular:1" {
		t.Errorf("costs after a repeat and a second fold: %s", got)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_messages_priced_total", map[string]string{"category": "utility", "type": "regular", "pricing_model": "PMP"}); got != 1 {
		t.Errorf("priced metric %v, want 1", got)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_cost_ledger_folded_total", nil); got != 1 {
		t.Errorf("cost ledger folded metric %v, want 1", got)
	}
}

// However a priced status reaches its message (indexed; kept early on the
// state for its claim's result; kept by wamid until the result indexes it;
// a delivered after read, which moves nothing), the message is priced and
// counted once, and folds running at once count each entry once.
func TestPricingByEveryStatusPathFoldsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	at := time.Now().UTC().Truncate(time.Second)
	month := at.Format("2006-01")

	indexed := e.newMessage(t, "m1")
	e.record(t, sent(indexed, e.claim(t, indexed, 0).GetClaimId(), "wamid.1"))
	e.apply(t, pricedStatus("wamid.1", statusSent, at, "utility", "regular"))

	early := e.newMessage(t, "m2")
	c := e.claim(t, early, 0).GetClaimId()
	ev := callbackStatus(t, early, c, "wamid.2", statusSent, at)
	ev.Pricing = &wadispatchv1.StatusPricing{PricingModel: "PMP", Category: "marketing", Type: "regular"}
	if resp := e.apply(t, ev); !resp.GetKept() {
		t.Fatalf("early status not kept: %v", resp)
	}
	if got := len(e.costLedger(t)); got != 1 {
		t.Fatalf("%d cost-ledger entries before the early status's result, want 1", got)
	}
	e.record(t, sent(early, c, "wamid.2"))

	pending := e.newMessage(t, "m3")
	c = e.claim(t, pending, 0).GetClaimId()
	if resp := e.apply(t, pricedStatus("wamid.3", statusDelivered, at, "service", "free_customer_service")); !resp.GetKept() {
		t.Fatalf("status of an unrecorded wamid not kept: %v", resp)
	}
	e.record(t, sent(pending, c, "wamid.3"))

	late := e.newMessage(t, "m4")
	e.record(t, sent(late, e.claim(t, late, 0).GetClaimId(), "wamid.4"))
	e.apply(t, statusEvent("wamid.4", statusRead, at.Add(time.Second)))
	if resp := e.apply(t, pricedStatus("wamid.4", statusDelivered, at, "utility", "regular")); !resp.GetApplied() {
		t.Fatalf("delivered after read with pricing: %v", resp)
	}
	if m := doc(t, e.db, messagePath("m4")); m["status"] != "READ" || m["pricing"] == nil {
		t.Errorf("message read, then priced: %v", m)
	}

	if got := len(e.costLedger(t)); got != 4 {
		t.Fatalf("%d cost-ledger entries, want one per priced message (4)", got)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := e.svc.FoldLedgers(context.Background()); err != nil {
				t.Errorf("fold: %v", err)
			}
		})
	}
	wg.Wait()
	if got := costTable(e.costs(t, month)); got != "4 marketing/regular:1 service/free_customer_service:1 utility/regular:2" {
		t.Errorf("costs of %s: %s", month, got)
	}
	if left := e.costLedger(t); len(left) != 0 {
		t.Errorf("cost-ledger entries left after the folds: %v", left)
	}
}

func TestGetCostsRefusesABadMonth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, req := range []*wadispatchv1.GetCostsRequest{{LeaseId: "l1", Month: "2026-13"}, {LeaseId: "l1", Month: "december"}, {Month: "2026-12"}} {
		if _, err := e.rec.GetCosts(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("GetCosts %v: %v, want InvalidArgument", req, err)
		}
	}
}
