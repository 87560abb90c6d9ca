package firestore

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// Names of the documents and fields the recorder writes; the web app and
// operators read them, so they are part of the contract.
const (
	stateCollection = "dispatch"
	stateDocID      = "state"

	fStatus          = "status"
	fOutcome         = "outcome"
	fLeaseExpiresAt  = "leaseExpiresAt"
	fReleased        = "released"
	fReleasedAt      = "releasedAt"
	fDriver          = "driverMobileNumber"
	fEnquiryID       = "enquiryId"
	fMetricsCounter  = "numberOfWhatsappMessagesSent"
	fAncillaryIDs    = "arrayOfWhatsappMessageIds"
	fWhatsappError   = "whatsappError"
	fFailureReason   = "failureReason"
	fStatusReason    = "statusReason"
	fStatusUpdatedAt = "statusUpdatedAt"
	fUpdatedAt       = "updatedAt"

	sentLedgerColl = "sentLedger"
	fMessagePath   = "messagePath"
	fCountedAt     = "countedAt"

	// A lease's cost ledger, and its cost tables by month.
	costLedgerColl = "whatsappCostLedger"
	costsColl      = "whatsappCosts"
	fMonth         = "month"
	fPricing       = "pricing"
	fMessages      = "messages"
	fCategories    = "categories"
	fTypes         = "types"
	fPricingModel  = "pricingModel"
	fPricingCateg  = "category"
	fPricingType   = "type"

	// Statuses kept on a wamid index document until a result indexes it.
	fWamid           = "wamid"
	fKeptAt          = "keptAt"
	fPendingStatuses = "statuses"
	fNamedMessage    = "namedMessagePath"

	fLastInboundAt        = "lastInboundAt"
	fLastInboundByNumber  = "lastInboundAtByPhoneNumberId"
	fLastInboundMessageID = "lastInboundMessageId"
	fLastMessageAt        = "lastMessageAt"
	enquiryMessagesColl   = "enquiryMessages"
)

// statePath is where the pipeline state of a message lives.
func statePath(messagePath string) string {
	return messagePath + "/" + stateCollection + "/" + stateDocID
}

// sentEntryPath is the ledger entry of a message's send under its
// sender's metrics document: one per message path, so a second Create of
// it fails rather than counting twice.
func sentEntryPath(metricsDoc, messagePath string) string {
	sum := sha256.Sum256([]byte(messagePath))
	return metricsDoc + "/" + sentLedgerColl + "/" + hex.EncodeToString(sum[:20])
}

// costEntryPath is a message's entry in its lease's cost ledger: one per
// message path, like sentEntryPath.
func costEntryPath(leaseID, messagePath string) string {
	sum := sha256.Sum256([]byte(messagePath))
	return "leasecompany/" + leaseID + "/" + costLedgerColl + "/" + hex.EncodeToString(sum[:20])
}

// costsPath is a lease's cost table of a month ("2006-01").
func costsPath(leaseID, month string) string {
	return "leasecompany/" + leaseID + "/" + costsColl + "/" + month
}

// costEntryFields is a cost-ledger entry as stored.
func costEntryFields(e *app.CostEntry, messagePath string) map[string]any {
	return map[string]any{
		fMessagePath: messagePath, fCountedAt: firestore.ServerTimestamp, fMonth: e.Month,
		fPricingModel: e.Pricing.PricingModel, fPricingCateg: e.Pricing.Category, fPricingType: e.Pricing.Type,
	}
}

// ledgerStore is how one of the app's ledgers is stored.
type ledgerStore struct {
	// coll is the entries' collection (and collection group).
	coll string
	// counter is the counter document an entry counts in.
	counter func(entry *firestore.DocumentSnapshot) string
	// add adds one entry's counts to a counter's fields (nested maps, as
	// Set takes them).
	add func(entry *firestore.DocumentSnapshot, counts map[string]any)
}

