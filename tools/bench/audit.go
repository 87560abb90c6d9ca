package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// Doc is what a message document says became of the message.
type Doc struct {
	Path   string
	Status dispatch.Status
	WAMID  string
	// Reason is failureReason, or for UNKNOWN the statusReason.
	Reason    string
	CreatedAt time.Time
	UpdatedAt time.Time
	// Pricing is WhatsApp's pricing as the document keeps it; nil when
	// none came.
	Pricing *Pricing
}

// Sent reports whether the document says WhatsApp accepted the message.
func (d Doc) Sent() bool {
	switch d.Status {
	case dispatch.StatusSent, dispatch.StatusDelivered, dispatch.StatusRead:
		return true
	}
	return false
}

// ReadDocs reads the documents at paths, in batches.
func ReadDocs(ctx context.Context, fs *firestore.Client, paths []string) (map[string]Doc, error) {
	out := make(map[string]Doc, len(paths))
	for start := 0; start < len(paths); start += 300 {
		batch := paths[start:min(start+300, len(paths))]
		refs := make([]*firestore.DocumentRef, len(batch))
		for i, p := range batch {
			refs[i] = fs.Doc(p)
		}
		snaps, err := fs.GetAll(ctx, refs)
		if err != nil {
			return nil, fmt.Errorf("read message documents: %w", err)
		}
		for i, snap := range snaps {
			if !snap.Exists() {
				return nil, fmt.Errorf("message document %s does not exist", batch[i])
			}
			out[batch[i]] = docOf(batch[i], snap)
		}
	}
	return out, nil
}

func docOf(path string, snap *firestore.DocumentSnapshot) Doc {
	d := Doc{Path: path, CreatedAt: snap.CreateTime, UpdatedAt: snap.UpdateTime}
	data := snap.Data()
	str := func(k string) string {
		s, _ := data[k].(string)
		return s
	}
	d.Status = dispatch.Status(str("status"))
	d.WAMID = str("whatsappMessageId")
	d.Reason = str("failureReason")
	if d.Reason == "" {
		d.Reason = str("statusReason")
	}
	d.Pricing = pricingOf(data)
	return d
}

// WaitFinal polls the documents at paths until every one is in a final
// state or ctx ends, and returns the last reading.
func WaitFinal(ctx context.Context, fs *firestore.Client, paths []string, every time.Duration) (map[string]Doc, error) {
	for {
		docs, err := ReadDocs(ctx, fs, paths)
		if err != nil {
			return nil, err
		}
		pending := 0
		for _, d := range docs {
			if !d.Status.Final() {
				pending++
			}
		}
		if pending == 0 {
			return docs, nil
		}
		select {
		case <-ctx.Done():
			return docs, fmt.Errorf("%d of %d messages not final: %w", pending, len(paths), ctx.Err())
		case <-time.After(every):
		}
	}
}

