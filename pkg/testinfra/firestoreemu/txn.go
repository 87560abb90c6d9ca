package firestoreemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// txn is a transaction. Read-write transactions take an exclusive lock on
// every document they read (Firestore's pessimistic concurrency in server
// client libraries), so concurrent read-modify-write transactions on the same
// document run one after the other instead of failing. Commit additionally
// checks that nothing read has changed (a non-transactional write may have
// touched a locked document) and answers ABORTED if it has, which the client
// libraries retry.
type txn struct {
	id         string
	readOnly   bool
	optimistic bool
	readTime   time.Time            // snapshot of a read-only transaction
	reads      map[string]time.Time // document -> update time seen (zero if missing)
	queries    []txnQuery
	held       map[string]*docLock
	waiting    *docLock
	aborted    bool
	lastActive time.Time
}

// txnQuery remembers a query run in a read-write transaction so that commit
// can detect phantoms: documents entering or leaving its result.
type txnQuery struct {
	parent string
	q      *pb.StructuredQuery
	result string
}

type docLock struct {
	holder   *txn
	released chan struct{}
}

var errContention = status.Error(codes.Aborted, "too much contention on these documents; please try again")

func newTxnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// beginTxn starts a transaction in db; db.mu must be held.
func (s *Server) beginTxn(db *database, opts *pb.TransactionOptions) (*txn, error) {
	now := time.Now()
	for id, t := range db.txns {
		if now.Sub(t.lastActive) > 10*s.opts.TransactionIdleTimeout {
			db.abortTxn(t)
			delete(db.txns, id)
		}
	}
	t := &txn{
		id:         newTxnID(),
		reads:      map[string]time.Time{},
		held:       map[string]*docLock{},
		lastActive: now,
	}
	switch m := opts.GetMode().(type) {
	case *pb.TransactionOptions_ReadOnly_:
		t.readOnly = true
		if rt := m.ReadOnly.GetReadTime(); rt != nil {
			at, err := s.checkReadTime(rt)
			if err != nil {
				return nil, err
			}
			t.readTime = at
		} else {
			t.readTime = s.readTime()
		}
	case *pb.TransactionOptions_ReadWrite_:
		t.optimistic = m.ReadWrite.GetConcurrencyMode() == pb.TransactionOptions_OPTIMISTIC
	}
	db.txns[t.id] = t
	return t, nil
}

func (s *Server) checkReadTime(rt *timestamppb.Timestamp) (time.Time, error) {
	if err := rt.CheckValid(); err != nil {
		return time.Time{}, status.Errorf(codes.InvalidArgument, "read_time: %v", err)
	}
	at := rt.AsTime()
	if at.Before(time.Now().Add(-s.opts.VersionRetention)) {
		return time.Time{}, status.Errorf(codes.FailedPrecondition, "read_time %s is older than the emulator's version retention (%s)", at.Format(time.RFC3339Nano), s.opts.VersionRetention)
	}
	if at.After(time.Now().Add(time.Second)) {
		return time.Time{}, status.Errorf(codes.InvalidArgument, "read_time %s is in the future", at.Format(time.RFC3339Nano))
	}
	// A read at a time no commit has reached yet must stay valid: later
	// commits are stamped after it.
	s.observeTime(at.Truncate(time.Microsecond))
	return at, nil
}

// lookupTxn finds an open transaction; db.mu must be held.
func (db *database) lookupTxn(id []byte) (*txn, error) {
	t := db.txns[string(id)]
	if t == nil {
		return nil, status.Error(codes.InvalidArgument, "the referenced transaction has expired or is no longer valid")
	}
	if t.aborted {
		return nil, errContention
	}
	t.lastActive = time.Now()
	return t, nil
}

func (db *database) releaseLocks(t *txn) {
	for name, l := range t.held {
		delete(db.locks, name)
		l.holder = nil
		close(l.released)
	}
	t.held = map[string]*docLock{}
}

func (db *database) abortTxn(t *txn) {
	t.aborted = true
	db.releaseLocks(t)
}

func (db *database) endTxn(t *txn) {
	db.releaseLocks(t)
	delete(db.txns, t.id)
}

// lockDoc gives t the exclusive lock on a document, waiting for the current
// holder. db.mu must be held; it is released while waiting. A wait that
// would close a cycle aborts t (deadlock), and a holder idle for longer than
// the idle timeout is aborted so an abandoned transaction cannot block
// others forever.
func (s *Server) lockDoc(ctx context.Context, db *database, t *txn, name string) error {
	if t.optimistic {
		return nil
	}
	for {
		if t.aborted {
			return errContention
		}
		l := db.locks[name]
		if l == nil {
			l = &docLock{holder: t, released: make(chan struct{})}
			db.locks[name] = l
			t.held[name] = l
			return nil
		}
		if l.holder == t {
			return nil
		}
		for h := l.holder; h != nil; {
			if h == t {
				db.abortTxn(t)
				return errContention
			}
			if h.waiting == nil {
				break
			}
			h = h.waiting.holder
		}
		holder := l.holder
		t.waiting = l
		db.mu.Unlock()
		timer := time.NewTimer(s.opts.TransactionIdleTimeout)
		var timedOut bool
		var ctxErr error
		select {
		case <-l.released:
		case <-ctx.Done():
			ctxErr = ctx.Err()
		case <-timer.C:
			timedOut = true
		}
		timer.Stop()
		db.mu.Lock()
		t.waiting = nil
		t.lastActive = time.Now()
		if ctxErr != nil {
			return status.FromContextError(ctxErr).Err()
		}
		if timedOut && l.holder == holder && holder.waiting == nil &&
			time.Since(holder.lastActive) >= s.opts.TransactionIdleTimeout {
			db.abortTxn(holder)
		}
	}
}

// validateTxn checks at commit time that what t read is still what the
// database holds. db.mu must be held.
func (s *Server) validateTxn(db *database, t *txn) error {
	for name, seen := range t.reads {
		if !updateTimeOf(db.get(name, time.Time{})).Equal(seen) {
			return errContention
		}
	}
	for _, q := range t.queries {
		docs, err := s.execQuery(db, q.parent, q.q, time.Time{})
		if err != nil {
			return err
		}
		if resultKey(docs) != q.result {
			return errContention
		}
	}
	return nil
}

func updateTimeOf(d *pb.Document) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.GetUpdateTime().AsTime()
}

// resultKey summarizes a query result (names and versions) for comparison.
func resultKey(docs []*pb.Document) string {
	b := make([]byte, 0, 64*len(docs))
	for _, d := range docs {
		b = append(b, d.Name...)
		b = append(b, '@')
		b = d.GetUpdateTime().AsTime().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '\n')
	}
	return string(b)
}

// BeginTransaction implements the Firestore RPC.
func (s *Server) BeginTransaction(_ context.Context, req *pb.BeginTransactionRequest) (*pb.BeginTransactionResponse, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	t, err := s.beginTxn(db, req.GetOptions())
	if err != nil {
		return nil, err
	}
	return &pb.BeginTransactionResponse{Transaction: []byte(t.id)}, nil
}

// Rollback implements the Firestore RPC.
func (s *Server) Rollback(_ context.Context, req *pb.RollbackRequest) (*emptypb.Empty, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.txns[string(req.GetTransaction())]
	if t == nil {
		return nil, status.Error(codes.InvalidArgument, "the referenced transaction has expired or is no longer valid")
	}
	db.endTxn(t)
	return &emptypb.Empty{}, nil
}
