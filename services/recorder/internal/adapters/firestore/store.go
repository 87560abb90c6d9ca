//lint:file-ignore SA1019 WriteBatch is the client's only atomic multi-document commit without a transaction: the recorder guards its commits with preconditions instead of read locks, which saves a BeginTransaction round trip per write and never holds a lock on the hot metrics document.

// Package firestore is the recorder's Firestore: app.Store on the default
// database and app.Ancillary on the ancillary one. It translates the
// application's values to documents, fields and queries, commits with
// preconditions, and classifies Firestore's errors (app.StoreError) where
// they arise; what to do about them is the application's.
package firestore

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/retry"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// Options tune a Store.
type Options struct {
	// MaxCommitAttempts bounds the tries of one decision when commits meet
	// contention or a changed state. Default 25.
	MaxCommitAttempts int
	// Retried is told of each commit tried again and why (aborted,
	// unavailable, precondition), for the commit-retries metric; nil tells
	// nobody.
	Retried func(reason string)
}

// Store is app.Store on the default database: states, message documents,
// metrics documents and the wamid index.
type Store struct {
	db          *firestore.Client
	maxAttempts int
	retried     func(reason string)
}

// NewStore returns the store over db.
func NewStore(db *firestore.Client, o Options) *Store {
	if o.MaxCommitAttempts <= 0 {
		o.MaxCommitAttempts = 25
	}
	if o.Retried == nil {
		o.Retried = func(string) {}
	}
	return &Store{db: db, maxAttempts: o.MaxCommitAttempts, retried: o.Retried}
}

var _ app.Store = (*Store)(nil)

func unavailable(op string, err error) error {
	return &app.StoreError{Kind: app.Unavailable, Op: op, Err: err}
}

// Update implements app.Store: one BatchGetDocuments of the state and the
// message document (none for an assumed state), the decision, one Commit
// guarded by a precondition.
//
// A precondition that fails means the state changed since it was read (or
// our own commit landed and its answer was lost, which decide recognises),
// or the plan's wamid index document is there already: it is read again,
// with that index document, and decided again. A commit Firestore could
// not take now (ABORTED under contention on a hot document, UNAVAILABLE)
// is tried again with backoff, the same plan: a burst becomes latency, not
// an error. Both share one budget of Options.MaxCommitAttempts commits.
func (s *Store) Update(ctx context.Context, ref dispatch.MessageRef, op string, assume *app.Assumed, decide app.Decide) (time.Time, error) {
	var (
		st      *app.State
		version time.Time
		exists  = true
		read    = assume == nil
		idx     indexDoc // read with the state once a plan's index create failed
		plan    app.Plan
		decided bool
		lastErr error
		bo      = retry.Backoff(10*time.Millisecond, time.Second)
	)
	if assume != nil {
		st, version = assume.State, assume.Version
	}
	for range s.maxAttempts {
		if !decided {
			if read {
				var err error
				if st, version, exists, idx, err = s.readState(ctx, ref, idx.wamid); err != nil {
					return time.Time{}, unavailable("read state", err)
				}
			}
			var err error
			if plan, err = decide(st, exists, idx.kept); err != nil {
				return time.Time{}, err
			}
			if plan.Index != nil && plan.Index.Wamid != idx.wamid && idx.wamid != "" {
				// Decided on the statuses kept for another wamid than the
				// plan indexes: decide again on its own.
				idx.wamid = plan.Index.Wamid
				continue
			}
			decided = true
		}
		committed, err := s.commitPlan(ctx, ref, st, version, exists, idx, plan)
		if err == nil {
			return committed, nil
		}
		lastErr = err
		if preconditionFailed(err) {
			// Only a plan decided on what was read counts: a guess (the
			// first claim's, a result's of the state its claim left) is
			// expected to miss at times.
			if read {
				s.retried("precondition")
			}
			if plan.Index != nil {
				idx.wamid = plan.Index.Wamid
			}
			read, decided, lastErr = true, false, nil
			continue
		}
		why, ok := retryable(err)
		if !ok {
			return time.Time{}, unavailable(op, err)
		}
		s.retried(why)
		if err := retry.Pause(ctx, bo); err != nil {
			return time.Time{}, unavailable(op, err)
		}
	}
	if lastErr != nil {
		return time.Time{}, unavailable(op, lastErr)
	}
	return time.Time{}, &app.StoreError{Kind: app.Contended, Op: op, Err: fmt.Errorf("state of %s kept changing; try again", ref.Path())}
}

