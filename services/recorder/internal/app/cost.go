package app

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Pricing is what WhatsApp charges for a message, as its first status
// carrying a pricing object stated it (webhook statuses[].pricing): kept
// on the state and on the message document, and counted once in the
// lease's cost ledger.
type Pricing struct {
	PricingModel string `firestore:"pricingModel"`
	Category     string `firestore:"category"`
	Type         string `firestore:"type"`
	// FirstSeenAt is WhatsApp's time of that status; its UTC month is the
	// month the message counts in.
	FirstSeenAt time.Time `firestore:"firstSeenAt"`
}

// CostEntry is a message's entry in its lease's cost ledger, created by
// the commit that first prices the message and folded into the lease's
// cost table of Month (FoldLedgers), as the sent ledger is into the
// senders' counters.
type CostEntry struct {
	LeaseID string
	// Month is "2006-01", UTC.
	Month   string
	Pricing Pricing
}

// monthLayout is a cost table's month.
const monthLayout = "2006-01"

// pricingOf is ev's pricing as kept; nil when it states none.
func pricingOf(ev *wadispatchv1.StatusEvent, now time.Time) *Pricing {
	pr := ev.GetPricing()
	if pr == nil {
		return nil
	}
	return &Pricing{PricingModel: pr.GetPricingModel(), Category: pr.GetCategory(), Type: pr.GetType(), FirstSeenAt: eventTime(ev, now)}
}

// priced is p with the pricing ev states when st has none yet. WhatsApp
// prices a message once and states it on its sent and delivered statuses:
// the first one seen is kept, and repeats change nothing. A status that
// moves nothing else (a delivered after read, a repeat) still prices.
func priced(st *State, p statusPlan, ev *wadispatchv1.StatusEvent, now time.Time) statusPlan {
	pr := pricingOf(ev, now)
	if pr == nil || st.Pricing != nil {
		return p
	}
	if !p.apply {
		p = statusPlan{apply: true, reason: "pricing recorded (" + p.reason + ")", state: *st}
	}
	p.state.Pricing, p.state.UpdatedAt = pr, now
	p.message.Pricing = pr
	return p
}

// costEntry is the cost-ledger entry of the plan that turns before (nil:
// none) into after: one when after prices the message first. Decided here
// for every plan, whichever decision priced it (a status applied, statuses
// kept early applied with an outcome, a claim resolved), so a message is
// counted exactly in the commit that prices it, once.
func costEntry(ref dispatch.MessageRef, before, after *State) *CostEntry {
	if after == nil || after.Pricing == nil || before != nil && before.Pricing != nil {
		return nil
	}
	return &CostEntry{LeaseID: ref.LeaseID, Month: after.Pricing.FirstSeenAt.UTC().Format(monthLayout), Pricing: *after.Pricing}
}

// CostLine is one category and type of a cost table.
type CostLine struct {
	Category, Type string
	Messages       int64
}

// GetCosts implements wadispatchv1.RecorderServer: the lease's cost table
// of the month, as folded so far.
func (s *Service) GetCosts(ctx context.Context, req *wadispatchv1.GetCostsRequest) (*wadispatchv1.GetCostsResponse, error) {
	if err := checkDocID("lease_id", req.GetLeaseId()); err != nil {
		return nil, invalid("%v", err)
	}
	month, err := time.Parse(monthLayout, req.GetMonth())
	if err != nil {
		return nil, invalid("month %q: want YYYY-MM", dispatch.Clip(req.GetMonth(), 20))
	}
	lines, err := s.store.Costs(ctx, req.GetLeaseId(), month.Format(monthLayout))
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	resp := &wadispatchv1.GetCostsResponse{LeaseId: req.GetLeaseId(), Month: month.Format(monthLayout)}
	for _, l := range lines {
		resp.Lines = append(resp.Lines, &wadispatchv1.CostLine{Category: l.Category, Type: l.Type, Messages: l.Messages})
		resp.Messages += l.Messages
	}
	return resp, nil
}

// commit is Store.Update with the cost rule: the plan that first prices
// the message creates its cost-ledger entry (costEntry), and a committed
// one is counted in the priced-messages metric.
func (s *Service) commit(ctx context.Context, ref dispatch.MessageRef, op string, assume *Assumed, decide Decide) (time.Time, error) {
	var entry *CostEntry
	version, err := s.store.Update(ctx, ref, op, assume, func(st *State, exists bool, kept []*wadispatchv1.StatusEvent) (Plan, error) {
		p, err := decide(st, exists, kept)
		if err != nil {
			return p, err
		}
		p.Price = costEntry(ref, st, p.State)
		entry = p.Price
		return p, nil
	})
	if err == nil && entry != nil {
		pr := entry.Pricing
		s.m.priced.WithLabelValues(pr.Category, pr.PricingModel, pr.Type).Inc()
		logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": ref.Path(), "category": pr.Category,
			"pricingModel": pr.PricingModel, "type": pr.Type, "month": entry.Month}).Info("message priced; counted in the lease's cost ledger")
	}
	return version, err
}
