package app

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the recorder's Prometheus metrics. Labels carry outcomes,
// decisions and reasons only, never ids or phone numbers.
type Metrics struct {
	results        *prometheus.CounterVec
	claims         *prometheus.CounterVec
	statusEvents   *prometheus.CounterVec
	commitRetries  *prometheus.CounterVec
	ancillaryRetry prometheus.Counter
	recordLatency  prometheus.Histogram
	swept          prometheus.Counter
	stalled        prometheus.Gauge
	releases       *prometheus.CounterVec
	inbound        *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	templateEvents *prometheus.CounterVec
	resolved       *prometheus.CounterVec
	pendingDropped *prometheus.CounterVec
	ledgers        map[Ledger]ledgerMetrics
	priced         *prometheus.CounterVec
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_results_recorded_total",
			Help: "Send results recorded, by outcome and whether they changed anything (applied=false: recorded before).",
		}, []string{"outcome", "applied"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_claims_total",
			Help: "Claims answered, by decision.",
		}, []string{"decision"}),
		statusEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_status_events_total",
			Help: "WhatsApp status events, by result (applied; ignored: would move status back, or a repeat; early: came before its claim's result, kept on the state; pending: no result recorded its wamid, kept by wamid; resolved: resolved an UNKNOWN message).",
		}, []string{"result"}),
		commitRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_firestore_commit_retries_total",
			Help: "Firestore commits tried again, by reason (aborted, unavailable, precondition: state changed since read).",
		}, []string{"reason"}),
		ancillaryRetry: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_recorder_ancillary_write_retries_total",
			Help: "Ancillary database writes tried again after a failure.",
		}),
		recordLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wadispatch_recorder_record_duration_seconds",
			Help:    "Time to record a result in both databases.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_recorder_expired_claims_marked_unknown_total",
			Help: "Claims the sweeper found expired without an outcome and marked UNKNOWN.",
		}),
		stalled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wadispatch_recorder_stalled_claims",
			Help: "Messages SENDING under a claim released at least RECORDER_STALLED_AGE ago that no claim took over since (their task did not come back), at the last sweep.",
		}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_claim_releases_total",
			Help: "ReleaseClaim answers, by result (released, already: released before, refused: not the current claim or an outcome recorded).",
		}, []string{"result"}),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_driver_replies_total",
			Help: "Driver's messages from WhatsApp webhooks and their media, by outcome (recorded, duplicate, unmatched: kept for operators, no enquiry of its leases to attach it to; applied, stale: reactions, edits, revokes; media_recorded, media_duplicate, media_no_reply).",
		}, []string{"outcome"}),
		templateEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_template_events_total",
			Help: "WhatsApp's template webhooks and the sender's template snapshots applied to the leases' template registries, by outcome (recorded: an entry changed, stale: a later event was recorded already; snapshot_recorded, snapshot_unchanged).",
		}, []string{"outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_refusals_total",
			Help: "Refusals from ingest (messages the V-Customer can correct), by outcome (recorded: FAILED with the reason on the document, duplicate: refused before, has_state: claimed or recorded already and left alone, no_message: the document is gone).",
		}, []string{"outcome"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_sends_resolved_by_status_total",
			Help: "Sends without a result recorded as sent because WhatsApp's status webhooks named their claim, by what the claim was left as (unknown: marked UNKNOWN; expired: its lease ran out; released: released for a retry wait).",
		}, []string{"from"}),
		pendingDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_pending_statuses_dropped_total",
			Help: "Status webhooks kept for a wamid no result recorded, dropped after RECORDER_PENDING_STATUS_TTL, by reason (never_sent: nothing named a message of ours; not_recorded: its callback named one, under a claim that was not the current one).",
		}, []string{"reason"}),
		ledgers: map[Ledger]ledgerMetrics{
			LedgerSent: newLedgerMetrics("wadispatch_recorder_sent_ledger_folded_total", "wadispatch_recorder_sent_ledger_lag_seconds",
				"Sent messages'", "their sender's numberOfWhatsappMessagesSent"),
			LedgerCosts: newLedgerMetrics("wadispatch_recorder_cost_ledger_folded_total", "wadispatch_recorder_cost_ledger_lag_seconds",
				"Priced messages'", "their lease's cost table of the month (whatsappCosts)"),
		},
		priced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_messages_priced_total",
			Help: "Messages priced by WhatsApp (the pricing of their status webhooks), each counted once, by category, pricing_model and type.",
		}, []string{"category", "pricing_model", "type"}),
	}
	reg.MustRegister(m.results, m.claims, m.statusEvents, m.commitRetries, m.ancillaryRetry, m.recordLatency, m.swept, m.stalled, m.releases, m.inbound,
		m.refusals, m.templateEvents, m.resolved, m.pendingDropped, m.priced)
	for _, l := range ledgers {
		reg.MustRegister(m.ledgers[l].folded, m.ledgers[l].lag)
	}
	return m
}

// CommitRetried counts a commit tried again, by reason (aborted,
// unavailable, precondition): the store's retries are reported here.
func (m *Metrics) CommitRetried(reason string) { m.commitRetries.WithLabelValues(reason).Inc() }
