package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// costs prints a lease's cost table of a month: one line per category and
// type, then the total.
func (c *cli) costs(ctx context.Context, leaseID, month string) error {
	resp, err := c.rec.GetCosts(ctx, &wadispatchv1.GetCostsRequest{LeaseId: leaseID, Month: month})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp)
	}
	if len(resp.GetLines()) == 0 {
		_, err := fmt.Fprintf(c.out, "no priced messages for lease %s in %s\n", resp.GetLeaseId(), resp.GetMonth())
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CATEGORY\tTYPE\tMESSAGES")
	for _, l := range resp.GetLines() {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", l.GetCategory(), l.GetType(), l.GetMessages())
	}
	fmt.Fprintf(tw, "total\t\t%d\n", resp.GetMessages())
	return tw.Flush()
}
