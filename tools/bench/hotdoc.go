package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/firestore"
)

// HotDocument is the hot-document case: one user's burst to many drivers,
// all counted on that user's one metrics document, on a Firestore emulator
// that holds each document to a sustained write rate as Firestore does
// (about one write a second; firestoreemu's DocumentWriteRate).
type HotDocument struct {
	// Messages go from one user to as many distinct drivers.
	Messages int
	// Rate is the offered load in messages per second.
	Rate int
	// DocumentWriteRate and DocumentWriteBurst are the emulator's limit
	// per document, scaled to Rate: the ratio of the sending rate to the
	// document rate is what makes a hot document hot.
	DocumentWriteRate  float64
	DocumentWriteBurst int
}

// HotRow is one system's run of the hot-document case.
type HotRow struct {
	System         string
	Messages, Sent int
	// Recorded is from the first message document created to the last one
	// recorded; Counted to the counter's last write, once it equals Sent.
	Recorded, Counted time.Duration
	// Throughput is Sent over the later of the two; 0 when the counter
	// did not reach Sent within Config.Settle.
	Throughput float64
	Counter    int64
	// Violations are the audit's (counter exact and counted once
	// included).
	Violations int
}

// RunHotDocument runs the case for wadispatch, then for the seed design.
func RunHotDocument(ctx context.Context, cfg Config, hot HotDocument) ([]HotRow, error) {
	cfg.LogDir = filepath.Join(cfg.LogDir, "hot-document")
	cfg.FirestoreArgs = append(cfg.FirestoreArgs,
		"--document-write-rate", strconv.FormatFloat(hot.DocumentWriteRate, 'f', -1, 64),
		"--document-write-burst", strconv.Itoa(max(hot.DocumentWriteBurst, 1)))
	var rows []HotRow
	for _, with := range []func(context.Context, Config, func(*system) error) error{withWadispatch, withBaseline} {
		err := with(ctx, cfg, func(sys *system) error {
			row, err := sys.hotDocument(ctx, cfg, hot)
			rows = append(rows, row)
			return err
		})
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

func (sys *system) hotDocument(ctx context.Context, cfg Config, hot HotDocument) (HotRow, error) {
	row := HotRow{System: sys.name, Messages: hot.Messages}
	s := sys.stack
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		return row, err
	}
	defer fs.Close()
	anc, err := s.Firestore(ctx, "ancillary")
	if err != nil {
		return row, err
	}
	defer anc.Close()
	fleet := NewFleet(benchPhoneNumber, s.TokenRef, 1, hot.Messages, 1)
	if err := fleet.Seed(ctx, fs); err != nil {
		return row, err
	}
	msgs := make([]Message, hot.Messages)
	paths := make([]string, len(msgs))
	for i := range msgs {
		msgs[i] = fleet.Message("hot", i, 0)
		paths[i] = msgs[i].Path()
	}
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "%s: hot document: %d messages from one user to %d drivers at %d/s, %g writes/s per document\n",
			sys.name, len(msgs), len(fleet.Drivers()), hot.Rate, hot.DocumentWriteRate)
	}
	if err := Create(ctx, fs, msgs, hot.Rate); err != nil {
		return row, err
	}
	settleCtx, cancel := context.WithTimeout(ctx, cfg.Settle)
	defer cancel()
	docs, err := WaitFinal(settleCtx, fs, paths, 250*time.Millisecond)
	if err != nil && docs == nil {
		return row, err
	}
	var first, last time.Time
	for _, d := range docs {
		if first.IsZero() || d.CreatedAt.Before(first) {
			first = d.CreatedAt
		}
		if d.Sent() {
			row.Sent++
			if d.UpdatedAt.After(last) {
				last = d.UpdatedAt
			}
		}
	}
	row.Recorded = last.Sub(first)
	metrics := MetricsPath(msgs[0].Ref.LeaseID, msgs[0].User)
	counted, n, err := waitCounter(settleCtx, fs, metrics, int64(row.Sent))
	if err != nil {
		return row, err
	}
	row.Counter = n
	// A run is done when its messages are recorded and counted: one whose
	// counter never got there within Settle has no rate to show.
	if !counted.IsZero() {
		row.Counted = counted.Sub(first)
		if span := max(row.Recorded, row.Counted); span > 0 {
			row.Throughput = float64(row.Sent) / span.Seconds()
		}
	}
	report, err := Audit(ctx, fs, anc, s.SimulatorURL, msgs)
	if err != nil {
		return row, err
	}
	row.Violations = len(report.Violations)
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "%s: hot document: %s\n", sys.name, report.Summary())
	}
	return row, nil
}

// waitCounter polls the counter at path until it reaches want or ctx ends,
// and returns its value and, once it reached want, the time of its last
// write (Firestore's, comparable with the documents' times).
func waitCounter(ctx context.Context, fs *firestore.Client, path string, want int64) (time.Time, int64, error) {
	for {
		n, err := counter(ctx, fs, path)
		if err != nil && ctx.Err() == nil {
			return time.Time{}, 0, err
		}
		if err == nil && n >= want {
			snap, err := fs.Doc(path).Get(ctx)
			if err != nil {
				return time.Time{}, n, fmt.Errorf("read %s: %w", path, err)
			}
			return snap.UpdateTime, n, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, n, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PrintHotDocument writes one line per system.
func PrintHotDocument(w io.Writer, hot HotDocument, rows []HotRow) error {
	fmt.Fprintf(w, "Hot document: %d messages from one user to %d drivers offered at %d/s; Firestore emulator holding each document to %g writes/s (burst %d)\n",
		hot.Messages, hot.Messages, hot.Rate, hot.DocumentWriteRate, max(hot.DocumentWriteBurst, 1))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSTEM\tMSGS\tSENT\tALL RECORDED IN\tCOUNTER FINAL IN\tE2E MSG/S\tCOUNTER\tAUDIT")
	for _, r := range rows {
		audit := "ok"
		if r.Violations > 0 {
			audit = fmt.Sprintf("%d violations", r.Violations)
		}
		counted := "not within settle"
		if r.Counted > 0 {
			counted = r.Counted.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\t%d\t%s\n", r.System, r.Messages, r.Sent,
			r.Recorded.Round(100*time.Millisecond), counted, r.Throughput, r.Counter, audit)
	}
	return tw.Flush()
}
