package app

import (
	"context"
	"errors"
	"iter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Plan is what one decision writes, in one commit.
type Plan struct {
	// State replaces the state read; nil leaves it as it is. It must not
	// share what it changes with the state read (decisions work on a
	// copy): the store writes only the fields that differ from that state.
	State *State
	// Message is written only if the message document exists: a message
	// deleted by the web app keeps its state, for operators.
	Message *MessageUpdate
	// CountSentIn is the metrics document the send counts in: the commit
	// creates the message's entry in its ledger (SentEntry), folded into
	// the counter later; "" counts nothing.
	CountSentIn string
	// Index is the wamid index entry the commit writes; nil writes none.
	// The commit creates the wamid's index document, with no read: the
	// common case. When the document is there already (statuses of the
	// wamid kept before it was indexed, or an entry written before), the
	// store reads it with the state and decides again, handing decide the
	// statuses kept on it; the commit then writes the entry over them,
	// preconditioned on the document as read. So the plan must apply
	// them: they are gone from the document once it commits.
	Index *IndexEntry
	// Price is the message's cost-ledger entry the commit creates: set by
	// Service.commit for the plan that prices the message first (its
	// decision leaves it nil); nil counts nothing.
	Price *CostEntry
}

// Assumed is a state Store.Update decides on first, without reading it,
// with the message document taken as present: nil State for "none", else
// the state as of its update time Version. The commit's precondition
// proves it (must not exist, or update time Version); when it does not
// hold, the state is read and decided again, so a wrong guess costs one
// failed commit.
type Assumed struct {
	State   *State
	Version time.Time
}

// absent is the guess of a message's first claim: no state yet.
var absent = &Assumed{}

// Decide plans one change of a message's state from what Store.Update
// read: the state (nil when none), whether the message document exists,
// and the statuses kept on the index document of the wamid the plan
// indexes (Plan.Index), read only after creating that document found it
// there (nil otherwise).
type Decide func(st *State, messageExists bool, kept []*wadispatchv1.StatusEvent) (Plan, error)

// IndexEntry maps a wamid to the message it was sent for.
type IndexEntry struct {
	Wamid  string
	Ref    dispatch.MessageRef
	Driver string
}

// Store is the default database as the use cases need it: each message's
// state, changed only through Update, and the documents beside it.
type Store interface {
	// Update is the recorder's one way to change a message's state: it
	// reads the state and whether the message document exists, lets decide
	// plan from them and commits the plan, all or nothing, guarded by a
	// precondition (the state must not exist, or must be as read). A state
	// changed since it was read is read and decided again; a commit the
	// store could not take now is tried again; both within one budget.
	// assume, when not nil, is decided on first without a read: the common
	// first claim and the result of a first claim cost one commit. It
	// returns the state's update time after the commit, zero when the plan
	// wrote no state. decide's own errors come back as they are; the
	// store's are *StoreError.
	Update(ctx context.Context, ref dispatch.MessageRef, op string, assume *Assumed, decide Decide) (time.Time, error)
	// State is the message's state; nil when it has none.
	State(ctx context.Context, ref dispatch.MessageRef) (*State, error)
	// Unknown lists up to limit UNKNOWN states after the cursor (from the
	// first when nil), least recently updated first (Cursor.At: updatedAt).
	Unknown(ctx context.Context, after *Cursor, limit int) (Page, error)
	// Stalled lists up to limit SENDING states released at or before
	// releasedBefore and not taken over since, after the cursor, earliest
	// release first (Cursor.At: releasedAt).
	Stalled(ctx context.Context, releasedBefore time.Time, after *Cursor, limit int) (Page, error)
	// CountStalled counts what Stalled would list without a limit.
	CountStalled(ctx context.Context, releasedBefore time.Time) (int64, error)
	// EnquiryStates lists up to limit states of an enquiry's messages to a
	// driver after the cursor, by message path (Cursor.At: none).
	EnquiryStates(ctx context.Context, driver, enquiryID string, after *Cursor, limit int) (Page, error)
	// ExpiredClaims yields, as the query streams them, up to 500 SENDING
	// states whose lease ended at or before now.
	ExpiredClaims(ctx context.Context, now time.Time) iter.Seq2[ExpiredClaim, error]
	// IndexedMessage reads wamid's index entry; false when there is none
	// (statuses kept for the wamid alone are no entry).
	IndexedMessage(ctx context.Context, wamid string) (IndexedMessage, bool, error)
	// KeepPendingStatus keeps a status event of a wamid no result recorded
	// (yet) on the wamid's index document, beside the others kept for that
	// wamid, one per status (a repeat replaces its copy), creating the
	// document if it is not there.
	KeepPendingStatus(ctx context.Context, p PendingStatus) error
	// PendingStatuses reads what is kept for wamid; false when nothing.
	PendingStatuses(ctx context.Context, wamid string) (PendingStatuses, bool, error)
	// DropPendingStatuses deletes what p read is kept for its wamid (the
	// whole document when it holds no index entry) if nothing was kept
	// since (p.Version); false when something was (or it is gone: read
	// again).
	DropPendingStatuses(ctx context.Context, p PendingStatuses) (bool, error)
	// ExpiredPendingStatuses lists up to limit wamids whose last status was
	// kept at or before keptBefore, longest kept first.
	ExpiredPendingStatuses(ctx context.Context, keptBefore time.Time, limit int) ([]PendingStatuses, error)
	// LedgerEntries lists up to limit entries of the ledger, of every
	// counter document, grouped by counter document.
	LedgerEntries(ctx context.Context, l Ledger, limit int) ([]LedgerEntry, error)
	// Fold adds to f's counter document the entries of f still there and
	// deletes them, atomically, and returns them: an entry another fold
	// took first is skipped.
	Fold(ctx context.Context, f LedgerFold) ([]LedgerEntry, error)
	// Costs reads the lease's cost table of month ("2006-01") as folded,
	// by category then type; none when nothing was folded for it.
	Costs(ctx context.Context, leaseID, month string) ([]CostLine, error)
}

// PendingStatus is a status event kept by its wamid, which no result has
// recorded: either it came first, or wadispatch never sent that message.
type PendingStatus struct {
	// Event is the status, without its recipient (a phone number: nothing
	// needs it).
	Event *wadispatchv1.StatusEvent
	// MessagePath is the message its callback data named, when it named
	// one of ours whose current claim it did not match; "" otherwise.
	MessagePath string
	KeptAt      time.Time
}

// PendingStatuses is what is kept for one wamid.
type PendingStatuses struct {
	Wamid       string
	MessagePath string
	Events      []*wadispatchv1.StatusEvent
	// KeptAt is when the last of them was kept.
	KeptAt time.Time
	// Entry is the wamid's index entry on the same document, when a
	// result has indexed the wamid since they were kept; nil when none.
	Entry *IndexedMessage
	// Version is the store's version of what was read, for
	// DropPendingStatuses.
	Version time.Time
}

// ExpiredClaim is a state found holding an expired lease.
type ExpiredClaim struct {
	MessagePath, StatePath string
}

// IndexedMessage is a wamid index entry as read: the message a wamid was
// sent for and the driver it was sent to.
type IndexedMessage struct {
	MessagePath, Driver string
}

// Ancillary is the ancillary database: the per-driver and per-enquiry
// records the web app reads.
type Ancillary interface {
	// AddWamids adds wamids to the enquiry's record of the driver, once
	// however often it is repeated.
	AddWamids(ctx context.Context, ref dispatch.MessageRef, driver string, wamids []string) error
	// Wamids are those recorded for the enquiry's messages to the driver.
	Wamids(ctx context.Context, driver, enquiryID string) ([]string, error)
	// LatestEnquiry is the driver's most recently messaged enquiry of one
	// of the leases; false when the driver has none there.
	LatestEnquiry(ctx context.Context, driver string, leaseIDs []string) (EnquiryRecord, bool, error)
	// RecordWindow moves the driver's lastInboundAt (and the enquiry's,
	// with one) forward to w.At, never back.
	RecordWindow(ctx context.Context, w Window) error
	// MoveDriver copies the enquiry records of the driver's old number to
	// the new one, and marks the old one moved: the new number's replies
	// find the same enquiries.
	MoveDriver(ctx context.Context, oldDriver, newDriver string, at time.Time) error
	// LastInbound is when the driver last wrote to the business number
	// phoneID (any number when ""); false when never.
	LastInbound(ctx context.Context, driver, phoneID string) (time.Time, bool, error)
}

// EnquiryRecord is an enquiry's ancillary record as read.
type EnquiryRecord struct {
	Path, LeaseID, EnquiryID string
}

// Window is a driver's reply as the 24-hour window records it.
type Window struct {
	Driver, Wamid string
	// PhoneNumberID is the business number written to; "" records the
	// reply for no number in particular.
	PhoneNumberID string
	At            time.Time
	// Enquiry is the enquiry the reply went to; nil when none is known.
	Enquiry *dispatch.MessageRef
	// UserID is the driver's business-scoped user id (BSUID), when the
	// webhook named it.
	UserID string
}

// StoreError is a failure of a Store or Ancillary, classified where the
// database answered, so the use cases decide on what happened rather than
// on the database's own codes.
type StoreError struct {
	Kind StoreErrorKind
	// Op is what was being done, as the caller is told.
	Op  string
	Err error
}

// StoreErrorKind is what a StoreError means for the caller.
type StoreErrorKind int

const (
	// Unavailable: not answered or not taken now; asking later may do.
	Unavailable StoreErrorKind = iota
	// Refused: the database refuses the request itself (a query without
	// its index, no permission); asking again does not help. Err carries
	// the database's gRPC status, which is relayed.
	Refused
	// Corrupt: a document that does not decode.
	Corrupt
	// Contended: the state kept changing through the whole budget of
	// commits.
	Contended
)

func (e *StoreError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// storeErr turns a store failure into the caller's answer: transient
// (retry later) unless the caller gave up, or what Firestore said of a
// request it refuses. Other errors (a decision's own) are returned as they
// are.
func storeErr(ctx context.Context, err error) error {
	var se *StoreError
	if !errors.As(err, &se) {
		return err
	}
	switch se.Kind {
	case Refused:
		return status.Errorf(status.Code(se.Err), "%s: firestore: %v", se.Op, se.Err)
	case Corrupt:
		return status.Errorf(codes.DataLoss, "%v", se.Err)
	case Contended:
		// Not an outage: this one document is busy.
		return status.Errorf(codes.Aborted, "%s: %v", se.Op, se.Err)
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Errorf(codes.Unavailable, "%s: firestore: %v", se.Op, se.Err)
}

// update is Store.Update with its failures as the caller's answer.
func (s *Service) update(ctx context.Context, op string, ref dispatch.MessageRef, assume *Assumed, decide Decide) error {
	_, err := s.commit(ctx, ref, op, assume, decide)
	return storeErr(ctx, err)
}
