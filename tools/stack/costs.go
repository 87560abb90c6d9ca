package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// SetTemplateCategory has the simulator price the template's messages in
// category (marketing, utility, authentication), as Meta prices a
// template by the category it was approved in.
func (s *Stack) SetTemplateCategory(ctx context.Context, name, category string) error {
	return s.simulator(ctx, http.MethodPost, "/_sim/template-categories", map[string]string{"name": name, "category": category}, nil)
}

// Costs is `wadispatchctl costs leaseID month` as the API answers it.
func (s *Stack) Costs(ctx context.Context, leaseID, month string) (*wadispatchv1.GetCostsResponse, error) {
	out, err := s.Ctl(ctx, "costs", leaseID, month, "--json")
	if err != nil {
		return nil, err
	}
	var resp wadispatchv1.GetCostsResponse
	if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("wadispatchctl costs --json: %w", err)
	}
	return &resp, nil
}

// CostKey names a line of a cost table: "category/type".
func CostKey(category, typ string) string { return category + "/" + typ }

// ExpectedCosts is the cost table the messages WhatsApp accepted make, as
// the simulator priced them (each counted once), of the month their
// status's time falls in: acceptance, to the second, as the statuses'
// timestamps are, in UTC.
func ExpectedCosts(accepted []whatsappsim.Accepted, month string) map[string]int64 {
	out := map[string]int64{}
	for _, a := range accepted {
		if a.AcceptedAt.UTC().Format("2006-01") == month {
			out[CostKey(a.Pricing.Category, a.Pricing.Type)]++
		}
	}
	return out
}

// CostsOf is a cost table by line.
func CostsOf(resp *wadispatchv1.GetCostsResponse) map[string]int64 {
	out := map[string]int64{}
	for _, l := range resp.GetLines() {
		out[CostKey(l.GetCategory(), l.GetType())] = l.GetMessages()
	}
	return out
}

// WaitForCosts reads the lease's cost table of month until it counts want
// messages or ctx ends, and returns the last read: the recorder folds
// priced messages into it within a second or so
// (RECORDER_COUNTER_FOLD_INTERVAL).
func (s *Stack) WaitForCosts(ctx context.Context, leaseID, month string, want int64) (*wadispatchv1.GetCostsResponse, error) {
	for {
		resp, err := s.Costs(ctx, leaseID, month)
		if err != nil || resp.GetMessages() >= want {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// printCosts prints the demo lease's cost table of the month beside what
// the simulator's pricing of the messages it accepted expects; it reports
// whether they agree.
func (s *Stack) printCosts(ctx context.Context, w io.Writer, month string) (bool, error) {
	accepted, err := s.Accepted(ctx, "")
	if err != nil {
		return false, err
	}
	want := ExpectedCosts(accepted, month)
	var total int64
	for _, n := range want {
		total += n
	}
	resp, err := s.WaitForCosts(ctx, DemoLease, month, total)
	if err != nil {
		return false, err
	}
	got := CostsOf(resp)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "costs of %s in %s (wadispatchctl costs %s %s): %d messages priced\n", DemoLease, month, DemoLease, month, resp.GetMessages())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CATEGORY\tTYPE\tMESSAGES\tAS EXPECTED")
	ok := true
	for _, k := range keys {
		category, typ, _ := strings.Cut(k, "/")
		line := got[k] == want[k]
		ok = ok && line
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", category, typ, got[k], yesNo(line))
	}
	return ok, tw.Flush()
}