var ledgerStores = map[app.Ledger]ledgerStore{
	app.LedgerSent: {
		coll:    sentLedgerColl,
		counter: func(e *firestore.DocumentSnapshot) string { return relPath(e.Ref.Parent.Parent) },
		add:     func(_ *firestore.DocumentSnapshot, c map[string]any) { addCount(c, fMetricsCounter) },
	},
	app.LedgerCosts: {
		coll: costLedgerColl,
		counter: func(e *firestore.DocumentSnapshot) string {
			month, _ := e.Data()[fMonth].(string)
			return relPath(e.Ref.Parent.Parent) + "/" + costsColl + "/" + month
		},
		add: func(e *firestore.DocumentSnapshot, c map[string]any) {
			category, _ := e.Data()[fPricingCateg].(string)
			typ, _ := e.Data()[fPricingType].(string)
			addCount(c, fMessages)
			addCount(c, fCategories, category, fMessages)
			addCount(c, fCategories, category, fTypes, typ)
		},
	},
}

// addCount adds one at path in counts, a tree of nested maps with int64
// leaves.
func addCount(counts map[string]any, path ...string) {
	for _, k := range path[:len(path)-1] {
		next, ok := counts[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			counts[k] = next
		}
		counts = next
	}
	n, _ := counts[path[len(path)-1]].(int64)
	counts[path[len(path)-1]] = n + 1
}

// increments turns counts' leaves into increments, for a Set with merge:
// a counter is added to, never read.
func increments(counts map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range counts {
		switch v := v.(type) {
		case map[string]any:
			out[k] = increments(v)
		case int64:
			out[k] = firestore.Increment(v)
		}
	}
	return out
}

// costLines reads a cost table: its categories' counts by type, ordered.
func costLines(data map[string]any) []app.CostLine {
	var out []app.CostLine
	categories, _ := data[fCategories].(map[string]any)
	for category, v := range categories {
		c, _ := v.(map[string]any)
		types, _ := c[fTypes].(map[string]any)
		for typ, n := range types {
			if n, _ := n.(int64); n != 0 {
				out = append(out, app.CostLine{Category: category, Type: typ, Messages: n})
			}
		}
	}
	slices.SortFunc(out, func(a, b app.CostLine) int {
		return cmp.Or(cmp.Compare(a.Category, b.Category), cmp.Compare(a.Type, b.Type))
	})
	return out
}

// driverRecordPath is the driver's document in the ancillary database,
// parent of the per-enquiry records.
func driverRecordPath(driver string) string { return "whatsapp/" + driver }

// stateFields is a State as written: every field the recorder owns, a zero
// one deleted (so a takeover's cleared outcome, or a released claim's
// lease, is gone from the document, not left behind as an empty value).
// Counts are written even when zero. It is the only place a State becomes
// fields, so the document written and the state answered cannot differ.
func stateFields(st *app.State) []firestore.Update {
	var us []firestore.Update
	put := func(path string, v any, zero bool) {
		if zero {
			v = firestore.Delete
		}
		us = append(us, firestore.Update{Path: path, Value: v})
	}
	str := func(path, v string) { put(path, v, v == "") }
	at := func(path string, v time.Time) { put(path, v, v.IsZero()) }
	flag := func(path string, v bool) { put(path, v, !v) }

	str("messagePath", st.MessagePath)
	str("leaseId", st.LeaseID)
	str(fEnquiryID, st.EnquiryID)
	str("messageId", st.MessageID)
	str(fDriver, st.DriverMobileNumber)
	str("createdBy", st.CreatedBy)
	str(fStatus, st.Status)
	str(fOutcome, st.Outcome)
	str("claimId", st.ClaimID)
	str("claimant", st.Claimant)
	put("claims", st.Claims, false)
	at("claimedAt", st.ClaimedAt)
	at(fLeaseExpiresAt, st.LeaseExpiresAt)
	str("whatsappMessageId", st.WhatsappMessageID)
	put("error", st.Error, st.Error == nil)
	str("reason", st.Reason)
	put("attempts", st.Attempts, false)
	str("recordId", st.RecordID)
	flag("resendRequested", st.ResendRequested)
	str("resendRequestedBy", st.ResendRequestedBy)
	at("resendRequestedAt", st.ResendRequestedAt)
	flag(fReleased, st.Released)
	at(fReleasedAt, st.ReleasedAt)
	str("releaseReason", st.ReleaseReason)
	at("createdAt", st.CreatedAt)
	at("sentAt", st.SentAt)
	at("failedAt", st.FailedAt)
	at("deliveredAt", st.DeliveredAt)
	at("readAt", st.ReadAt)
	at(fUpdatedAt, st.UpdatedAt)
	put("task", st.Task, len(st.Task) == 0)
	put("earlyStatuses", st.EarlyStatuses, len(st.EarlyStatuses) == 0)
	put(fPricing, st.Pricing, st.Pricing == nil)
	return us
}