// indexDoc is a wamid index document as Update read it: wamid "" when it
// read none.
type indexDoc struct {
	wamid   string
	exists  bool
	version time.Time
	kept    []*wadispatchv1.StatusEvent
}

// commitPlan writes p in one Commit: all or nothing. A state read (old) is
// changed only if it is still as of version; none read is created only if
// there is still none. The index entry likewise: created, unless its
// document was read (idx), then written over it as read. It returns the
// state's update time after the commit, zero when p writes no state.
func (s *Store) commitPlan(ctx context.Context, ref dispatch.MessageRef, old *app.State, version time.Time, messageExists bool, idx indexDoc, p app.Plan) (time.Time, error) {
	b := s.db.Batch()
	writes := 0
	if p.State != nil {
		doc := s.db.Doc(statePath(ref.Path()))
		if old == nil {
			b.Create(doc, createFields(p.State))
		} else {
			b.Update(doc, stateChanges(old, p.State), firestore.LastUpdateTime(version))
		}
		writes++
	}
	if p.Message != nil && messageExists {
		b.Update(s.db.Doc(ref.Path()), messageFields(p.Message))
		writes++
	}
	if p.CountSentIn != "" {
		b.Create(s.db.Doc(sentEntryPath(p.CountSentIn, ref.Path())), map[string]any{
			fMessagePath: ref.Path(), fCountedAt: firestore.ServerTimestamp,
		})
		writes++
	}
	if p.Price != nil {
		b.Create(s.db.Doc(costEntryPath(p.Price.LeaseID, ref.Path())), costEntryFields(p.Price, ref.Path()))
		writes++
	}
	if p.Index != nil {
		doc := s.db.Doc(dispatch.IndexPath(p.Index.Wamid))
		if idx.wamid == p.Index.Wamid && idx.exists {
			// What was kept on it the plan applied (Plan.Index).
			b.Update(doc, append(indexUpdates(p.Index), keptDeletes()...), firestore.LastUpdateTime(idx.version))
		} else {
			b.Create(doc, indexFields(p.Index))
		}
		writes++
	}
	if writes == 0 {
		return time.Time{}, nil
	}
	res, err := b.Commit(ctx)
	if err != nil || p.State == nil {
		return time.Time{}, err
	}
	return res[0].UpdateTime, nil // the state is the batch's first write
}

// readState reads a message's state, its update time and whether the
// message document exists, and the index document of wamid unless it is
// "", in one BatchGetDocuments.
func (s *Store) readState(ctx context.Context, ref dispatch.MessageRef, wamid string) (*app.State, time.Time, bool, indexDoc, error) {
	refs := []*firestore.DocumentRef{s.db.Doc(statePath(ref.Path())), s.db.Doc(ref.Path())}
	if wamid != "" {
		refs = append(refs, s.db.Doc(dispatch.IndexPath(wamid)))
	}
	snaps, err := s.db.GetAll(ctx, refs)
	if err != nil {
		return nil, time.Time{}, false, indexDoc{}, err
	}
	st, err := decodeState(snaps[0])
	if err != nil {
		return nil, time.Time{}, false, indexDoc{}, err
	}
	idx := indexDoc{wamid: wamid}
	if wamid != "" && snaps[2].Exists() {
		p, err := decodePending(snaps[2])
		if err != nil {
			return nil, time.Time{}, false, indexDoc{}, err
		}
		idx.exists, idx.version, idx.kept = true, snaps[2].UpdateTime, p.Events
	}
	return st, snaps[0].UpdateTime, snaps[1].Exists(), idx, nil
}

func decodeState(snap *firestore.DocumentSnapshot) (*app.State, error) {
	if !snap.Exists() {
		return nil, nil
	}
	var st app.State
	if err := snap.DataTo(&st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", snap.Ref.Path, err)
	}
	return &st, nil
}

// State implements app.Store.
func (s *Store) State(ctx context.Context, ref dispatch.MessageRef) (*app.State, error) {
	snap, err := s.db.Doc(statePath(ref.Path())).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("read state", err)
	}
	st, err := decodeState(snap)
	if err != nil {
		return nil, &app.StoreError{Kind: app.Corrupt, Op: "read state", Err: err}
	}
	return st, nil
}

func (s *Store) states() firestore.Query { return s.db.CollectionGroup(stateCollection).Query }

