package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// CostLedgerGroup is the collection group of the recorder's cost ledgers,
// one per lease.
const CostLedgerGroup = "whatsappCostLedger"

// Pricing is WhatsApp's pricing of a message as its document keeps it.
type Pricing struct {
	Category, Type string
	// Month is the UTC month of the status that stated it.
	Month string
}

func pricingOf(data map[string]any) *Pricing {
	m, ok := data["pricing"].(map[string]any)
	if !ok {
		return nil
	}
	p := &Pricing{}
	p.Category, _ = m["category"].(string)
	p.Type, _ = m["type"].(string)
	if at, ok := m["firstSeenAt"].(time.Time); ok {
		p.Month = at.UTC().Format("2006-01")
	}
	return p
}

// costTables are cost tables by document (leasecompany/{lease}/whatsappCosts/{month}),
// each by "category/type".
type costTables map[string]map[string]int64

// wantCosts are the cost tables the priced documents make: each message
// once, in its lease's table of its month.
func wantCosts(msgs []Message, docs map[string]Doc) costTables {
	out := costTables{}
	for _, m := range msgs {
		p := docs[m.Path()].Pricing
		if p == nil {
			continue
		}
		path := "leasecompany/" + m.Ref.LeaseID + "/whatsappCosts/" + p.Month
		if out[path] == nil {
			out[path] = map[string]int64{}
		}
		out[path][p.Category+"/"+p.Type]++
	}
	return out
}

// readCosts reads every cost table of the leases.
func readCosts(ctx context.Context, fs *firestore.Client, leases []string) (costTables, error) {
	out := costTables{}
	for _, lease := range leases {
		snaps, err := fs.Collection("leasecompany/" + lease + "/whatsappCosts").Documents(ctx).GetAll()
		if err != nil {
			return nil, fmt.Errorf("read the cost tables of %s: %w", lease, err)
		}
		for _, snap := range snaps {
			lines := map[string]int64{}
			categories, _ := snap.Data()["categories"].(map[string]any)
			for category, v := range categories {
				c, _ := v.(map[string]any)
				types, _ := c["types"].(map[string]any)
				for typ, n := range types {
					if n, _ := n.(int64); n != 0 {
						lines[category+"/"+typ] = n
					}
				}
			}
			out["leasecompany/"+lease+"/whatsappCosts/"+snap.Ref.ID] = lines
		}
	}
	return out, nil
}

// costDiffs are the tables where got and want differ, one line each.
func costDiffs(got, want costTables) []string {
	var out []string
	for _, path := range slices.Sorted(maps.Keys(mergeKeys(got, want))) {
		g, w := got[path], want[path]
		if !maps.Equal(g, w) {
			out = append(out, fmt.Sprintf("%s counts %v, the distinct priced messages %v", path, g, w))
		}
	}
	return out
}

func mergeKeys(a, b costTables) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// auditCosts checks the cost ledger: each lease's cost table of a month
// counts exactly the distinct messages whose documents are priced in that
// month, by category and type (none counted twice, none missing), and
// each priced message is priced as WhatsApp (the simulator) priced it.
// Statuses may still be on their way and the ledger is folded within a
// second or so, so it reads until the tables agree with the documents and
// the ledger is empty, for at most ledgerWait; a message counted twice
// never agrees. What it finds goes into r.
func auditCosts(ctx context.Context, fs *firestore.Client, msgs []Message, acceptedOf map[string][]whatsappsim.Accepted, r *Report) error {
	paths := make([]string, len(msgs))
	leaseSet := map[string]bool{}
	for i, m := range msgs {
		paths[i] = m.Path()
		leaseSet[m.Ref.LeaseID] = true
	}
	leases := slices.Sorted(maps.Keys(leaseSet))
	deadline := time.Now().Add(ledgerWait)
	for {
		docs, err := ReadDocs(ctx, fs, paths)
		if err != nil {
			return err
		}
		got, err := readCosts(ctx, fs, leases)
		if err != nil {
			return err
		}
		want := wantCosts(msgs, docs)
		diffs := costDiffs(got, want)
		left, err := fs.CollectionGroup(CostLedgerGroup).Documents(ctx).GetAll()
		if err != nil {
			return fmt.Errorf("read the cost ledgers: %w", err)
		}
		if (len(diffs) == 0 && len(left) == 0) || time.Now().After(deadline) {
			for _, d := range diffs {
				r.violate("%s", d)
			}
			if len(left) > 0 {
				r.violate("%d cost-ledger entries not folded into their cost tables within %s", len(left), ledgerWait)
			}
			r.CostTables = len(got)
			for _, m := range msgs {
				p := docs[m.Path()].Pricing
				if p == nil {
					continue
				}
				r.Priced++
				acc := acceptedOf[m.Ref.MessageID]
				switch {
				case len(acc) == 0:
					r.violate("%s is priced (%s/%s) but WhatsApp accepted nothing for it", m.Path(), p.Category, p.Type)
				case !slices.ContainsFunc(acc, func(a whatsappsim.Accepted) bool {
					return a.Pricing.Category == p.Category && a.Pricing.Type == p.Type
				}):
					r.violate("%s is priced %s/%s, WhatsApp priced it %s/%s", m.Path(), p.Category, p.Type, acc[0].Pricing.Category, acc[0].Pricing.Type)
				case p.Month == "":
					r.violate("%s is priced without its status's time", m.Path())
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
