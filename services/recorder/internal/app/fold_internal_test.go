package app

import (
	"fmt"
	"testing"
)

func TestFoldsOfGroupsByCounterDocumentInBatches(t *testing.T) {
	var entries []LedgerEntry
	for i := range 7 {
		entries = append(entries, LedgerEntry{Path: fmt.Sprintf("m/a/sentLedger/%d", i), Counter: "m/a"})
	}
	entries = append(entries, LedgerEntry{Path: "m/b/sentLedger/0", Counter: "m/b"})
	folds := foldsOf(LedgerSent, entries, 3)
	var got []string
	for _, f := range folds {
		got = append(got, fmt.Sprintf("%s:%d", f.Counter, len(f.Entries)))
	}
	if fmt.Sprint(got) != "[m/a:3 m/a:3 m/a:1 m/b:1]" {
		t.Errorf("folds %v, want m/a in batches of 3, then m/b", got)
	}
	if folds := foldsOf(LedgerSent, nil, 3); len(folds) != 0 {
		t.Errorf("folds of nothing: %v", folds)
	}
}
