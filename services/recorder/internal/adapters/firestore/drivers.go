package firestore

import (
	"context"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// Fields of a driver's record (dispatch.DriverRecordPath); ingest reads
// optedOut and changedTo before a send.
const (
	fOptedOut     = dispatch.DriverOptedOut
	fPreferenceAt = "preferenceAt"
	// The wamids of the choices applied at preferenceAt's second.
	fPreferenceWamids = "preferenceWhatsappMessageIds"
	fUndeliverable    = "undeliverableMessages"
	fUnreachable      = "unreachable"
	fChangedTo        = dispatch.DriverChangedTo
	fChangedFrom      = "changedFrom"
	fChangedAt        = "changedAt"
)

// RecordPreference implements app.Drivers in one transaction on the
// record: the latest choice wins.
func (s *Store) RecordPreference(ctx context.Context, leaseID, driver string, p app.Preference) (bool, error) {
	doc := s.db.Doc(dispatch.DriverRecordPath(leaseID, driver))
	applied := false
	err := s.db.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		applied = false
		snap, err := tx.Get(doc)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		var heldAt time.Time
		var held []string
		if snap.Exists() {
			d := snap.Data()
			heldAt, _ = d[fPreferenceAt].(time.Time)
			ids, _ := d[fPreferenceWamids].([]any)
			for _, id := range ids {
				if w, ok := id.(string); ok {
					held = append(held, w)
				}
			}
		}
		if !app.Supersedes(heldAt, held, p) {
			return nil
		}
		applied = true
		wamids := []string{}
		if p.At.Equal(heldAt) {
			wamids = append(wamids, held...)
		}
		if p.Wamid != "" {
			wamids = append(wamids, p.Wamid)
		}
		return tx.Set(doc, map[string]any{
			"driverMobileNumber": driver, "leaseId": leaseID,
			fOptedOut: p.Stop, dispatch.DriverOptOutSource: p.Source, "optOutDetail": p.Detail, "preferenceWhatsappMessageId": p.Wamid,
			fPreferenceAt: p.At, fPreferenceWamids: wamids, fUpdatedAt: firestore.ServerTimestamp,
		}, firestore.MergeAll)
	})
	if err != nil {
		return false, unavailable("record driver's choice", err)
	}
	return applied, nil
}

// RecordUndeliverable implements app.Drivers in one transaction.
func (s *Store) RecordUndeliverable(ctx context.Context, leaseID, driver, messagePath string, at time.Time) (bool, error) {
	doc := s.db.Doc(dispatch.DriverRecordPath(leaseID, driver))
	marked := false
	err := s.db.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		marked = false
		snap, err := tx.Get(doc)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		var paths []any
		if snap.Exists() {
			paths, _ = snap.Data()[fUndeliverable].([]any)
			for _, p := range paths {
				if p == messagePath {
					return nil // a repeat
				}
			}
		}
		data := map[string]any{
			"driverMobileNumber": driver, "leaseId": leaseID,
			fUndeliverable: append(paths, messagePath), "undeliverableAt": at, fUpdatedAt: firestore.ServerTimestamp,
		}
		if len(paths)+1 >= app.UnreachableAfter && (!snap.Exists() || snap.Data()[fUnreachable] != true) {
			data[fUnreachable], data["unreachableAt"] = true, at
			marked = true
		}
		return tx.Set(doc, data, firestore.MergeAll)
	})
	if err != nil {
		return false, unavailable("record undeliverable message", err)
	}
	return marked, nil
}

// ClearUndeliverable implements app.Drivers with one update, which finds
// no record for most drivers (NotFound, nothing to clear): every driver's
// message calls it, so it reads nothing first.
func (s *Store) ClearUndeliverable(ctx context.Context, leaseID, driver string) error {
	_, err := s.db.Doc(dispatch.DriverRecordPath(leaseID, driver)).Update(ctx, []firestore.Update{
		{Path: fUndeliverable, Value: firestore.Delete}, {Path: fUnreachable, Value: false},
	})
	if err != nil && status.Code(err) != codes.NotFound {
		return unavailable("clear undeliverable messages", err)
	}
	return nil
}

// RecordNumberChange implements app.Drivers: both records in one batch,
// repeated harmlessly.
func (s *Store) RecordNumberChange(ctx context.Context, leaseID, oldDriver, newDriver string, at time.Time) error {
	err := s.db.RunTransaction(ctx, func(_ context.Context, tx *firestore.Transaction) error {
		if err := tx.Set(s.db.Doc(dispatch.DriverRecordPath(leaseID, oldDriver)), map[string]any{
			"driverMobileNumber": oldDriver, "leaseId": leaseID, fChangedTo: newDriver, fChangedAt: at,
		}, firestore.MergeAll); err != nil {
			return err
		}
		return tx.Set(s.db.Doc(dispatch.DriverRecordPath(leaseID, newDriver)), map[string]any{
			"driverMobileNumber": newDriver, "leaseId": leaseID, fChangedFrom: oldDriver, fChangedAt: at,
		}, firestore.MergeAll)
	})
	if err != nil {
		return unavailable("record number change", err)
	}
	return nil
}

// Driver implements app.Drivers.
func (s *Store) Driver(ctx context.Context, leaseID, driver string) (app.DriverRecord, bool, error) {
	snap, err := s.db.Doc(dispatch.DriverRecordPath(leaseID, driver)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return app.DriverRecord{}, false, nil
	}
	if err != nil {
		return app.DriverRecord{}, false, unavailable("read driver's record", err)
	}
	d := snap.Data()
	str := func(k string) string { v, _ := d[k].(string); return v }
	paths, _ := d[fUndeliverable].([]any)
	r := app.DriverRecord{
		OptedOut: d[fOptedOut] == true, OptOutSource: str(dispatch.DriverOptOutSource), OptOutDetail: str("optOutDetail"),
		Undeliverable: len(paths), Unreachable: d[fUnreachable] == true, ChangedTo: str(fChangedTo), ChangedFrom: str(fChangedFrom),
	}
	r.PreferenceAt, _ = d[fPreferenceAt].(time.Time)
	r.ChangedAt, _ = d[fChangedAt].(time.Time)
	return r, true, nil
}