// stateChanges are the updates that turn the state read, old, into st:
// only the fields that differ. The commit is preconditioned on old's
// update time, so the fields left out are still as old has them; writing
// all of them (the task above all) made every commit several times larger
// for the client to encode and Firestore to apply. updatedAt goes in
// always, so a commit has at least one field.
func stateChanges(old, st *app.State) []firestore.Update {
	was := map[string]any{}
	for _, u := range stateFields(old) {
		was[u.Path] = u.Value
	}
	var us []firestore.Update
	for _, u := range stateFields(st) {
		if prev, ok := was[u.Path]; ok && u.Path != fUpdatedAt && reflect.DeepEqual(prev, u.Value) {
			continue
		}
		us = append(us, u)
	}
	return us
}

// createFields is a new state document: stateFields without the deletes,
// which a create has nothing to delete from.
func createFields(st *app.State) map[string]any {
	m := map[string]any{}
	for _, u := range stateFields(st) {
		if u.Value != firestore.Delete {
			m[u.Path] = u.Value
		}
	}
	return m
}

// messageFields is a MessageUpdate as written on the message document.
func messageFields(m *app.MessageUpdate) []firestore.Update {
	var us []firestore.Update
	set := func(path string, v any) { us = append(us, firestore.Update{Path: path, Value: v}) }
	if m.Status != "" {
		set(fStatus, string(m.Status))
		set(fStatusUpdatedAt, m.StatusUpdatedAt)
	}
	switch {
	case m.StatusReason != "":
		set(fStatusReason, m.StatusReason)
	case m.ClearStatusReason:
		set(fStatusReason, firestore.Delete)
	}
	switch {
	case m.Error != nil || m.FailureReason != "":
		// A refused message has a reason but no WhatsApp error.
		if m.Error != nil {
			set(fWhatsappError, m.Error)
		}
		set(fFailureReason, m.FailureReason)
	case m.ClearFailure:
		set(fWhatsappError, firestore.Delete)
		set(fFailureReason, firestore.Delete)
	}
	if m.WhatsappMessageID != "" {
		set("whatsappMessageId", m.WhatsappMessageID)
	}
	for _, t := range []struct {
		path string
		at   time.Time
	}{{"sentAt", m.SentAt}, {"failedAt", m.FailedAt}, {"deliveredAt", m.DeliveredAt}, {"readAt", m.ReadAt}} {
		if !t.at.IsZero() {
			set(t.path, t.at)
		}
	}
	if m.Pricing != nil {
		set(fPricing, m.Pricing)
	}
	return us
}

// indexFields is the wamid index entry as stored.
func indexFields(e *app.IndexEntry) map[string]any {
	return map[string]any{
		fMessagePath: e.Ref.Path(),
		"leaseId":    e.Ref.LeaseID,
		fEnquiryID:   e.Ref.EnquiryID,
		fDriver:      e.Driver,
	}
}

// indexUpdates is indexFields as the updates of an index document that is
// there already.
func indexUpdates(e *app.IndexEntry) []firestore.Update {
	var us []firestore.Update
	for k, v := range indexFields(e) {
		us = append(us, firestore.Update{Path: k, Value: v})
	}
	return us
}

