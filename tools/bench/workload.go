// Package bench drives wadispatch with many chat messages, as the web app
// would write them, and reads back what became of each: the workload and the
// audit shared by the fault test (tools/faulttest) and the load harness
// (tools/cmd/wadispatch-bench).
package bench

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"

	"github.com/visn/wadispatch/pkg/dispatch"
)

// Fleet is the customers a workload writes for: leases sharing one business
// phone number, each with sending users and enquiries, one driver per
// enquiry.
type Fleet struct {
	PhoneNumberID string
	TokenRef      string
	Leases        []Lease
}

// Lease is one lease company.
type Lease struct {
	ID        string
	Users     []string
	Enquiries []Enquiry
}

// Enquiry is one enquiry and the driver it talks to (E.164).
type Enquiry struct {
	ID     string
	Driver string
}

// NewFleet makes leases × enquiries distinct drivers, with UK mobile
// numbers (+44 7911 1xxxxx).
func NewFleet(phoneNumberID, tokenRef string, leases, enquiriesPerLease, usersPerLease int) Fleet {
	f := Fleet{PhoneNumberID: phoneNumberID, TokenRef: tokenRef}
	driver := 0
	for l := range leases {
		lease := Lease{ID: fmt.Sprintf("lease-%02d", l)}
		for u := range usersPerLease {
			lease.Users = append(lease.Users, fmt.Sprintf("user-%02d-%02d", l, u))
		}
		for e := range enquiriesPerLease {
			lease.Enquiries = append(lease.Enquiries, Enquiry{
				ID:     fmt.Sprintf("enq-%02d-%03d", l, e),
				Driver: fmt.Sprintf("+447911%06d", 100000+driver),
			})
			driver++
		}
		f.Leases = append(f.Leases, lease)
	}
	return f
}

// Drivers lists every driver of the fleet.
func (f Fleet) Drivers() []string {
	var out []string
	for _, l := range f.Leases {
		for _, e := range l.Enquiries {
			out = append(out, e.Driver)
		}
	}
	return out
}

// Seed writes the leases with their WhatsApp configuration and the
// enquiries, as the web app would have before any message. (Plain writes:
// the client's BulkWriter.End was seen to hang when a second stack is
// seeded in the same process.)
func (f Fleet) Seed(ctx context.Context, fs *firestore.Client) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	set := func(path string, data map[string]any) {
		g.Go(func() error {
			if _, err := fs.Doc(path).Set(ctx, data); err != nil {
				return fmt.Errorf("seed %s: %w", path, err)
			}
			return nil
		})
	}
	for _, l := range f.Leases {
		set("leasecompany/"+l.ID, map[string]any{
			"name": "Leasing " + l.ID,
			"whatsappConfig": map[string]any{
				"phoneNumberId":    f.PhoneNumberID,
				"apiVersion":       "v23.0",
				"tokenRef":         f.TokenRef,
				"templateLanguage": "en_GB",
			},
		})
		for i, e := range l.Enquiries {
			set("leasecompany/"+l.ID+"/enquiries/"+e.ID, map[string]any{
				"accountId": fmt.Sprintf("acc-%d", i%7), "serviceUnitId": fmt.Sprintf("su-%d", i%3), "status": "open",
			})
		}
	}
	return g.Wait()
}

// Message is one chat message of a workload.
type Message struct {
	Ref    dispatch.MessageRef
	Driver string
	User   string
	Fields map[string]any
	// Suppressed: a marketing template to a driver who stopped the
	// lease's marketing messages before it was written. It must end
	// FAILED opted_out and never reach WhatsApp.
	Suppressed bool
}

// Path is the message's document path.
func (m Message) Path() string { return m.Ref.Path() }

// Message returns the i-th message of a run. Consecutive messages go to
// different leases and enquiries, so every driver gets a share; about one
// in textEvery is free-form text (0: templates only), always to the same
// drivers, whose 24-hour window must be open. The message id is written into the text or a template
// parameter, so whatever reaches WhatsApp names its document.
func (f Fleet) Message(run string, i, textEvery int) Message {
	lease := f.Leases[i%len(f.Leases)]
	round := i / len(f.Leases)
	enq := lease.Enquiries[round%len(lease.Enquiries)]
	user := lease.Users[round%len(lease.Users)]
	id := fmt.Sprintf("%s-%05d", run, i)
	fields := map[string]any{
		"driverMobileNumber": enq.Driver,
		"createdBy":          user,
		"source":             "web",
	}
	if textEvery > 0 && round%len(lease.Enquiries)%textEvery == 0 {
		fields["type"] = "text"
		fields["message"] = "Your vehicle is ready for collection. " + refTag(id)
	} else {
		fields["type"] = "template"
		fields["message"] = ""
		fields["templateType"] = "vehicle_update"
		fields["payload"] = map[string]any{"ref": id, "vehicle": "AB12 CDE"}
		fields["ETA"] = int64(15 + i%60)
	}
	return Message{
		Ref:    dispatch.MessageRef{LeaseID: lease.ID, EnquiryID: enq.ID, MessageID: id},
		Driver: enq.Driver,
		User:   user,
		Fields: fields,
	}
}

func refTag(id string) string { return "[ref " + id + "]" }

// refOfText finds the message id refTag wrote into a text body.
func refOfText(body string) string {
	_, rest, ok := strings.Cut(body, "[ref ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "]")
	return id
}

// MetricsPath is the sending user's performance metrics document.
func MetricsPath(leaseID, user string) string {
	return "leasecompany/" + leaseID + "/performanceMetrics/" + user
}

// Create writes msgs through the official client, one every
// 1/perSecond seconds, each in its own goroutine so a slow write does not
// hold back the next; it returns the first error.
func Create(ctx context.Context, fs *firestore.Client, msgs []Message, perSecond int) error {
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	errs := make(chan error, len(msgs))
	var wg sync.WaitGroup
	for _, m := range msgs {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// createdAt, as the web app is assumed to write it
			// (INGEST_RECONCILE_TIME_FIELD), lets ingest's reconciler find
			// a document whose event never came.
			fields := maps.Clone(m.Fields)
			fields["createdAt"] = firestore.ServerTimestamp
			if _, err := fs.Doc(m.Path()).Create(ctx, fields); err != nil {
				errs <- fmt.Errorf("create %s: %w", m.Path(), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
