package app

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// The reconciler finds chat message documents whose creation event never
// reached ingest (a trigger delivery dropped, Eventarc giving up after an
// outage) and hands each to process, as its event would have. It finds
// them by the timestamp the web app writes on every message, since
// Firestore cannot query a document's create time: documents written
// between Window and Grace ago that carry no pipeline status. Grace gives
// a document's own event time to be handled and its send claimed.
//
// Several ingest pods may reconcile at once, and an event may still arrive
// for a document being reconciled: the recorder's claim lets one task
// through, and writes a refusal only on a message without a state, so
// doing a document twice changes nothing the driver or the web app sees.

// Recent reads the chat message documents written in a time range.
type Recent interface {
	// Messages yields, oldest first, the chatMessages documents whose
	// timestamp field is at or after from and before to.
	Messages(ctx context.Context, from, to time.Time) iter.Seq2[RecentMessage, error]
}

// RecentMessage is a document Recent found: its full path and what is stored.
type RecentMessage struct {
	Path   string
	Stored StoredMessage
}

// ReconcileConfig is the reconciler's part of ingest's environment.
type ReconcileConfig struct {
	// Interval between passes.
	Interval time.Duration
	// Grace is how old a document must be before it is taken.
	Grace time.Duration
	// Window is how far back a pass looks.
	Window time.Duration
}

// Outcomes of a reconciled document (the reconciled metric's label).
const (
	ReconcilePublished = "published"
	ReconcileRefused   = "refused"
	// ReconcileSkipped: not the pipeline's to send (a driver's reply, a
	// migrated message) or not a message at all; its document stays as it is.
	ReconcileSkipped = "skipped"
	// ReconcileRetry: a transient failure; the next pass tries again.
	ReconcileRetry = "retry"
)

// Reconciler runs reconciliation passes for an Ingester.
type Reconciler struct {
	in     *Ingester
	recent Recent
	cfg    ReconcileConfig
	log    *logrus.Entry

	// handled remembers the documents handed on, until they leave the
	// window: a task waiting in a backlog longer than Grace (a sender
	// outage) is then republished once per pod, not once per pass.
	mu      sync.Mutex
	handled map[string]time.Time
}

// NewReconciler reconciles through in's own validation and publishers.
func NewReconciler(in *Ingester, recent Recent, cfg ReconcileConfig, log *logrus.Entry) *Reconciler {
	return &Reconciler{in: in, recent: recent, cfg: cfg, log: log, handled: map[string]time.Time{}}
}

// PassReport counts what one pass did, by outcome.
type PassReport map[string]int

// Run passes at once and then every Interval until ctx ends. A failed pass
// is logged and counted; the next one covers the same documents.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.WithError(err).Warn("reconciliation pass failed; the next pass covers the same documents")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass looks once at the documents written between Window and Grace ago.
func (r *Reconciler) Pass(ctx context.Context) (PassReport, error) {
	now := r.in.now()
	from, to := now.Add(-r.cfg.Window), now.Add(-r.cfg.Grace)
	r.forget(now)
	// Every document of a pass shares one id: its logs and tasks say which
	// pass found them.
	passID := fmt.Sprintf("reconcile-%d", now.UnixMilli())
	report := PassReport{}
	for m, err := range r.recent.Messages(ctx, from, to) {
		if err != nil {
			r.in.metrics.reconcilePasses.WithLabelValues("failed").Inc()
			return report, err
		}
		if outcome, done := r.reconcile(ctx, m, passID, now); done {
			report[outcome]++
			r.in.metrics.reconciled.WithLabelValues(outcome).Inc()
		}
	}
	r.in.metrics.reconcilePasses.WithLabelValues("complete").Inc()
	if len(report) > 0 {
		r.log.WithFields(logrus.Fields{"from": from, "to": to, "outcomes": map[string]int(report)}).Info("reconciliation pass done")
	}
	return report, nil
}

// reconcile hands on one document unless it has a pipeline status or was
// handed on before; done reports whether it was looked at.
func (r *Reconciler) reconcile(ctx context.Context, m RecentMessage, passID string, now time.Time) (outcome string, done bool) {
	if !pending(m.Stored.Fields) || r.seen(m.Path) {
		return "", false
	}
	ref, err := dispatch.ParseMessagePath(m.Path)
	if err != nil {
		// Another collection named chatMessages: not the web app's messages.
		r.log.WithError(err).Debug("reconciler skips a chatMessages document outside the message path")
		r.remember(m.Path, now)
		return ReconcileSkipped, true
	}
	// Each document's trace starts here, as an event's starts at ingest:
	// its task carries it on to the sender.
	ctx, span := tracing.Tracer().Start(ctx, "ingest reconcile", trace.WithNewRoot(),
		trace.WithAttributes(attribute.String("wadispatch.message_path", ref.Path()), attribute.String("wadispatch.pass", passID)))
	defer func() {
		span.SetAttributes(attribute.String("wadispatch.outcome", outcome))
		span.End()
	}()
	log := logging.WithContext(ctx, r.log).WithFields(logrus.Fields{"messagePath": ref.Path(), "eventId": passID})
	ctx, cancel := context.WithTimeout(ctx, r.in.cfg.Timeout)
	defer cancel()
	res := r.in.process(ctx, ref, m.Stored, passID)
	switch {
	case res.Outcome == OutcomePublished:
		r.remember(m.Path, now)
		log.WithField("pubsubMessageId", res.PubsubID).Warn("document found without pipeline state after the grace period; task published (its event was lost or is late)")
		return ReconcilePublished, true
	case res.Outcome == OutcomeRejected && res.Refused:
		r.remember(m.Path, now)
		logRejection(log.WithField("reconciled", true), res)
		return ReconcileRefused, true
	case res.Outcome == OutcomeRejected:
		r.remember(m.Path, now)
		return ReconcileSkipped, true
	}
	span.SetStatus(codes.Error, fmt.Sprint(res.Err))
	log.WithError(res.Err).Warn("document found without pipeline state could not be handled; the next pass tries again")
	return ReconcileRetry, true
}

// pending reports whether a stored message has no pipeline status: the
// recorder writes one on the document when it claims, records or refuses
// the message. A status the pipeline does not write is the web app's.
func pending(fields map[string]any) bool {
	s, _ := fields["status"].(string)
	return dispatch.Status(s).Proto() == wadispatchv1.MessageStatus_MESSAGE_STATUS_UNSPECIFIED
}

func (r *Reconciler) seen(path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.handled[path]
	return ok
}

// remember keeps path until it has surely left the window.
func (r *Reconciler) remember(path string, now time.Time) {
	r.mu.Lock()
	r.handled[path] = now.Add(r.cfg.Window)
	r.mu.Unlock()
}

func (r *Reconciler) forget(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, until := range r.handled {
		if now.After(until) {
			delete(r.handled, p)
		}
	}
}
