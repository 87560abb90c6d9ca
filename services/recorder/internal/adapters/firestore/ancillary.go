package firestore

import (
	"context"
	"slices"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// Ancillary is app.Ancillary on the ancillary database:
// whatsapp/{driver} and whatsapp/{driver}/enquiryMessages/{enquiryId}.
type Ancillary struct {
	anc *firestore.Client
}

// NewAncillary returns the ancillary records over anc.
func NewAncillary(anc *firestore.Client) *Ancillary { return &Ancillary{anc: anc} }

var _ app.Ancillary = (*Ancillary)(nil)

// AddWamids implements app.Ancillary with one merge: arrayUnion makes
// every repetition harmless.
func (a *Ancillary) AddWamids(ctx context.Context, ref dispatch.MessageRef, driver string, wamids []string) error {
	if _, err := a.anc.Doc(dispatch.AncillaryPath(driver, ref.EnquiryID)).Set(ctx, ancillaryFields(ref, driver, wamids), firestore.MergeAll); err != nil {
		return unavailable("ancillary record", err)
	}
	return nil
}

// Wamids implements app.Ancillary.
func (a *Ancillary) Wamids(ctx context.Context, driver, enquiryID string) ([]string, error) {
	snap, err := a.anc.Doc(dispatch.AncillaryPath(driver, enquiryID)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("read ancillary record", err)
	}
	var out []string
	ids, _ := snap.Data()[fAncillaryIDs].([]any)
	for _, id := range ids {
		if s, ok := id.(string); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// LatestEnquiry implements app.Ancillary: the record with the latest
// lastMessageAt.
func (a *Ancillary) LatestEnquiry(ctx context.Context, driver string, leaseIDs []string) (app.EnquiryRecord, bool, error) {
	// In code, not in the query: a filter on the lease beside the order
	// would need a composite index, and a driver works for few leases at
	// once, so the latest few records hold the lease's latest.
	snaps, err := a.anc.Collection(driverRecordPath(driver)+"/"+enquiryMessagesColl).
		OrderBy(fLastMessageAt, firestore.Desc).Limit(latestEnquiriesRead).Documents(ctx).GetAll()
	if err != nil {
		return app.EnquiryRecord{}, false, unavailable("query driver's enquiries", err)
	}
	for _, snap := range snaps {
		if lease, _ := snap.Data()["leaseId"].(string); slices.Contains(leaseIDs, lease) {
			return app.EnquiryRecord{Path: snap.Ref.Path, LeaseID: lease, EnquiryID: snap.Ref.ID}, true, nil
		}
	}
	return app.EnquiryRecord{}, false, nil
}

// latestEnquiriesRead bounds the records LatestEnquiry reads.
const latestEnquiriesRead = 20

// RecordWindow implements app.Ancillary in one transaction on the driver's
// document and, with an enquiry, its record: a late or repeated webhook
// never moves lastInboundAt back.
func (a *Ancillary) RecordWindow(ctx context.Context, w app.Window) error {
	driverDoc := a.anc.Doc(driverRecordPath(w.Driver))
	var enquiryDoc *firestore.DocumentRef
	if w.Enquiry != nil {
		enquiryDoc = a.anc.Doc(dispatch.AncillaryPath(w.Driver, w.Enquiry.EnquiryID))
	}
	err := a.anc.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		refs := []*firestore.DocumentRef{driverDoc}
		if enquiryDoc != nil {
			refs = append(refs, enquiryDoc)
		}
		snaps, err := tx.GetAll(refs)
		if err != nil {
			return err
		}
		driver := map[string]any{"driverPhoneNumber": w.Driver}
		if later(snaps[0], []string{fLastInboundAt}, w.At) {
			driver[fLastInboundAt] = w.At
		}
		if w.PhoneNumberID != "" && later(snaps[0], []string{fLastInboundByNumber, w.PhoneNumberID}, w.At) {
			driver[fLastInboundByNumber] = map[string]any{w.PhoneNumberID: w.At}
		}
		if w.UserID != "" && (!snaps[0].Exists() || snaps[0].Data()["bsuid"] != w.UserID) {
			driver["bsuid"] = w.UserID
		}
		if len(driver) > 1 {
			if err := tx.Set(driverDoc, driver, firestore.MergeAll); err != nil {
				return err
			}
		}
		if enquiryDoc != nil && later(snaps[1], []string{fLastInboundAt}, w.At) {
			return tx.Set(enquiryDoc, map[string]any{
				fLastInboundAt: w.At, fLastInboundMessageID: w.Wamid,
				"driverPhoneNumber": w.Driver, "leaseId": w.Enquiry.LeaseID, "enquiryId": w.Enquiry.EnquiryID,
			}, firestore.MergeAll)
		}
		return nil
	})
	if err != nil {
		return unavailable("record driver's window", err)
	}
	return nil
}

// later reports whether at is after the time at path in snap (or there is
// none).
func later(snap *firestore.DocumentSnapshot, path firestore.FieldPath, at time.Time) bool {
	if !snap.Exists() {
		return true
	}
	v, err := snap.DataAtPath(path)
	if err != nil {
		return true
	}
	t, ok := v.(time.Time)
	return !ok || at.After(t)
}

// MoveDriver implements app.Ancillary: the old number's enquiry records
// (a driver has few) are copied under the new number with merge, so a
// repeat changes nothing, and the old number's document names the new.
func (a *Ancillary) MoveDriver(ctx context.Context, oldDriver, newDriver string, at time.Time) error {
	snaps, err := a.anc.Collection(driverRecordPath(oldDriver) + "/" + enquiryMessagesColl).Documents(ctx).GetAll()
	if err != nil {
		return unavailable("read the old number's enquiries", err)
	}
	// The old number is marked last, in the last batch: a move cut short
	// is done again whole by the retry.
	for start := 0; ; start += 400 {
		chunk := snaps[start:min(start+400, len(snaps))]
		last := start+400 >= len(snaps)
		err := a.anc.RunTransaction(ctx, func(_ context.Context, tx *firestore.Transaction) error {
			for _, snap := range chunk {
				data := snap.Data()
				data["driverPhoneNumber"], data["movedFrom"] = newDriver, oldDriver
				if err := tx.Set(a.anc.Doc(driverRecordPath(newDriver)+"/"+enquiryMessagesColl+"/"+snap.Ref.ID), data, firestore.MergeAll); err != nil {
					return err
				}
			}
			if !last {
				return nil
			}
			return tx.Set(a.anc.Doc(driverRecordPath(oldDriver)), map[string]any{"changedTo": newDriver, "changedAt": at}, firestore.MergeAll)
		})
		if err != nil {
			return unavailable("move the driver's enquiry records", err)
		}
		if last {
			return nil
		}
	}
}

// LastInbound implements app.Ancillary: lastInboundAt, or the time under
// lastInboundAtByPhoneNumberId when phoneID is set.
func (a *Ancillary) LastInbound(ctx context.Context, driver, phoneID string) (time.Time, bool, error) {
	snap, err := a.anc.Doc(driverRecordPath(driver)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, unavailable("read driver's ancillary record", err)
	}
	path := firestore.FieldPath{fLastInboundAt}
	if phoneID != "" {
		path = firestore.FieldPath{fLastInboundByNumber, phoneID}
	}
	v, err := snap.DataAtPath(path)
	if err != nil {
		return time.Time{}, false, nil
	}
	t, ok := v.(time.Time)
	return t, ok, nil
}
