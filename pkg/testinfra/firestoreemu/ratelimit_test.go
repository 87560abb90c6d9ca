package firestoreemu_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
)

// TestDocumentWriteRate: writes to one document are held to the rate,
// whether they come one by one or in commits with other documents, and
// commits to other documents are not held behind them.
func TestDocumentWriteRate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const perSecond, writes = 5, 11
	srv := newServer(t, firestoreemu.Options{DocumentWriteRate: perSecond})
	c := newClient(t, srv, "(default)")
	hot := c.Doc("metrics/hot")

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*writes)
	for i := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			//lint:ignore SA1019 a WriteBatch is a commit without a transaction, as the recorder's result commits are.
			b := c.Batch()
			b.Set(hot, map[string]any{"n": firestore.Increment(1)}, firestore.MergeAll)
			b.Set(c.Doc(fmt.Sprintf("messages/m%d", i)), map[string]any{"sent": true})
			if _, err := b.Commit(ctx); err != nil {
				errs <- err
			}
		}()
	}
	var cold time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Started with the hot writes queued: each of these documents is
		// written once, so none waits.
		time.Sleep(50 * time.Millisecond)
		t0 := time.Now()
		for i := range writes {
			if _, err := c.Doc(fmt.Sprintf("other/o%d", i)).Set(ctx, map[string]any{"i": i}); err != nil {
				errs <- err
			}
		}
		cold = time.Since(t0)
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	// The first write takes the one token of the burst; the others wait
	// 1/rate each.
	if min := time.Duration(writes-1) * time.Second / perSecond; elapsed < min {
		t.Errorf("%d writes to one document took %v; at %d/s they take at least %v", writes, elapsed, perSecond, min)
	}
	if cold >= time.Second {
		t.Errorf("%d writes to other documents took %v while one document was hot: held behind it", writes, cold)
	}
	snap, err := hot.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := snap.Data()["n"]; n != int64(writes) {
		t.Errorf("n = %v, want %d: a held write was lost", n, writes)
	}
}

// TestDocumentWriteRateTransactions: read-modify-write transactions on one
// document queue at its rate, each holding its lock while it waits, and
// none is lost.
func TestDocumentWriteRateTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const perSecond, writes = 10, 11
	srv := newServer(t, firestoreemu.Options{DocumentWriteRate: perSecond})
	c := newClient(t, srv, "(default)")
	hot := c.Doc("metrics/hot")
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				snap, err := tx.Get(hot)
				var n int64
				if err == nil {
					n, _ = snap.Data()["n"].(int64)
				}
				return tx.Set(hot, map[string]any{"n": n + 1})
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if min := time.Duration(writes-1) * time.Second / perSecond; time.Since(start) < min {
		t.Errorf("%d transactions took %v; at %d/s they take at least %v", writes, time.Since(start), perSecond, min)
	}
	snap, err := hot.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := snap.Data()["n"]; n != int64(writes) {
		t.Errorf("n = %v, want %d", n, writes)
	}
}