// entryOf is the entry on an index document (either index); nil when it
// holds none (the wamid index's kept statuses alone).
func entryOf(snap *firestore.DocumentSnapshot) *app.IndexedMessage {
	path, _ := snap.Data()[fMessagePath].(string)
	if path == "" {
		return nil
	}
	driver, _ := snap.Data()[fDriver].(string)
	return &app.IndexedMessage{MessagePath: path, Driver: driver}
}

// ancillaryFields is the ancillary record's update for a sent message;
// written with merge, so repeating it changes nothing but lastMessageAt.
func ancillaryFields(ref dispatch.MessageRef, driver string, wamids []string) map[string]any {
	ids := make([]any, len(wamids))
	for i, w := range wamids {
		ids[i] = w
	}
	return map[string]any{
		fAncillaryIDs:       firestore.ArrayUnion(ids...),
		"driverPhoneNumber": driver,
		"leaseId":           ref.LeaseID,
		"enquiryId":         ref.EnquiryID,
		"lastMessagePath":   ref.Path(),
		"lastMessageAt":     firestore.ServerTimestamp,
	}
}

// pendingFields is a kept status as written with merge (the paths) onto
// the wamid's index document: the wamid, when its last status was kept,
// the message a callback named (not messagePath, which is the index
// entry's), and the status under its name, replacing a repeat of it. The
// event is stored as its protobuf JSON, readable in the console.
func pendingFields(p app.PendingStatus) (map[string]any, []firestore.FieldPath, error) {
	b, err := protojson.Marshal(p.Event)
	if err != nil {
		return nil, nil, fmt.Errorf("status event to JSON: %w", err)
	}
	var event map[string]any
	if err := json.Unmarshal(b, &event); err != nil {
		return nil, nil, fmt.Errorf("status event JSON to map: %w", err)
	}
	key := string(dispatch.StatusFromProto(p.Event.GetStatus()))
	data := map[string]any{
		fWamid:           p.Event.GetWhatsappMessageId(),
		fKeptAt:          p.KeptAt,
		fPendingStatuses: map[string]any{key: map[string]any{"event": event, fKeptAt: p.KeptAt}},
	}
	paths := []firestore.FieldPath{{fWamid}, {fKeptAt}, {fPendingStatuses, key}}
	if p.MessagePath != "" {
		data[fNamedMessage] = p.MessagePath
		paths = append(paths, firestore.FieldPath{fNamedMessage})
	}
	return data, paths, nil
}

// keptDeletes delete from an index document what pendingFields kept on it.
func keptDeletes() []firestore.Update {
	return []firestore.Update{{Path: fKeptAt, Value: firestore.Delete}, {Path: fPendingStatuses, Value: firestore.Delete},
		{Path: fNamedMessage, Value: firestore.Delete}}
}

// decodePending is pendingFields' document as read.
func decodePending(snap *firestore.DocumentSnapshot) (app.PendingStatuses, error) {
	d := snap.Data()
	p := app.PendingStatuses{Version: snap.UpdateTime, Entry: entryOf(snap)}
	p.Wamid, _ = d[fWamid].(string)
	p.MessagePath, _ = d[fNamedMessage].(string)
	p.KeptAt, _ = d[fKeptAt].(time.Time)
	statuses, _ := d[fPendingStatuses].(map[string]any)
	for key, v := range statuses {
		kept, _ := v.(map[string]any)
		b, err := json.Marshal(kept["event"])
		if err != nil {
			return p, fmt.Errorf("%s status %s: %w", snap.Ref.Path, key, err)
		}
		var ev wadispatchv1.StatusEvent
		if err := protojson.Unmarshal(b, &ev); err != nil {
			return p, fmt.Errorf("%s status %s: %w", snap.Ref.Path, key, err)
		}
		p.Events = append(p.Events, &ev)
	}
	return p, nil
}
