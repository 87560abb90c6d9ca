package app

import (
	"context"
	"time"
)

// SentEntry is a send counted in its sender's ledger and not yet folded
// into the counter: the commit that records a SENT outcome writes one
// instead of incrementing the metrics document, which then takes one write
// per fold rather than one per message (Firestore sustains about one write
// per second to one document).
type SentEntry struct {
	// Path is the entry's document; MetricsDoc the counter it counts in.
	Path, MetricsDoc string
	CountedAt        time.Time
}

// SentFold is the entries of one metrics document folded in one
// transaction.
type SentFold struct {
	MetricsDoc string
	Entries    []string
}

// foldBatch bounds a fold's entries: their deletes and the counter's
// increment stay under Firestore's 500 writes per commit.
const foldBatch = 400

// foldsOf groups entries by metrics document into folds of at most max
// entries, in the order the documents were first seen.
func foldsOf(entries []SentEntry, max int) []SentFold {
	var (
		out []SentFold
		at  = map[string]int{} // metrics document → its open fold in out
	)
	for _, e := range entries {
		i, ok := at[e.MetricsDoc]
		if !ok || len(out[i].Entries) == max {
			out = append(out, SentFold{MetricsDoc: e.MetricsDoc})
			i = len(out) - 1
			at[e.MetricsDoc] = i
		}
		out[i].Entries = append(out[i].Entries, e.Path)
	}
	return out
}

// FoldSentCounts folds the pending ledger entries into their counters,
// one transaction per metrics document and batch, until none is pending
// or ctx ends; it returns how many it folded. Several recorders may fold at
// once: a fold counts only the entries it deletes, so each counts once.
func (s *Service) FoldSentCounts(ctx context.Context) (int, error) {
	const page = 4 * foldBatch
	total := 0
	for {
		entries, err := s.store.SentLedger(ctx, page)
		if err != nil {
			return total, err
		}
		for _, f := range foldsOf(entries, foldBatch) {
			folded, err := s.store.FoldSent(ctx, f)
			if err != nil {
				return total, err
			}
			// Real time, not Config.Clock: CountedAt is Firestore's.
			now := time.Now()
			for _, e := range folded {
				s.m.ledgerLag.Observe(now.Sub(e.CountedAt).Seconds())
			}
			s.m.ledgerFolded.Add(float64(len(folded)))
			total += len(folded)
		}
		if len(entries) < page {
			return total, nil
		}
	}
}

// RunCounterFolder folds the ledger every interval until ctx ends, so a
// counter trails its sends by about interval.
func (s *Service) RunCounterFolder(ctx context.Context, interval time.Duration) error {
	return every(ctx, interval, func() {
		if _, err := s.FoldSentCounts(ctx); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("fold of the sent-message ledger failed; next fold will try again")
		}
	})
}