// Unknown implements app.Store. The order also makes the query one that a
// composite index serves (charts/wadispatch/firestore.indexes.json); the
// path that breaks ties is the order every index ends with.
func (s *Store) Unknown(ctx context.Context, after *app.Cursor, limit int) (app.Page, error) {
	q := s.states().Where(fStatus, "==", string(dispatch.StatusUnknown)).
		OrderBy(fUpdatedAt, firestore.Asc).OrderBy(firestore.DocumentID, firestore.Asc)
	if after != nil {
		q = q.StartAfter(after.At, s.db.Doc(statePath(after.MessagePath)))
	}
	return queryPage(ctx, q, fUpdatedAt, limit)
}

// Stalled implements app.Store.
func (s *Store) Stalled(ctx context.Context, releasedBefore time.Time, after *app.Cursor, limit int) (app.Page, error) {
	q := s.stalled(releasedBefore).OrderBy(fReleasedAt, firestore.Asc).OrderBy(firestore.DocumentID, firestore.Asc)
	if after != nil {
		q = q.StartAfter(after.At, s.db.Doc(statePath(after.MessagePath)))
	}
	return queryPage(ctx, q, fReleasedAt, limit)
}

// stalled selects the claims released at or before releasedBefore. A
// takeover deletes released and releasedAt, an outcome moves the status
// on: what is left was released and never picked up again.
func (s *Store) stalled(releasedBefore time.Time) firestore.Query {
	return s.states().Where(fStatus, "==", string(dispatch.StatusSending)).
		Where(fReleased, "==", true).Where(fReleasedAt, "<=", releasedBefore)
}

// CountStalled implements app.Store, with one aggregation query.
func (s *Store) CountStalled(ctx context.Context, releasedBefore time.Time) (int64, error) {
	q := s.stalled(releasedBefore)
	res, err := q.NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		return 0, unavailable("count stalled claims", err)
	}
	n, ok := res["n"].(*firestorepb.Value)
	if !ok {
		return 0, unavailable("count stalled claims", fmt.Errorf("no count in %v", res))
	}
	return n.GetIntegerValue(), nil
}

// EnquiryStates implements app.Store, through a composite index on both
// fields (charts/wadispatch/firestore.indexes.json), which orders by path
// after them.
func (s *Store) EnquiryStates(ctx context.Context, driver, enquiryID string, after *app.Cursor, limit int) (app.Page, error) {
	q := s.states().Where(fDriver, "==", driver).Where(fEnquiryID, "==", enquiryID).OrderBy(firestore.DocumentID, firestore.Asc)
	if after != nil {
		q = q.StartAfter(s.db.Doc(statePath(after.MessagePath)))
	}
	return queryPage(ctx, q, "", limit)
}

// queryPage runs q for one page: one state more than limit says whether a
// next page exists without a query that finds nothing. The cursor is read
// from the last state's document, its ordered field (atField, "" for none)
// as stored, so the next page starts exactly after it.
func queryPage(ctx context.Context, q firestore.Query, atField string, limit int) (app.Page, error) {
	it := q.Limit(limit + 1).Documents(ctx)
	defer it.Stop()
	var (
		page app.Page
		last *firestore.DocumentSnapshot
	)
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			return page, nil
		}
		if err != nil {
			return app.Page{}, queryErr("query states", err)
		}
		if len(page.States) == limit {
			next, err := cursorOf(last, atField)
			if err != nil {
				return app.Page{}, &app.StoreError{Kind: app.Corrupt, Op: "query states", Err: err}
			}
			page.Next = &next
			return page, nil
		}
		st, err := decodeState(snap)
		if err != nil {
			return app.Page{}, &app.StoreError{Kind: app.Corrupt, Op: "query states", Err: err}
		}
		page.States = append(page.States, st)
		last = snap
	}
}

// cursorOf is where a page that ended with snap ends.
func cursorOf(snap *firestore.DocumentSnapshot, atField string) (app.Cursor, error) {
	ref, err := dispatch.ParseMessagePath(snap.Ref.Parent.Parent.Path)
	if err != nil {
		return app.Cursor{}, fmt.Errorf("state %s is under no message: %w", snap.Ref.Path, err)
	}
	c := app.Cursor{MessagePath: ref.Path()}
	if atField == "" {
		return c, nil
	}
	v, err := snap.DataAt(atField)
	if err != nil {
		return app.Cursor{}, fmt.Errorf("%s of %s: %w", atField, snap.Ref.Path, err)
	}
	at, ok := v.(time.Time)
	if !ok {
		return app.Cursor{}, fmt.Errorf("%s of %s is %T, not a timestamp", atField, snap.Ref.Path, v)
	}
	c.At = at
	return c, nil
}

