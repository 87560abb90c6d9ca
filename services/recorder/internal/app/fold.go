package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Ledger is one of the recorder's ledgers: the commit that counts a message
// writes one entry for it (create-only, one per message path) instead of
// incrementing a shared document, which then takes one write per fold
// rather than one per message (Firestore sustains about one write per
// second to one document).
type Ledger string

const (
	// LedgerSent: sent messages, under their sender's metrics document,
	// folded into its numberOfWhatsappMessagesSent.
	LedgerSent Ledger = "sent"
	// LedgerCosts: priced messages (CostEntry), under their lease, folded
	// into the lease's cost table of the month.
	LedgerCosts Ledger = "costs"
)

// ledgers are folded in this order.
var ledgers = []Ledger{LedgerSent, LedgerCosts}

// LedgerEntry is a message counted in a ledger and not yet folded into its
// counter document.
type LedgerEntry struct {
	// Path is the entry's document; Counter the document it counts in.
	Path, Counter string
	CountedAt     time.Time
}

// LedgerFold is the entries of one counter document folded in one
// transaction.
type LedgerFold struct {
	Ledger  Ledger
	Counter string
	Entries []string
}

// foldBatch bounds a fold's entries: their deletes and the counter's
// increment stay under Firestore's 500 writes per commit.
const foldBatch = 400

// foldsOf groups entries by counter document into folds of at most max
// entries, in the order the documents were first seen.
func foldsOf(l Ledger, entries []LedgerEntry, max int) []LedgerFold {
	var (
		out []LedgerFold
		at  = map[string]int{} // counter document → its open fold in out
	)
	for _, e := range entries {
		i, ok := at[e.Counter]
		if !ok || len(out[i].Entries) == max {
			out = append(out, LedgerFold{Ledger: l, Counter: e.Counter})
			i = len(out) - 1
			at[e.Counter] = i
		}
		out[i].Entries = append(out[i].Entries, e.Path)
	}
	return out
}

// FoldLedgers folds the pending entries of every ledger into their
// counters, one transaction per counter document and batch, until none is
// pending or ctx ends; it returns how many it folded. Several recorders may
// fold at once: a fold counts only the entries it deletes, so each counts
// once.
func (s *Service) FoldLedgers(ctx context.Context) (int, error) {
	total := 0
	for _, l := range ledgers {
		n, err := s.fold(ctx, l)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Service) fold(ctx context.Context, l Ledger) (int, error) {
	const page = 4 * foldBatch
	m := s.m.ledgers[l]
	total := 0
	for {
		entries, err := s.store.LedgerEntries(ctx, l, page)
		if err != nil {
			return total, err
		}
		for _, f := range foldsOf(l, entries, foldBatch) {
			folded, err := s.store.Fold(ctx, f)
			if err != nil {
				return total, err
			}
			// Real time, not Config.Clock: CountedAt is Firestore's.
			now := time.Now()
			for _, e := range folded {
				m.lag.Observe(now.Sub(e.CountedAt).Seconds())
			}
			m.folded.Add(float64(len(folded)))
			total += len(folded)
		}
		if len(entries) < page {
			return total, nil
		}
	}
}

// RunCounterFolder folds the ledgers every interval until ctx ends, so a
// counter trails its messages by about interval.
func (s *Service) RunCounterFolder(ctx context.Context, interval time.Duration) error {
	return every(ctx, interval, func() {
		if _, err := s.FoldLedgers(ctx); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("fold of the ledgers failed; next fold will try again")
		}
	})
}

// ledgerMetrics are one ledger's fold metrics.
type ledgerMetrics struct {
	folded prometheus.Counter
	lag    prometheus.Histogram
}

// newLedgerMetrics are a ledger's metrics, folded and lag (named in full
// where they are called, as docs/metrics.md's check reads them); what says
// what its entries count, counter into what.
func newLedgerMetrics(folded, lag, what, counter string) ledgerMetrics {
	return ledgerMetrics{
		folded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: folded,
			Help: what + " ledger entries folded into " + counter + ".",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    lag,
			Help:    "Time from a ledger entry (" + what + ") to its fold: how far " + counter + " trails the messages.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 10),
		}),
	}
}
