package app_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// ledger lists the pending entries of every user.
func (e *env) ledger(t testing.TB) []string {
	t.Helper()
	snaps, err := e.db.CollectionGroup("sentLedger").Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range snaps {
		out = append(out, s.Ref.Path)
	}
	return out
}

// A result commit counts its send in the user's ledger, not on the metrics
// document; folds, however many run at once (several recorders), move
// each entry into the counter exactly once.
func TestSentLedgerFoldsOnceUnderConcurrentFolds(t *testing.T) {
	e := newEnv(t, envOptions{})
	const n = 30
	for i := range n {
		task := e.newMessage(t, fmt.Sprint("m", i))
		r := sent(task, e.claim(t, task, 0).GetClaimId(), fmt.Sprint("wamid.", i))
		e.record(t, r)
		e.record(t, r) // a repeat counts nothing more
	}
	if got := doc(t, e.db, "leasecompany/l1/performanceMetrics/u1"); got != nil {
		t.Errorf("metrics document %v before any fold: the result commits wrote it", got)
	}
	if got := len(e.ledger(t)); got != n {
		t.Fatalf("%d ledger entries, want one per sent message (%d)", got, n)
	}
	var (
		wg     sync.WaitGroup
		folded atomic.Int64
	)
	for range 3 {
		wg.Go(func() {
			k, err := e.svc.FoldLedgers(context.Background())
			if err != nil {
				t.Errorf("fold: %v", err)
			}
			folded.Add(int64(k))
		})
	}
	wg.Wait()
	if folded.Load() != n {
		t.Errorf("folds together folded %d entries, want %d", folded.Load(), n)
	}
	if got := e.sentCount(t); got != int64(n) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want %d", got, n)
	}
	if left := e.ledger(t); len(left) != 0 {
		t.Errorf("ledger entries left after the folds: %v", left)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_sent_ledger_folded_total", nil); got != n {
		t.Errorf("folded metric %v, want %d", got, n)
	}
}

// A failed send is not counted: no ledger entry.
func TestFailedSendWritesNoLedgerEntry(t *testing.T) {
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	e.record(t, failed(task, e.claim(t, task, 0).GetClaimId()))
	if left := e.ledger(t); len(left) != 0 {
		t.Errorf("ledger entries for a failed send: %v", left)
	}
}