// queryErr classifies the failure of a query: Firestore refusing the
// query itself (no index for it, no permission) does not pass by asking
// again.
func queryErr(op string, err error) error {
	if c := status.Code(err); c == codes.FailedPrecondition || c == codes.PermissionDenied || c == codes.InvalidArgument {
		return &app.StoreError{Kind: app.Refused, Op: op, Err: err}
	}
	return unavailable(op, err)
}

// ExpiredClaims implements app.Store. Only SENDING states hold a lease;
// saying so makes the query one that a composite index serves
// (charts/wadispatch/firestore.indexes.json), as Firestore keeps no
// single-field collection-group indexes by default.
func (s *Store) ExpiredClaims(ctx context.Context, now time.Time) iter.Seq2[app.ExpiredClaim, error] {
	return func(yield func(app.ExpiredClaim, error) bool) {
		it := s.states().Where(fStatus, "==", string(dispatch.StatusSending)).
			Where(fLeaseExpiresAt, "<=", now).Limit(500).Documents(ctx)
		defer it.Stop()
		for {
			snap, err := it.Next()
			if err == iterator.Done {
				return
			}
			if err != nil {
				yield(app.ExpiredClaim{}, unavailable("query expired claims", err))
				return
			}
			if !yield(app.ExpiredClaim{MessagePath: snap.Ref.Parent.Parent.Path, StatePath: snap.Ref.Path}, nil) {
				return
			}
		}
	}
}

// IndexedMessage implements app.Store.
func (s *Store) IndexedMessage(ctx context.Context, wamid string) (app.IndexedMessage, bool, error) {
	return s.indexEntry(ctx, dispatch.IndexPath(wamid), "read wamid index")
}

// indexEntry reads an index document of either index: the message path and
// the driver.
func (s *Store) indexEntry(ctx context.Context, path, op string) (app.IndexedMessage, bool, error) {
	snap, err := s.db.Doc(path).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return app.IndexedMessage{}, false, nil
	}
	if err != nil {
		return app.IndexedMessage{}, false, unavailable(op, err)
	}
	e := entryOf(snap)
	if e == nil {
		return app.IndexedMessage{}, false, nil
	}
	return *e, true, nil
}

// KeepPendingStatus implements app.Store: one write, merged into what is
// kept on the wamid's index document, which it creates if absent.
func (s *Store) KeepPendingStatus(ctx context.Context, p app.PendingStatus) error {
	data, paths, err := pendingFields(p)
	if err != nil {
		return &app.StoreError{Kind: app.Corrupt, Op: "keep status", Err: err}
	}
	if _, err := s.db.Doc(dispatch.IndexPath(p.Event.GetWhatsappMessageId())).Set(ctx, data, firestore.Merge(paths...)); err != nil {
		return unavailable("keep status", err)
	}
	return nil
}

// PendingStatuses implements app.Store.
func (s *Store) PendingStatuses(ctx context.Context, wamid string) (app.PendingStatuses, bool, error) {
	snap, err := s.db.Doc(dispatch.IndexPath(wamid)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return app.PendingStatuses{}, false, nil
	}
	if err != nil {
		return app.PendingStatuses{}, false, unavailable("read kept statuses", err)
	}
	p, err := decodePending(snap)
	if err != nil {
		return p, false, &app.StoreError{Kind: app.Corrupt, Op: "read kept statuses", Err: err}
	}
	return p, len(p.Events) > 0, nil
}

// DropPendingStatuses implements app.Store: preconditioned on the version
// read, a delete of the document when it is no index entry, else of the
// kept fields.
func (s *Store) DropPendingStatuses(ctx context.Context, p app.PendingStatuses) (bool, error) {
	doc := s.db.Doc(dispatch.IndexPath(p.Wamid))
	var err error
	if p.Entry == nil {
		_, err = doc.Delete(ctx, firestore.LastUpdateTime(p.Version))
	} else {
		_, err = doc.Update(ctx, keptDeletes(), firestore.LastUpdateTime(p.Version))
	}
	switch {
	case err == nil:
		return true, nil
	case preconditionFailed(err):
		return false, nil
	}
	return false, unavailable("drop kept statuses", err)
}

