package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/firestoreevent"
)

// metrics are ingest's Prometheus series. Labels carry only event types,
// reasons, outcomes and dependency names: never ids or phone numbers.
type metrics struct {
	received   *prometheus.CounterVec
	published  prometheus.Counter
	rejected   *prometheus.CounterVec
	duplicates prometheus.Counter
	malformed  prometheus.Counter
	transient  *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

// Outcomes of one request, the latency histogram's label.
const (
	outcomePublished = "published"
	outcomeRejected  = "rejected"
	outcomeRetry     = "retry"
	outcomeMalformed = "malformed"
)

// Dependencies whose failures are transient.
const (
	depFirestore = "firestore"
	depPubSub    = "pubsub"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
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
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_ingest_malformed_requests_total",
			Help: "Requests that were not CloudEvents (answered 4xx).",
		}),
		transient: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_ingest_transient_failures_total",
			Help: "Events answered 5xx so that Eventarc retries them, by failing dependency.",
		}, []string{"dependency"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wadispatch_ingest_event_handling_seconds",
			Help:    "Time from receiving a request to answering it, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.received, m.published, m.rejected, m.duplicates, m.malformed, m.transient, m.latency)
	// Every series exists from the start, so a rate() over a fresh pod works
	// and dashboards list every reason.
	for _, t := range []string{firestoreevent.TypeCreated, firestoreevent.TypeCreatedWithAuthContext, "other"} {
		m.received.WithLabelValues(t)
	}
	for _, r := range []string{
		firestoreevent.ReasonWrongEventType, firestoreevent.ReasonNotAChatMessage, firestoreevent.ReasonInvalidEvent,
		chatmessage.ReasonInvalidData, chatmessage.ReasonNoWhatsAppConfig, chatmessage.ReasonFromDriver, chatmessage.ReasonMigrated,
	} {
		m.rejected.WithLabelValues(r)
	}
	for _, d := range []string{depFirestore, depPubSub} {
		m.transient.WithLabelValues(d)
	}
	return m
}

func (m *metrics) observe(outcome string, start time.Time) {
	m.latency.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
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
