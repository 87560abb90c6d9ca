package app

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the sender's Prometheus metrics. Labels carry outcomes,
// decisions, codes and reasons only: never a token, a number or an id.
type Metrics struct {
	tasks        *prometheus.CounterVec
	poison       *prometheus.CounterVec
	claims       *prometheus.CounterVec
	calls        *prometheus.CounterVec
	callDuration prometheus.Histogram
	retries      *prometheus.CounterVec
	rateWaits    prometheus.Histogram
	inFlight     prometheus.Gauge
	deadLetters  prometheus.Counter
	releases     *prometheus.CounterVec
	// publishRetries counts publishes tried again, by topic.
	publishRetries *prometheus.CounterVec
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_tasks_total",
			Help: "Tasks handled, by outcome (sent, failed, duplicate, in_flight, unknown, outcome_unknown, poison, ...) and whether they were acked.",
		}, []string{"outcome", "ack"}),
		poison: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_poison_tasks_total",
			Help: "Tasks that cannot be attributed to a message, by reason; nacked until the subscription dead-letters them.",
		}, []string{"reason"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_claims_total",
			Help: "Claim answers from the recorder, by decision (error when the call failed).",
		}, []string{"decision"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_whatsapp_calls_total",
			Help: "WhatsApp send calls, by result: ok, Meta's error code, or the transport reason.",
		}, []string{"code", "reason"}),
		callDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wadispatch_sender_whatsapp_call_duration_seconds",
			Help:    "Latency of WhatsApp send calls.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_retries_total",
			Help: "In-process retries of a WhatsApp call, by the reason of the failure retried.",
		}, []string{"reason"}),
		rateWaits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wadispatch_sender_rate_limit_wait_seconds",
			Help:    "Waits imposed by the per-phone-number rate limiter (only waits longer than zero).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wadispatch_sender_in_flight_tasks",
			Help: "Tasks being processed now.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_sender_dead_lettered_tasks_total",
			Help: "Tasks published to the dead-letter topic after their retries were exhausted.",
		}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_claim_releases_total",
			Help: "Claims released before a retry wait, by result (released; refused: the claim was no longer this sender's; error: kept and retried under it).",
		}, []string{"result"}),
		publishRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_publish_retries_total",
			Help: "Publishes of a result or a dead letter tried again after a failure, by topic.",
		}, []string{"topic"}),
	}
	reg.MustRegister(m.tasks, m.poison, m.claims, m.calls, m.callDuration, m.retries, m.rateWaits, m.inFlight, m.deadLetters, m.releases, m.publishRetries)
	return m
}