// ExpiredPendingStatuses implements app.Store: a range on one field of one
// collection, which Firestore's automatic single-field index serves (no
// composite index to declare). Index documents holding no kept status
// have no keptAt, so the index leaves them out.
func (s *Store) ExpiredPendingStatuses(ctx context.Context, keptBefore time.Time, limit int) ([]app.PendingStatuses, error) {
	it := s.db.Collection(dispatch.IndexCollection).Where(fKeptAt, "<=", keptBefore).
		OrderBy(fKeptAt, firestore.Asc).Limit(limit).Documents(ctx)
	defer it.Stop()
	var out []app.PendingStatuses
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, queryErr("query kept statuses", err)
		}
		p, err := decodePending(snap)
		if err != nil {
			return nil, &app.StoreError{Kind: app.Corrupt, Op: "query kept statuses", Err: err}
		}
		out = append(out, p)
	}
}

// LedgerEntries implements app.Store: a collection-group query in name
// order, which needs no declared index and keeps each counter document's
// entries together (they share a parent; a lease's cost entries of
// different months are grouped again by the fold).
func (s *Store) LedgerEntries(ctx context.Context, l app.Ledger, limit int) ([]app.LedgerEntry, error) {
	ls := ledgerStores[l]
	it := s.db.CollectionGroup(ls.coll).Query.OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit).Documents(ctx)
	defer it.Stop()
	var out []app.LedgerEntry
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, queryErr("query "+string(l)+" ledger", err)
		}
		out = append(out, ledgerEntry(ls, snap))
	}
}

func ledgerEntry(ls ledgerStore, snap *firestore.DocumentSnapshot) app.LedgerEntry {
	e := app.LedgerEntry{Path: relPath(snap.Ref), Counter: ls.counter(snap)}
	e.CountedAt, _ = snap.Data()[fCountedAt].(time.Time)
	return e
}

// relPath is ref's path from the database root, as Doc takes it.
func relPath(ref *firestore.DocumentRef) string {
	_, rel, _ := strings.Cut(ref.Path, "/documents/")
	return rel
}

// Fold implements app.Store: one transaction reads the entries (which
// locks them, so a concurrent fold of the same entries waits, then finds
// them gone), increments the counter by those found and deletes them. The
// counter is incremented, not read: the transaction holds no lock on the
// hot document. An entry found counting elsewhere than f's counter (it
// cannot, as written) is left for its own fold.
func (s *Store) Fold(ctx context.Context, f app.LedgerFold) ([]app.LedgerEntry, error) {
	ls := ledgerStores[f.Ledger]
	refs := make([]*firestore.DocumentRef, len(f.Entries))
	for i, p := range f.Entries {
		refs[i] = s.db.Doc(p)
	}
	var folded []app.LedgerEntry
	err := s.db.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		folded = folded[:0]
		snaps, err := tx.GetAll(refs)
		if err != nil {
			return err
		}
		counts := map[string]any{}
		for _, snap := range snaps {
			if !snap.Exists() || ls.counter(snap) != f.Counter {
				continue
			}
			folded = append(folded, ledgerEntry(ls, snap))
			ls.add(snap, counts)
			if err := tx.Delete(snap.Ref); err != nil {
				return err
			}
		}
		if len(folded) == 0 {
			return nil
		}
		return tx.Set(s.db.Doc(f.Counter), increments(counts), firestore.MergeAll)
	}, firestore.MaxAttempts(s.maxAttempts))
	if err != nil {
		return nil, unavailable("fold "+string(f.Ledger)+" ledger of "+f.Counter, err)
	}
	return folded, nil
}

// Costs implements app.Store.
func (s *Store) Costs(ctx context.Context, leaseID, month string) ([]app.CostLine, error) {
	snap, err := s.db.Doc(costsPath(leaseID, month)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("read costs", err)
	}
	return costLines(snap.Data()), nil
}

// retryable reports whether a commit may succeed if simply tried again.
func retryable(err error) (string, bool) {
	switch status.Code(err) {
	case codes.Aborted:
		return "aborted", true
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Internal:
		return "unavailable", true
	}
	return "", false
}

// preconditionFailed reports a commit refused because a document changed
// (or appeared, or vanished) since it was read: read again and decide again.
func preconditionFailed(err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound:
		return true
	}
	return false
}
