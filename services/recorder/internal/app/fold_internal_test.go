package app

import (
	"fmt"
	"testing"
)

func TestFoldsOfGroupsByMetricsDocumentInBatches(t *testing.T) {
	var entries []SentEntry
	for i := range 7 {
		entries = append(entries, SentEntry{Path: fmt.Sprintf("m/a/sentLedger/%d", i), MetricsDoc: "m/a"})
	}
	entries = append(entries, SentEntry{Path: "m/b/sentLedger/0", MetricsDoc: "m/b"})
	folds := foldsOf(entries, 3)
	var got []string
	for _, f := range folds {
		got = append(got, fmt.Sprintf("%s:%d", f.MetricsDoc, len(f.Entries)))
	}
	if fmt.Sprint(got) != "[m/a:3 m/a:3 m/a:1 m/b:1]" {
		t.Errorf("folds %v, want m/a in batches of 3, then m/b", got)
	}
	if folds := foldsOf(nil, 3); len(folds) != 0 {
		t.Errorf("folds of nothing: %v", folds)
	}
}
