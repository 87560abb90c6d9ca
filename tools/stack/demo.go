package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// The demo's lease, enquiry and sending user.
const (
	DemoLease   = "lease-demo"
	DemoEnquiry = "enq-1001"
	DemoUser    = "user-anna"
)

// Case is one chat message the demo writes as the V-Customer, and what
// should become of it.
type Case struct {
	Name   string
	ID     string
	Fields map[string]any
	// WantStatus is READ (sent, then delivered and read by the simulated
	// driver, as WhatsApp's webhooks report), FAILED (refused by WhatsApp,
	// or by ingest for a reason the V-Customer can correct), or "" when the
	// message is not the pipeline's to send and its document stays as written.
	WantStatus string
	// WantReason must appear in the failure reason (the document's) or,
	// for a message left alone, in ingest's log line.
	WantReason string
}

// Path is the case's chatMessages document.
func (c Case) Path() string {
	return dispatch.MessageRef{LeaseID: DemoLease, EnquiryID: DemoEnquiry, MessageID: c.ID}.Path()
}

// DemoCases are the messages of `make demo`: one for each thing the flow
// does with a message.
func DemoCases() []Case {
	msg := func(driver string, extra map[string]any) map[string]any {
		m := map[string]any{
			"message":            "Your vehicle is ready for collection.",
			"type":               "text",
			"driverMobileNumber": driver,
			"createdBy":          DemoUser,
			// The web app's write time, by which ingest's reconciler finds
			// messages whose event never came (INGEST_RECONCILE_TIME_FIELD).
			"createdAt": firestore.ServerTimestamp,
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []Case{
		{Name: "text", ID: "msg-text", WantStatus: "READ",
			Fields: msg("+44 7911 123401", nil)},
		{Name: "interactive buttons", ID: "msg-interactive", WantStatus: "READ",
			Fields: msg("+447911123409", map[string]any{
				"type": "interactive", "message": "Can you collect it at 10:30?",
				"interactive": map[string]any{"kind": "button", "buttons": []any{
					map[string]any{"id": "collect-yes", "title": "Yes"},
					map[string]any{"id": "collect-later", "title": "Later today"},
				}},
			})},
		{Name: "template, payload, ETA", ID: "msg-template", WantStatus: "READ",
			Fields: msg("07911 123402", map[string]any{
				"type": "template", "message": "", "templateType": "vehicle_delivery",
				"payload": map[string]any{"vehicle": "AB12 CDE", "slot": "10:00"}, "ETA": 45,
				// The payload of its quick-reply button, which the driver's tap returns.
				"templateButtons": []any{"eta_late"},
			})},
		{Name: "from the driver", ID: "msg-driver", WantReason: "from_driver",
			Fields: msg("+447911123403", map[string]any{"source": "driver", "message": "On my way"})},
		{Name: "migrated", ID: "msg-migrated", WantReason: "migrated",
			Fields: msg("+447911123404", map[string]any{"isMigrated": true})},
		{Name: "invalid number", ID: "msg-bad-number", WantStatus: "FAILED", WantReason: "invalid_data: driverMobileNumber",
			Fields: msg("12345", nil)},
		{Name: "no text", ID: "msg-no-text", WantStatus: "FAILED", WantReason: "invalid_data: message",
			Fields: msg("+447911123405", map[string]any{"message": ""})},
		{Name: "WhatsApp refuses", ID: "msg-undeliverable", WantStatus: "FAILED", WantReason: "undeliverable (WhatsApp error 131026)",
			Fields: msg("+447911123406", nil)},
		{Name: "text, driver never wrote", ID: "msg-no-window", WantStatus: "FAILED", WantReason: "outside_24h_window",
			Fields: msg("+447911123407", nil)},
		{Name: "template paused", ID: "msg-template-paused", WantStatus: "FAILED", WantReason: "template_not_approved",
			Fields: msg("+447911123411", map[string]any{
				"type": "template", "message": "", "templateType": demoPausedTemplate, "payload": map[string]any{"vehicle": "AB12 CDE"},
			})},
		{Name: "opted-out driver", ID: "msg-opted-out", WantStatus: "FAILED", WantReason: "opted_out",
			Fields: msg(demoOptedOutDriver, map[string]any{
				"type": "template", "message": "", "templateType": demoOfferTemplate, "payload": map[string]any{"offer": "20% off servicing"},
			})},
	}
}

// Outcome is what became of a Case.
type Outcome struct {
	Case       Case
	Status     string
	WAMID      string
	Reason     string
	CreatedAt  time.Time
	CalledAt   time.Time
	RecordedAt time.Time
	// ReadSeenAt is when the READ status was written.
	ReadSeenAt time.Time
	OK         bool
}

// SeedLease writes the demo lease with its WhatsApp configuration and the
// enquiry the messages belong to, as the web app would have.
func (s *Stack) SeedLease(ctx context.Context, fs *firestore.Client) error {
	lease := map[string]any{
		"name": "Demo Leasing Ltd",
		"whatsappConfig": map[string]any{
			"phoneNumberId":     s.opts.PhoneNumberID,
			"apiVersion":        "v23.0",
			"tokenRef":          s.TokenRef,
			"templateLanguage":  "en_GB",
			"businessAccountId": DemoBusinessAccount,
		},
	}
	if _, err := fs.Doc("leasecompany/"+DemoLease).Set(ctx, lease); err != nil {
		return fmt.Errorf("seed lease: %w", err)
	}
	enquiry := map[string]any{"accountId": "acc-77", "serviceUnitId": "su-5", "status": "open"}
	if _, err := fs.Doc("leasecompany/"+DemoLease+"/enquiries/"+DemoEnquiry).Set(ctx, enquiry); err != nil {
		return fmt.Errorf("seed enquiry: %w", err)
	}
	return nil
}

// Firestore returns a client of the stack's Firestore emulator.
func (s *Stack) Firestore(ctx context.Context, database string) (*firestore.Client, error) {
	return firestore.NewClientWithDatabase(ctx, s.opts.Project, database, emulatorOptions(s.FirestoreAddr)...)
}

// simulator calls the WhatsApp simulator's admin API.
func (s *Stack) simulator(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.SimulatorURL+path, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("simulator %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// OpenWindow has driver (E.164) write to the business number, which opens
// WhatsApp's 24-hour window for free-form messages to them, and waits until the
// pipeline has recorded it (simulator → ingest's webhook → recorder →
// ancillary whatsapp/{driver}), so that a text created next is sent.
func (s *Stack) OpenWindow(ctx context.Context, driver string) error {
	since := time.Now().Truncate(time.Second)
	if _, err := s.Reply(ctx, driver, "Hi, any news?", ""); err != nil {
		return err
	}
	return s.WaitForWindow(ctx, driver, since)
}

// Reply has driver (E.164) write text to the business number, quoting the
// message contextWAMID when set, as WhatsApp would deliver it; it returns
// the inbound message's wamid.
func (s *Stack) Reply(ctx context.Context, driver, text, contextWAMID string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := s.simulator(ctx, http.MethodPost, "/_sim/inbound", map[string]string{
		"phone_number_id": s.opts.PhoneNumberID, "from": strings.TrimPrefix(driver, "+"), "text": text, "context_id": contextWAMID,
	}, &out)
	return out.ID, err
}

// ReplyPart has driver (E.164) send the business number a message of any
// type: part is the type's object as Meta's webhook shows it (a button
// reply, a reaction, a location...), quoting contextWAMID when set. It
// returns the inbound message's wamid.
func (s *Stack) ReplyPart(ctx context.Context, driver, typ string, part any, contextWAMID string) (string, error) {
	raw, err := json.Marshal(part)
	if err != nil {
		return "", fmt.Errorf("inbound %s part: %w", typ, err)
	}
	var out struct {
		ID string `json:"id"`
	}
	err = s.simulator(ctx, http.MethodPost, "/_sim/inbound", whatsappsim.Inbound{
		PhoneNumberID: s.opts.PhoneNumberID, From: strings.TrimPrefix(driver, "+"), Type: typ, Part: raw, ContextID: contextWAMID,
	}, &out)
	return out.ID, err
}

// WaitForWindow waits until the recorder has recorded a message from driver
// to the stack's business number sent at or after since (WhatsApp's
// timestamps are whole seconds).
func (s *Stack) WaitForWindow(ctx context.Context, driver string, since time.Time) error {
	anc, err := s.ancillary(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	path := firestore.FieldPath{"lastInboundAtByPhoneNumberId", s.opts.PhoneNumberID}
	for {
		snap, err := anc.Doc("whatsapp/" + driver).Get(ctx)
		if err == nil {
			if v, _ := snap.DataAtPath(path); v != nil {
				if t, ok := v.(time.Time); ok && !t.Before(since) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the window of %s was not recorded (webhook → ingest → recorder): %w", driver, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ancillary is a client of the stack's ancillary database, kept open.
func (s *Stack) ancillary(ctx context.Context) (*firestore.Client, error) {
	s.ancMu.Lock()
	defer s.ancMu.Unlock()
	if s.anc == nil {
		c, err := s.Firestore(ctx, "ancillary")
		if err != nil {
			return nil, err
		}
		s.anc = c
	}
	return s.anc, nil
}

// AddFault installs a simulator fault (see pkg/testinfra/whatsappsim's README).
func (s *Stack) AddFault(ctx context.Context, fault map[string]any) error {
	return s.simulator(ctx, http.MethodPost, "/_sim/faults", fault, nil)
}

// SimulatorCounts are the simulator's counters (calls, rejections by code,
// webhooks delivered).
func (s *Stack) SimulatorCounts(ctx context.Context) (whatsappsim.Counts, error) {
	var c whatsappsim.Counts
	err := s.simulator(ctx, http.MethodGet, "/_sim/counts", nil, &c)
	return c, err
}

// Accepted lists what the simulator accepted for recipient (E.164).
func (s *Stack) Accepted(ctx context.Context, recipient string) ([]whatsappsim.Accepted, error) {
	var out struct {
		Messages []whatsappsim.Accepted `json:"messages"`
	}
	err := s.simulator(ctx, http.MethodGet, "/_sim/messages?to="+strings.TrimPrefix(recipient, "+"), nil, &out)
	return out.Messages, err
}

// RunDemo acts as the V-Customer: seeds a lease, writes DemoCases, waits
// for each to settle and prints what happened. It reports whether every
// outcome was the expected one.
func (s *Stack) RunDemo(ctx context.Context, w io.Writer) (bool, error) {
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		return false, err
	}
	defer fs.Close()
	anc, err := s.Firestore(ctx, "ancillary")
	if err != nil {
		return false, err
	}
	defer anc.Close()

	fmt.Fprintln(w, "seeding lease", DemoLease, "with a WhatsApp configuration")
	if err := s.SeedLease(ctx, fs); err != nil {
		return false, err
	}
	// Free-form messages (text, interactive) go to drivers who wrote to us
	// today, as WhatsApp requires; the last one is then refused by WhatsApp
	// as undeliverable. OpenWindow returns once the pipeline knows, so the
	// sender sees it.
	fmt.Fprintln(w, "drivers +447911123401, +447911123409 and +447911123406 write to the business number (24-hour window opens)")
	for _, driver := range []string{"+447911123401", "+447911123409", "+447911123406"} {
		if err := s.OpenWindow(ctx, driver); err != nil {
			return false, err
		}
	}
	if err := s.AddFault(ctx, map[string]any{"kind": "error", "code": 131026, "to": "447911123406"}); err != nil {
		return false, err
	}
	fmt.Fprintf(w, "WhatsApp tells the pipeline: template %s is PAUSED, %s is an APPROVED MARKETING template, driver %s wrote STOP\n",
		demoPausedTemplate, demoOfferTemplate, demoOptedOutDriver)
	if err := s.SeedWhatsAppState(ctx, fs); err != nil {
		return false, err
	}

	cases := DemoCases()
	outcomes := make([]Outcome, len(cases))
	for i, c := range cases {
		wr, err := fs.Doc(c.Path()).Create(ctx, c.Fields)
		if err != nil {
			return false, fmt.Errorf("create %s: %w", c.Path(), err)
		}
		outcomes[i] = Outcome{Case: c, CreatedAt: wr.UpdateTime}
		fmt.Fprintf(w, "created %s (%s)\n", c.Path(), c.Name)
	}

	settleCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i := range outcomes {
		if err := s.settle(settleCtx, fs, &outcomes[i]); err != nil {
			outcomes[i].Reason = err.Error()
		}
		fmt.Fprintf(w, "settled %s: %s\n", outcomes[i].Case.Name, orDash(outcomes[i].Status))
	}

	ok := true
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE\tSTATUS\tWHATSAPP ID OR REASON\tTO WHATSAPP CALL\tTO RECORDED\tTO READ\tAS EXPECTED")
	sent := 0
	for _, o := range outcomes {
		ok = ok && o.OK
		if o.WAMID != "" {
			sent++
		}
		detail := o.WAMID
		if detail == "" {
			detail = o.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Case.Name, orDash(o.Status), dispatch.Clip(detail, 80),
			since(o.CreatedAt, o.CalledAt), since(o.CreatedAt, o.RecordedAt), since(o.CreatedAt, o.ReadSeenAt), yesNo(o.OK))
	}
	if err := tw.Flush(); err != nil {
		return false, err
	}

	for _, o := range outcomes {
		var answered bool
		switch {
		case o.WAMID == "":
			continue
		case o.Case.ID == "msg-text":
			answered, err = s.demoReply(settleCtx, fs, w, o.WAMID)
		case o.Case.ID == "msg-template":
			answered, err = s.demoTap(settleCtx, fs, w, o)
		case o.Case.ID == "msg-interactive":
			answered, err = s.demoPhoto(settleCtx, fs, w)
		default:
			continue
		}
		if err != nil {
			return false, err
		}
		ok = ok && answered
	}

	fmt.Fprintln(w)
	metricsPath := "leasecompany/" + DemoLease + "/performanceMetrics/" + DemoUser
	count, err := foldedCount(settleCtx, fs, metricsPath, int64(sent))
	if err != nil {
		return false, err
	}
	countOK := count == int64(sent)
	ok = ok && countOK
	fmt.Fprintf(w, "%s numberOfWhatsappMessagesSent = %d (messages sent: %d) %s\n", metricsPath, count, sent, yesNo(countOK))
	costsOK, err := s.printCosts(settleCtx, w, time.Now().UTC().Format("2006-01"))
	if err != nil {
		return false, err
	}
	ok = ok && costsOK

	for _, o := range outcomes {
		if o.WAMID == "" {
			continue
		}
		driver, err := driverOf(ctx, fs, o.Case.Path())
		if err != nil {
			return false, err
		}
		path := dispatch.AncillaryPath(driver, DemoEnquiry)
		ids, err := s.WaitForAncillaryID(ctx, anc, path, o.WAMID)
		if err != nil {
			fmt.Fprintf(w, "ancillary %s: %v\n", path, err)
		}
		has := contains(ids, o.WAMID)
		ok = ok && has
		fmt.Fprintf(w, "ancillary %s arrayOfWhatsappMessageIds = %v %s\n", path, ids, yesNo(has))
	}
	return ok, nil
}

// settle waits until the case's message reaches its final state and fills o.
func (s *Stack) settle(ctx context.Context, fs *firestore.Client, o *Outcome) error {
	c := o.Case
	if c.WantStatus == "" {
		reason, err := s.waitForRejection(ctx, c.Path())
		o.Reason = reason
		o.OK = err == nil && strings.Contains(reason, c.WantReason)
		if err == nil {
			// Nothing may reach WhatsApp or the document for it.
			snap, gerr := fs.Doc(c.Path()).Get(ctx)
			if gerr != nil {
				o.OK = false
				return gerr
			}
			if st, _ := snap.DataAt("status"); st != nil {
				o.Status = fmt.Sprint(st)
				o.OK = false
			}
		}
		return err
	}
	it := fs.Doc(c.Path()).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", c.Path(), err)
		}
		status, _ := snap.DataAt("status")
		o.Status = fmt.Sprint(orEmpty(status))
		if !dispatch.Status(o.Status).Final() {
			continue
		}
		if o.RecordedAt.IsZero() {
			o.RecordedAt = snap.UpdateTime
		}
		// A sent message goes on to DELIVERED and READ as the simulator's
		// webhooks come in through ingest and the recorder.
		if c.WantStatus == "READ" && (o.Status == "SENT" || o.Status == "DELIVERED") {
			continue
		}
		if o.Status == "READ" {
			o.ReadSeenAt = snap.UpdateTime
		}
		if id, _ := snap.DataAt("whatsappMessageId"); id != nil {
			o.WAMID = fmt.Sprint(id)
		}
		if r, _ := snap.DataAt("failureReason"); r != nil {
			o.Reason = fmt.Sprint(r)
			// A refusal says what to correct; WhatsApp's refusal has its code.
			if why, _ := snap.DataAt("statusReason"); why != nil {
				o.Reason += ": " + fmt.Sprint(why)
			}
			if code, _ := snap.DataAt("whatsappError.code"); code != nil && code != int64(0) {
				o.Reason += fmt.Sprintf(" (WhatsApp error %v)", code)
			}
		}
		driver, err := driverOf(ctx, fs, c.Path())
		if err != nil {
			return err
		}
		if driver == "" {
			// Refused by ingest: the state names no driver, the document
			// holds what the V-Customer wrote.
			driver, _ = c.Fields["driverMobileNumber"].(string)
		}
		var accepted []whatsappsim.Accepted
		if strings.HasPrefix(driver, "+") {
			if accepted, err = s.Accepted(ctx, driver); err != nil {
				return err
			}
		}
		switch c.WantStatus {
		case "READ":
			delivered, _ := snap.DataAt("deliveredAt")
			read, _ := snap.DataAt("readAt")
			_, hasDelivered := delivered.(time.Time)
			_, hasRead := read.(time.Time)
			o.OK = o.WAMID != "" && o.Status == "READ" && hasDelivered && hasRead
		default:
			o.OK = o.Status == c.WantStatus && strings.Contains(o.Reason, c.WantReason)
			if o.WAMID == "" {
				// Refused or never tried: WhatsApp accepted nothing for it.
				o.OK = o.OK && len(accepted) == 0
			}
		}
		if o.WAMID != "" {
			// The first final snapshot seen may already be DELIVERED or
			// READ; the index document is created with the result (or
			// earlier, by a status kept before it, rare in the demo).
			if idx, err := fs.Doc(dispatch.IndexPath(o.WAMID)).Get(ctx); err == nil {
				o.RecordedAt = idx.CreateTime
			}
			for _, a := range accepted {
				if a.WAMID == o.WAMID {
					o.CalledAt = a.AcceptedAt
				}
			}
		}
		return nil
	}
}

// demoReply has the text message's driver answer it, quoting it, and
// checks the answer lands in the enquiry as a chatMessages document with
// source "driver" that ingest skips: nothing is claimed or sent for it.
func (s *Stack) demoReply(ctx context.Context, fs *firestore.Client, w io.Writer, quoted string) (bool, error) {
	const driver, text = "+447911123401", "Thanks, on my way"
	fmt.Fprintf(w, "\ndriver %s replies %q, quoting %s\n", driver, text, quoted)
	inID, err := s.Reply(ctx, driver, text, quoted)
	if err != nil {
		return false, err
	}
	path := dispatch.MessageRef{LeaseID: DemoLease, EnquiryID: DemoEnquiry, MessageID: dispatch.DriverReplyDocID(inID)}.Path()
	reply, err := waitForDocument(ctx, fs, path)
	if err != nil {
		return false, err
	}
	reason, err := s.waitForRejection(ctx, path)
	if err != nil {
		return false, err
	}
	_, stateErr := fs.Doc(path + "/dispatch/state").Get(ctx)
	ok := reply["source"] == "driver" && reply["message"] == text && reply["whatsappMessageId"] == inID &&
		strings.Contains(reason, "from_driver") && status.Code(stateErr) == codes.NotFound
	fmt.Fprintf(w, "reply written at %s (source=%v), ingest: %s, nothing sent %s\n", path, reply["source"], reason, yesNo(ok))
	return ok, nil
}

// demoTap has the template's driver tap its quick-reply button "Running
// late", which WhatsApp answers with the payload the template was sent with
// (its templateButtons), and checks the tap lands in the enquiry with that
// payload and the message it answers.
func (s *Stack) demoTap(ctx context.Context, fs *firestore.Client, w io.Writer, tapped Outcome) (bool, error) {
	const driver = "+447911123402"
	payload := fmt.Sprint(tapped.Case.Fields["templateButtons"].([]any)[0])
	fmt.Fprintf(w, "\ndriver %s taps the quick-reply button %q of %s\n", driver, "Running late", tapped.WAMID)
	inID, err := s.ReplyPart(ctx, driver, "button", map[string]string{"text": "Running late", "payload": payload}, tapped.WAMID)
	if err != nil {
		return false, err
	}
	path := dispatch.MessageRef{LeaseID: DemoLease, EnquiryID: DemoEnquiry, MessageID: dispatch.DriverReplyDocID(inID)}.Path()
	tap, err := waitForDocument(ctx, fs, path)
	if err != nil {
		return false, err
	}
	reply, _ := tap["reply"].(map[string]any)
	answers, _ := tap["context"].(map[string]any)
	ok := tap["type"] == "button" && reply["id"] == payload && reply["title"] == "Running late" && answers["messagePath"] == tapped.Case.Path()
	fmt.Fprintf(w, "tap written at %s: type=%v reply={id: %v, title: %v}, answers %v %s\n", path, tap["type"], reply["id"], reply["title"], answers["messagePath"], yesNo(ok))
	return ok, nil
}

// demoPhoto has the interactive message's driver send a photo of the
// van, and shows where it ended: the reply's document, and the object
// in Cloud Storage, whose bytes must be the photo's.
func (s *Stack) demoPhoto(ctx context.Context, fs *firestore.Client, w io.Writer) (bool, error) {
	const driver, caption = "+447911123409", "the scratch on the door"
	photo := bytes.Repeat([]byte("\xff\xd8 a photo of the van's door "), 4000)
	media, err := s.AddMedia(ctx, "image/jpeg", photo)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(w, "\ndriver %s sends a photo (%d bytes, image/jpeg, caption %q)\n", driver, len(photo), caption)
	inID, err := s.ReplyMedia(ctx, driver, "image", media.ID, caption)
	if err != nil {
		return false, err
	}
	path := dispatch.MessageRef{LeaseID: DemoLease, EnquiryID: DemoEnquiry, MessageID: dispatch.DriverReplyDocID(inID)}.Path()
	reply, err := waitForDocumentWhere(ctx, fs, path, func(d map[string]any) bool {
		m, _ := d["media"].(map[string]any)
		return m["status"] == "stored" || m["status"] == "failed"
	})
	if err != nil {
		return false, err
	}
	m, _ := reply["media"].(map[string]any)
	uri, _ := m["uri"].(string)
	sum := sha256.Sum256(photo)
	stored, err := s.readObject(ctx, uri)
	if err != nil {
		fmt.Fprintf(w, "object %s: %v\n", uri, err)
	}
	ok := m["status"] == "stored" && bytes.Equal(stored, photo) && m["sha256"] == hex.EncodeToString(sum[:]) && reply["message"] == caption
	fmt.Fprintf(w, "photo written at %s: media.status=%v\n  object %s, %v bytes, %v, sha256 %v %s\n",
		path, m["status"], orDash(uri), m["size"], m["mimeType"], m["sha256"], yesNo(ok))
	return ok, nil
}

// readObject reads the object of a gs:// URI from the stack's Cloud
// Storage emulator.
func (s *Stack) readObject(ctx context.Context, uri string) ([]byte, error) {
	bucket, name, ok := strings.Cut(strings.TrimPrefix(uri, "gs://"), "/")
	if !ok || !strings.HasPrefix(uri, "gs://") {
		return nil, fmt.Errorf("not a gs:// URI: %q", uri)
	}
	gcs, err := s.Storage(ctx)
	if err != nil {
		return nil, err
	}
	defer gcs.Close()
	r, err := gcs.Bucket(bucket).Object(name).NewReader(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// waitForDocument waits until the document at path exists and returns it.
func waitForDocument(ctx context.Context, fs *firestore.Client, path string) (map[string]any, error) {
	return waitForDocumentWhere(ctx, fs, path, func(map[string]any) bool { return true })
}

// waitForDocumentWhere waits until the document at path exists and cond
// holds of it, and returns it.
func waitForDocumentWhere(ctx context.Context, fs *firestore.Client, path string, cond func(map[string]any) bool) (map[string]any, error) {
	it := fs.Doc(path).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", path, err)
		}
		if snap.Exists() && cond(snap.Data()) {
			return snap.Data(), nil
		}
	}
}

// driverOf is the E.164 number the pipeline sent the message at path to,
// from the recorder's state next to the message; "" for a message ingest
// refused, whose state has none.
func driverOf(ctx context.Context, fs *firestore.Client, path string) (string, error) {
	snap, err := fs.Doc(path + "/dispatch/state").Get(ctx)
	if err != nil {
		return "", fmt.Errorf("dispatch state of %s: %w", path, err)
	}
	d, _ := snap.Data()["driverMobileNumber"].(string)
	return d, nil
}

// waitForRejection waits for ingest's log line saying why it did not send
// the message at path, and returns the reason.
func (s *Stack) waitForRejection(ctx context.Context, path string) (string, error) {
	for {
		if reason, ok := rejectionIn(s.LogPath(Ingest), path); ok {
			return reason, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("ingest said nothing about %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func rejectionIn(logPath, path string) (string, bool) {
	f, err := os.Open(logPath)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var line struct {
			MessagePath string `json:"messagePath"`
			Reason      string `json:"reason"`
			Error       string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.MessagePath != path || line.Reason == "" {
			continue
		}
		if line.Error != "" {
			return line.Error, true
		}
		return line.Reason, true
	}
	return "", false
}

// foldedCount reads the sending user's counter until it reaches want or
// ctx ends: the recorder folds sends into it within a second or so
// (RECORDER_COUNTER_FOLD_INTERVAL). A counter not written yet reads 0.
func foldedCount(ctx context.Context, fs *firestore.Client, path string, want int64) (int64, error) {
	for {
		n, err := intField(ctx, fs, path, "numberOfWhatsappMessagesSent")
		if status.Code(err) == codes.NotFound {
			n, err = 0, nil
		}
		if err != nil || n == want {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func intField(ctx context.Context, fs *firestore.Client, path, field string) (int64, error) {
	snap, err := fs.Doc(path).Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	v, err := snap.DataAt(field)
	if err != nil {
		return 0, fmt.Errorf("%s.%s: %w", path, field, err)
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("%s.%s is %T, want an integer", path, field, v)
	}
	return n, nil
}

// WaitForAncillaryID waits until the ancillary record at path holds wamid
// in arrayOfWhatsappMessageIds and returns the array. The recorder writes it
// just after the message document (another database, so not in the same
// commit), so a reader may see the status a moment before the record.
func (s *Stack) WaitForAncillaryID(ctx context.Context, anc *firestore.Client, path, wamid string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var ids []string
		snap, err := anc.Doc(path).Get(ctx)
		if err == nil {
			raw, _ := snap.Data()["arrayOfWhatsappMessageIds"].([]any)
			for _, x := range raw {
				ids = append(ids, fmt.Sprint(x))
			}
			if contains(ids, wamid) {
				return ids, nil
			}
		} else if status.Code(err) != codes.NotFound {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return ids, fmt.Errorf("%s never held %s: %w", path, wamid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func since(from, to time.Time) string {
	if from.IsZero() || to.IsZero() {
		return "-"
	}
	return to.Sub(from).Round(time.Millisecond).String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orEmpty(v any) any {
	if v == nil {
		return ""
	}
	return v
}
