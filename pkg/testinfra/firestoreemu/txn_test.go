package firestoreemu_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"google.golang.org/grpc/codes"
)

func TestConcurrentTransactionalIncrementsAreExact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	doc := c.Doc("counters/c")
	if _, err := doc.Set(ctx, map[string]any{"n": 100}); err != nil {
		t.Fatalf("set: %v", err)
	}
	const workers = 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				snap, err := tx.Get(doc)
				if err != nil {
					return err
				}
				n, _ := snap.DataAt("n")
				return tx.Set(doc, map[string]any{"n": n.(int64) + 1})
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("transaction: %v", err)
		}
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if n := snap.Data()["n"]; n != int64(100+workers) {
		t.Fatalf("n = %v, want %d", n, 100+workers)
	}
}

func TestTransactionAbortsWhenAReadDocumentChangesOutside(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	doc := c.Doc("acc/x")
	if _, err := doc.Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	var attempts int
	err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		attempts++
		snap, err := tx.Get(doc)
		if err != nil {
			return err
		}
		if attempts == 1 {
			// A non-transactional write lands between the read and the commit.
			if _, err := doc.Set(ctx, map[string]any{"n": 10}); err != nil {
				return err
			}
		}
		n, _ := snap.DataAt("n")
		return tx.Set(doc, map[string]any{"n": n.(int64) * 2})
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if attempts != 2 {
		t.Errorf("attempts = %d, want 2 (first aborted)", attempts)
	}
	snap, _ := doc.Get(ctx)
	if n := snap.Data()["n"]; n != int64(20) {
		t.Errorf("n = %v, want 20", n)
	}
}

func TestTransactionDeadlockResolves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	x, y := c.Doc("d/x"), c.Doc("d/y")
	for _, d := range []*firestore.DocumentRef{x, y} {
		if _, err := d.Set(ctx, map[string]any{"n": 0}); err != nil {
			t.Fatalf("set: %v", err)
		}
	}
	var both sync.WaitGroup
	both.Add(2)
	run := func(first, second *firestore.DocumentRef) error {
		var once sync.Once
		return c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			if _, err := tx.Get(first); err != nil {
				return err
			}
			// Both transactions hold their first lock before asking for the second.
			once.Do(func() { both.Done(); both.Wait() })
			s, err := tx.Get(second)
			if err != nil {
				return err
			}
			n, _ := s.DataAt("n")
			return tx.Set(second, map[string]any{"n": n.(int64) + 1})
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = run(x, y) }()
	go func() { defer wg.Done(); errs[1] = run(y, x) }()
	wg.Wait()
	if errors.Join(errs...) != nil {
		t.Fatalf("transactions: %v", errors.Join(errs...))
	}
	for _, d := range []*firestore.DocumentRef{x, y} {
		s, _ := d.Get(ctx)
		if n := s.Data()["n"]; n != int64(1) {
			t.Errorf("%s n = %v, want 1", d.ID, n)
		}
	}
}

func TestTransactionQueryPhantomAborts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	q := c.Collection("jobs").Where("state", "==", "open")
	if _, err := c.Doc("jobs/1").Set(ctx, map[string]any{"state": "open"}); err != nil {
		t.Fatalf("set: %v", err)
	}
	var attempts int
	var seen int
	err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		attempts++
		docs, err := tx.Documents(q).GetAll()
		if err != nil {
			return err
		}
		seen = len(docs)
		if attempts == 1 {
			if _, err := c.Doc("jobs/2").Set(ctx, map[string]any{"state": "open"}); err != nil {
				return err
			}
		}
		return tx.Set(c.Doc("summary/jobs"), map[string]any{"open": len(docs)})
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if attempts != 2 || seen != 2 {
		t.Errorf("attempts %d, seen %d; want a retry that sees 2 open jobs", attempts, seen)
	}
}

func TestReadOnlyTransactionAndReadTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	doc := c.Doc("v/1")
	wr1, err := doc.Set(ctx, map[string]any{"v": 1})
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := doc.Set(ctx, map[string]any{"v": 2}); err != nil {
		t.Fatalf("set: %v", err)
	}
	// read_time reads see the version current at that time.
	snap, err := doc.WithReadOptions(firestore.ReadTime(wr1.UpdateTime)).Get(ctx)
	if err != nil {
		t.Fatalf("get at read time: %v", err)
	}
	if v := snap.Data()["v"]; v != int64(1) {
		t.Errorf("v at read time = %v, want 1", v)
	}
	docs, err := c.Collection("v").WithReadOptions(firestore.ReadTime(wr1.UpdateTime.Add(-time.Microsecond))).Documents(ctx).GetAll()
	if err != nil || len(docs) != 0 {
		t.Errorf("query before creation: %d docs, %v", len(docs), err)
	}

	// A read-only transaction reads one snapshot even if writes land meanwhile.
	var reads []int64
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		reads = nil
		for i := 0; i < 2; i++ {
			s, err := tx.Get(doc)
			if err != nil {
				return err
			}
			v, _ := s.DataAt("v")
			reads = append(reads, v.(int64))
			if i == 0 {
				if _, err := doc.Set(ctx, map[string]any{"v": 3}); err != nil {
					return err
				}
			}
		}
		return nil
	}, firestore.ReadOnly)
	if err != nil {
		t.Fatalf("read-only transaction: %v", err)
	}
	if reads[0] != 2 || reads[1] != 2 {
		t.Errorf("read-only transaction reads %v, want [2 2]", reads)
	}
	// A read-time transaction sees the past, for documents and queries.
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		s, err := tx.Get(doc)
		if err != nil {
			return err
		}
		docs, err := tx.Documents(c.Collection("v").Where("v", "==", 1)).GetAll()
		if err != nil {
			return err
		}
		if v, _ := s.DataAt("v"); v != int64(1) || len(docs) != 1 {
			t.Errorf("read-time transaction: v = %v, query found %d, want 1 and 1", v, len(docs))
		}
		return nil
	}, firestore.TransactionReadTime(wr1.UpdateTime))
	if err != nil {
		t.Fatalf("read-time transaction: %v", err)
	}
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		return tx.Set(doc, map[string]any{"v": 4})
	}, firestore.ReadOnly)
	if err == nil {
		t.Errorf("write in a read-only transaction succeeded")
	}
	// The client refuses that write itself; the server must too.
	raw := newRawClient(t, srv)
	ro, err := raw.BeginTransaction(ctx, &pb.BeginTransactionRequest{Database: dbPath("(default)"), Options: &pb.TransactionOptions{
		Mode: &pb.TransactionOptions_ReadOnly_{ReadOnly: &pb.TransactionOptions_ReadOnly{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = raw.Commit(ctx, &pb.CommitRequest{Database: dbPath("(default)"), Transaction: ro.Transaction, Writes: []*pb.Write{
		{Operation: &pb.Write_Delete{Delete: docPath("(default)", "v/1")}},
	}})
	wantCode(t, err, codes.InvalidArgument)
}

func TestNewTransactionInReadOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	raw := newRawClient(t, srv)
	c := newClient(t, srv, "(default)")
	if _, err := c.Doc("lazy/a").Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	stream, err := raw.BatchGetDocuments(ctx, &pb.BatchGetDocumentsRequest{
		Database:            dbPath("(default)"),
		Documents:           []string{docPath("(default)", "lazy/a")},
		ConsistencySelector: &pb.BatchGetDocumentsRequest_NewTransaction{NewTransaction: &pb.TransactionOptions{}},
	})
	if err != nil {
		t.Fatalf("batch get: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if len(resp.Transaction) == 0 || resp.GetFound() == nil {
		t.Fatalf("response %v: want a found document and a new transaction id", resp)
	}
	// The document is locked by the lazily started transaction: another
	// transaction's read waits until it commits.
	var otherRead atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			_, err := tx.Get(c.Doc("lazy/a"))
			otherRead.Store(true)
			return err
		})
	}()
	time.Sleep(100 * time.Millisecond)
	if otherRead.Load() {
		t.Errorf("a second transaction read a document locked by another")
	}
	_, err = raw.Commit(ctx, &pb.CommitRequest{
		Database:    dbPath("(default)"),
		Transaction: resp.Transaction,
		Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docPath("(default)", "lazy/a"),
			Fields: map[string]*pb.Value{"n": {ValueType: &pb.Value_IntegerValue{IntegerValue: 2}}}}}}},
	})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("second transaction: %v", err)
	}
	_, err = raw.Commit(ctx, &pb.CommitRequest{Database: dbPath("(default)"), Transaction: resp.Transaction})
	wantCode(t, err, codes.InvalidArgument)
}

func TestAbandonedTransactionLosesItsLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t, firestoreemu.Options{TransactionIdleTimeout: 200 * time.Millisecond})
	raw := newRawClient(t, srv)
	c := newClient(t, srv, "(default)")
	if _, err := c.Doc("idle/a").Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	begin, err := raw.BeginTransaction(ctx, &pb.BeginTransactionRequest{Database: dbPath("(default)")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.GetDocument(ctx, &pb.GetDocumentRequest{
		Name:                docPath("(default)", "idle/a"),
		ConsistencySelector: &pb.GetDocumentRequest_Transaction{Transaction: begin.Transaction},
	}); err != nil {
		t.Fatal(err)
	}
	// The first transaction never finishes; the second waits for the idle
	// timeout, then takes the lock.
	start := time.Now()
	err = c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := tx.Get(c.Doc("idle/a")); err != nil {
			return err
		}
		return tx.Update(c.Doc("idle/a"), []firestore.Update{{Path: "n", Value: 2}})
	})
	if err != nil {
		t.Fatalf("second transaction: %v", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("second transaction finished after %v, before the idle timeout", waited)
	}
	_, err = raw.Commit(ctx, &pb.CommitRequest{Database: dbPath("(default)"), Transaction: begin.Transaction})
	wantCode(t, err, codes.Aborted)
}

// TestTransfersKeepTheTotal moves money between accounts from many
// goroutines, each transaction reading two accounts in random order (so
// lock cycles happen); the total must be conserved.
func TestTransfersKeepTheTotal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	const accounts, workers, transfers = 6, 8, 5
	for i := range accounts {
		if _, err := c.Doc(fmt.Sprintf("acct/%d", i)).Set(ctx, map[string]any{"balance": 100}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*transfers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range transfers {
				from, to := rng.IntN(accounts), rng.IntN(accounts-1)
				if to >= from {
					to++
				}
				a, b := c.Doc(fmt.Sprintf("acct/%d", from)), c.Doc(fmt.Sprintf("acct/%d", to))
				errs <- c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
					sa, err := tx.Get(a)
					if err != nil {
						return err
					}
					sb, err := tx.Get(b)
					if err != nil {
						return err
					}
					va, _ := sa.DataAt("balance")
					vb, _ := sb.DataAt("balance")
					if err := tx.Set(a, map[string]any{"balance": va.(int64) - 7}); err != nil {
						return err
					}
					return tx.Set(b, map[string]any{"balance": vb.(int64) + 7})
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("transfer: %v", err)
		}
	}
	docs, err := c.Collection("acct").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, d := range docs {
		v, _ := d.DataAt("balance")
		total += v.(int64)
	}
	if total != accounts*100 {
		t.Errorf("total %d, want %d", total, accounts*100)
	}
}
