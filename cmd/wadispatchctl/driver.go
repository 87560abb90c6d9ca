package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// driver prints what a lease's record of a driver says about sending to
// them: opted out or not (and by what), unreachable, and a number change.
func (c *cli) driver(ctx context.Context, leaseID, number string) error {
	resp, err := c.rec.GetDriver(ctx, &wadispatchv1.GetDriverRequest{LeaseId: leaseID, DriverMobileNumber: number})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp)
	}
	if !resp.GetFound() {
		_, err := fmt.Fprintf(c.out, "lease %s has no record of the driver: nothing stops sending to them\n", leaseID)
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	optedOut := "no"
	if resp.GetOptedOut() {
		optedOut = "yes"
	}
	if src := resp.GetOptOutSource(); src != "" {
		optedOut += fmt.Sprintf(" (%s %q, %s)", src, resp.GetOptOutDetail(), timeString(resp.GetPreferenceAt()))
	}
	fmt.Fprintf(tw, "opted out\t%s\n", optedOut)
	reach := "yes"
	if resp.GetUnreachable() {
		reach = "no"
	}
	fmt.Fprintf(tw, "reachable\t%s (%d undeliverable since the driver last wrote; unreachable from 3)\n", reach, resp.GetUndeliverable())
	if to := resp.GetChangedTo(); to != "" {
		fmt.Fprintf(tw, "number changed to\t%s (%s): sends to this number fail number_changed\n", to, timeString(resp.GetChangedAt()))
	}
	if from := resp.GetChangedFrom(); from != "" {
		fmt.Fprintf(tw, "number changed from\t%s (%s)\n", from, timeString(resp.GetChangedAt()))
	}
	return tw.Flush()
}