// AcceptedMessages is everything the WhatsApp simulator at simURL accepted.
func AcceptedMessages(ctx context.Context, simURL string) ([]whatsappsim.Accepted, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, simURL+"/_sim/messages", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("simulator messages: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("simulator messages: %s", resp.Status)
	}
	var out struct {
		Messages []whatsappsim.Accepted `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode simulator messages: %w", err)
	}
	return out.Messages, nil
}

// RefOf is the message id an accepted message carries (see Fleet.Message).
func RefOf(a whatsappsim.Accepted) string {
	if a.Text != nil {
		return refOfText(a.Text.Body)
	}
	if a.Template != nil {
		for _, p := range a.Template.Parameters {
			if p.Name == "ref" {
				return p.Text
			}
		}
	}
	return ""
}

// Report is the audit of a workload after it settled.
type Report struct {
	Messages int
	// By status as written on the documents.
	ByStatus map[dispatch.Status]int
	// Sent counts the messages WhatsApp accepted by their documents (SENT,
	// DELIVERED or READ).
	Sent int
	// FailedReasons counts the reasons of FAILED messages.
	FailedReasons map[string]int
	Accepted      int
	// AcceptedUnknown: UNKNOWN messages that WhatsApp did accept.
	AcceptedUnknown int
	// Lost: messages not final; Duplicated: messages WhatsApp accepted more
	// than once.
	Lost, Duplicated int
	MetricsDocs      int
	AncillaryDocs    int
	// Priced: messages whose documents are priced; CostTables: the
	// leases' cost tables (one per lease and month).
	Priced, CostTables int
	// Suppressed: marketing templates to drivers who had stopped them.
	Suppressed int
	// Violations are broken guarantees, one line each.
	Violations []string
}

func (r *Report) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// Summary is one line of counts.
func (r *Report) Summary() string {
	var st []string
	for _, s := range []dispatch.Status{dispatch.StatusSent, dispatch.StatusDelivered, dispatch.StatusRead, dispatch.StatusFailed, dispatch.StatusUnknown, dispatch.StatusSending, ""} {
		if n := r.ByStatus[s]; n > 0 {
			name := string(s)
			if name == "" {
				name = "NONE"
			}
			st = append(st, fmt.Sprintf("%s=%d", name, n))
		}
	}
	var reasons []string
	for k, n := range r.FailedReasons {
		reasons = append(reasons, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("messages=%d final=%d sent=%d (%s) failed_reasons{%s} whatsapp_accepted=%d (of them UNKNOWN=%d) lost=%d duplicated=%d metrics_docs=%d ancillary_docs=%d priced=%d cost_tables=%d suppressed=%d violations=%d",
		r.Messages, r.Messages-r.Lost, r.Sent, strings.Join(st, " "), strings.Join(reasons, ","), r.Accepted, r.AcceptedUnknown, r.Lost, r.Duplicated, r.MetricsDocs, r.AncillaryDocs,
		r.Priced, r.CostTables, r.Suppressed, len(r.Violations))
}

// Audit checks the guarantees over a settled workload: every message final
// with a reason where it did not go out; each SENT message accepted by
// WhatsApp exactly once with the id on its document; nothing accepted for a
// message that is neither SENT nor UNKNOWN; each user's
// numberOfWhatsappMessagesSent equal to their SENT messages; each ancillary
// array holding exactly the ids sent for its driver and enquiry; each
// lease's cost table of a month counting its distinct priced messages
// once, as WhatsApp priced them (auditCosts); no suppressed message
// (Message.Suppressed) reaching WhatsApp.
func Audit(ctx context.Context, fs, ancillary *firestore.Client, simURL string, msgs []Message) (*Report, error) {
	paths := make([]string, len(msgs))
	for i, m := range msgs {
		paths[i] = m.Path()
	}
	docs, err := ReadDocs(ctx, fs, paths)
	if err != nil {
		return nil, err
	}
	accepted, err := AcceptedMessages(ctx, simURL)
	if err != nil {
		return nil, err
	}
	r := &Report{Messages: len(msgs), ByStatus: map[dispatch.Status]int{}, FailedReasons: map[string]int{}}

	byID := make(map[string]Message, len(msgs))
	for _, m := range msgs {
		byID[m.Ref.MessageID] = m
	}
	acceptedOf := map[string][]whatsappsim.Accepted{}
	for _, a := range accepted {
		id := RefOf(a)
		if _, ok := byID[id]; !ok {
			r.violate("WhatsApp accepted %s (to %s), which names no message of the workload (ref %q)", a.WAMID, a.To, id)
			continue
		}
		acceptedOf[id] = append(acceptedOf[id], a)
	}
	r.Accepted = len(accepted)

	type conv struct{ driver, enquiry string }
	sentBy := map[string]int64{}   // metrics path → SENT messages
	sentTo := map[conv][]string{}  // conversation → wamids
	convLease := map[conv]string{} // for reading
	for _, m := range msgs {
		d := docs[m.Path()]
		r.ByStatus[d.Status]++
		got := acceptedOf[m.Ref.MessageID]
		mp := MetricsPath(m.Ref.LeaseID, m.User)
		c := conv{m.Driver, m.Ref.EnquiryID}
		if _, ok := sentBy[mp]; !ok {
			sentBy[mp] = 0
		}
		convLease[c] = m.Ref.LeaseID
		if len(got) > 1 {
			r.Duplicated++
		}
		if m.Suppressed {
			r.Suppressed++
			if len(got) != 0 {
				r.violate("%s: a marketing template reached a driver who had stopped them (WhatsApp accepted it %d times)", d.Path, len(got))
			}
			if d.Status != dispatch.StatusFailed || d.Reason != chatmessage.ReasonOptedOut {
				r.violate("%s to a driver who had stopped marketing messages is %s (%s), want FAILED %s", d.Path, d.Status, d.Reason, chatmessage.ReasonOptedOut)
			}
		}
		switch {
		case d.Sent():
			r.Sent++
			sentBy[mp]++
			sentTo[c] = append(sentTo[c], d.WAMID)
			if d.WAMID == "" {
				r.violate("%s is %s without a whatsappMessageId", d.Path, d.Status)
			}
			if len(got) != 1 {
				r.violate("%s is %s but WhatsApp accepted it %d times", d.Path, d.Status, len(got))
			} else if got[0].WAMID != d.WAMID {
				r.violate("%s has whatsappMessageId %s, WhatsApp accepted it as %s", d.Path, d.WAMID, got[0].WAMID)
			}
		case d.Status == dispatch.StatusFailed:
			r.FailedReasons[d.Reason]++
			if d.Reason == "" {
				r.violate("%s is FAILED without a reason", d.Path)
			}
			if len(got) != 0 {
				r.violate("%s is FAILED but WhatsApp accepted it %d times", d.Path, len(got))
			}
		case d.Status == dispatch.StatusUnknown:
			if d.Reason == "" {
				r.violate("%s is UNKNOWN without a reason", d.Path)
			}
			if len(got) > 1 {
				r.violate("%s is UNKNOWN and WhatsApp accepted it %d times", d.Path, len(got))
			}
			r.AcceptedUnknown += len(got)
		default:
			r.Lost++
			r.violate("%s is not final: status %q", d.Path, d.Status)
			if len(got) != 0 {
				r.violate("%s (status %q) was accepted by WhatsApp %d times", d.Path, d.Status, len(got))
			}
		}
	}

	// wadispatch counts sends in ledgers folded into the counters within
	// a second or so; the counters are exact once they are empty.
	if left, err := WaitLedgerFolded(ctx, fs, ledgerWait); err != nil {
		return nil, err
	} else if left > 0 {
		r.violate("%d sent-ledger entries not folded into their counters within %s", left, ledgerWait)
	}
	for path, want := range sentBy {
		got, err := counter(ctx, fs, path)
		if err != nil {
			return nil, err
		}
		r.MetricsDocs++
		if got != want {
			r.violate("%s numberOfWhatsappMessagesSent = %d, the user's SENT messages: %d", path, got, want)
		}
	}
	for c := range convLease {
		path := dispatch.AncillaryPath(c.driver, c.enquiry)
		got, err := idArray(ctx, ancillary, path)
		if err != nil {
			return nil, err
		}
		if got != nil {
			r.AncillaryDocs++
		}
		want := slices.Clone(sentTo[c])
		slices.Sort(want)
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if !slices.Equal(sorted, want) {
			r.violate("ancillary %s arrayOfWhatsappMessageIds = %v, sent ids: %v", path, got, want)
		}
	}
	if err := auditCosts(ctx, fs, msgs, acceptedOf, r); err != nil {
		return nil, err
	}
	sort.Strings(r.Violations)
	return r, nil
}

// ledgerWait bounds the wait for the ledgers to be folded: many times the
// recorder's fold interval.
const ledgerWait = 30 * time.Second

// SentLedgerGroup is the collection group of the recorder's sent-message
// ledgers, one per metrics document.
const SentLedgerGroup = "sentLedger"

// WaitLedgerFolded polls until no sent-ledger entry is left, or for at
// most within, and returns how many are left (0: every counter is final).
func WaitLedgerFolded(ctx context.Context, fs *firestore.Client, within time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		snaps, err := fs.CollectionGroup(SentLedgerGroup).Documents(ctx).GetAll()
		if err != nil {
			if ctx.Err() != nil && len(snaps) > 0 {
				return len(snaps), nil
			}
			return 0, fmt.Errorf("read the sent ledgers: %w", err)
		}
		if len(snaps) == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return len(snaps), nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// counter reads numberOfWhatsappMessagesSent; a missing document or field is 0.
func counter(ctx context.Context, fs *firestore.Client, path string) (int64, error) {
	snap, err := fs.Doc(path).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	v, err := snap.DataAt("numberOfWhatsappMessagesSent")
	if err != nil {
		return 0, nil
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("%s numberOfWhatsappMessagesSent is %T, want an integer", path, v)
	}
	return n, nil
}

// idArray reads arrayOfWhatsappMessageIds; nil when the document is missing.
func idArray(ctx context.Context, fs *firestore.Client, path string) ([]string, error) {
	snap, err := fs.Doc(path).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	raw, _ := snap.Data()["arrayOfWhatsappMessageIds"].([]any)
	out := make([]string, 0, len(raw))
	for _, x := range raw {
		out = append(out, fmt.Sprint(x))
	}
	return out, nil
}
