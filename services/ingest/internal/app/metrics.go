package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/whatsapp/webhook"
)

// Metrics are the series of how events and webhooks ended; the HTTP
// adapter counts the requests themselves. Labels carry only event types,
// reasons, kinds and dependency names: never ids or phone numbers.
type Metrics struct {
	received   *prometheus.CounterVec
	published  prometheus.Counter
	rejected   *prometheus.CounterVec
	duplicates prometheus.Counter
	transient  *prometheus.CounterVec

	reconciled      *prometheus.CounterVec
	reconcilePasses *prometheus.CounterVec

	signatureFailures *prometheus.CounterVec
	eventsPublished   *prometheus.CounterVec
	partsSkipped      *prometheus.CounterVec
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_events_received_total",
			Help: "CloudEvents received, by event type (other for types ingest does not know).",
		}, []string{"type"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_ingest_tasks_published_total",
			Help: "SendTasks published to the tasks topic.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_events_rejected_total",
			Help: "Events answered 2xx without a task because they can never succeed, by reason.",
		}, []string{"reason"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_ingest_duplicate_events_total",
			Help: "Deliveries of an event id already in flight or recently published, answered with the first delivery's outcome.",
		}),
		transient: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_transient_failures_total",
			Help: "Events answered 5xx so that Eventarc retries them, by failing dependency.",
		}, []string{"dependency"}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_reconciled_total",
			Help: "Documents the reconciler found without pipeline state after the grace period, by outcome (published, refused: their event was lost or late; skipped: not the pipeline's to send; retry: a transient failure).",
		}, []string{"outcome"}),
		reconcilePasses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_reconcile_passes_total",
			Help: "Reconciliation passes, by result (complete, failed: the query failed, e.g. without its index).",
		}, []string{"result"}),
		signatureFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_signature_failures_total",
			Help: "Webhook POSTs answered 401, by reason: missing, malformed or mismatched X-Hub-Signature-256.",
		}, []string{"reason"}),
		eventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_events_published_total",
			Help: "Events published from webhooks to the status events topic, by kind (status, inbound, preference, template).",
		}, []string{"kind"}),
		partsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_webhook_parts_skipped_total",
			Help: "Parts of signed webhooks with nothing to publish, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.received, m.published, m.rejected, m.duplicates, m.transient, m.reconciled, m.reconcilePasses,
		m.signatureFailures, m.eventsPublished, m.partsSkipped)
	// Every series exists from the start, so a rate() over a fresh pod works
	// and dashboards list every reason.
	for _, t := range []string{firestoreevent.TypeCreated, firestoreevent.TypeCreatedWithAuthContext, "other"} {
		m.received.WithLabelValues(t)
	}
	for _, r := range []string{
		firestoreevent.ReasonWrongEventType, firestoreevent.ReasonNotAChatMessage, firestoreevent.ReasonInvalidEvent,
		chatmessage.ReasonInvalidData, chatmessage.ReasonNoWhatsAppConfig, chatmessage.ReasonFromDriver, chatmessage.ReasonMigrated,
		chatmessage.ReasonTemplateNotApproved, chatmessage.ReasonTemplateLanguage, chatmessage.ReasonTemplateParameters,
	} {
		m.rejected.WithLabelValues(r)
	}
	for _, o := range []string{ReconcilePublished, ReconcileRefused, ReconcileSkipped, ReconcileRetry} {
		m.reconciled.WithLabelValues(o)
	}
	for _, r := range []string{"complete", "failed"} {
		m.reconcilePasses.WithLabelValues(r)
	}
	for _, d := range []string{DepFirestore, DepPubSub} {
		m.transient.WithLabelValues(d)
	}
	for _, r := range []string{webhook.ReasonMissing, webhook.ReasonMalformed, webhook.ReasonMismatch} {
		m.signatureFailures.WithLabelValues(r)
	}
	for _, k := range []string{"status", "inbound", "preference", "template"} {
		m.eventsPublished.WithLabelValues(k)
	}
	return m
}

// firestoreTypes are the Firestore document event types; a trigger
// misconfigured to send updates or deletions shows under its own type.
var firestoreTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, change := range []string{"created", "updated", "deleted", "written"} {
		m["google.cloud.firestore.document.v1."+change] = true
		m["google.cloud.firestore.document.v1."+change+".withAuthContext"] = true
	}
	return m
}()

// typeLabel bounds the type label to the Firestore document event types.
func typeLabel(t string) string {
	if firestoreTypes[t] {
		return t
	}
	return "other"
}
