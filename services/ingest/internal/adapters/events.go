package adapters

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// maxBodyBytes bounds a request body. A Firestore document is at most
// 1 MiB; its DocumentEventData, even as JSON in a structured event, stays
// well below this.
const maxBodyBytes = 4 << 20

// maxIDBytes and maxSourceBytes bound a CloudEvent's id and source.
// Eventarc's are a UUID-like id and a source naming a project, database and
// document.
const (
	maxIDBytes     = 256
	maxSourceBytes = 4096
)

// EventHandler is the CloudEvents endpoint Eventarc pushes to.
//
// Answers, following Eventarc's delivery semantics (Eventarc Standard
// delivers through a Pub/Sub push subscription: a 2xx acknowledges the event,
// any other answer is retried with backoff for up to 24 hours):
//   - 200 once the task is published;
//   - 200 with the reason for an event that can never succeed (wrong type,
//     not a chat message, invalid data, no WhatsApp configuration, from a
//     driver, migrated), so Eventarc stops retrying; for invalid data and
//     no WhatsApp configuration only once the refusal that puts the reason
//     on the document is published;
//   - 503 for a transient failure (Firestore or Pub/Sub unavailable, the
//     handling timeout), so Eventarc retries;
//   - 400 (413 when too large, 405 for other methods) for a request that is
//     not a CloudEvent at all. Eventarc never sends such a request, so these
//     answer misdirected callers; were Eventarc ever to, its retries would
//     keep the event for a fixed deployment instead of dropping it.
type EventHandler struct {
	in        *app.Ingester
	malformed prometheus.Counter
	latency   *prometheus.HistogramVec
	log       *logrus.Entry
}

// NewEventHandler serves in's HandleEvent, registering the request metrics
// on reg.
func NewEventHandler(in *app.Ingester, reg prometheus.Registerer, log *logrus.Entry) *EventHandler {
	h := &EventHandler{
		in: in,
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_ingest_malformed_requests_total",
			Help: "Requests that were not CloudEvents (answered 4xx).",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wadispatch_ingest_event_handling_seconds",
			Help:    "Time from receiving a request to answering it, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"outcome"}),
		log: log,
	}
	reg.MustRegister(h.malformed, h.latency)
	return h
}

func (h *EventHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "CloudEvents are POSTed", http.StatusMethodNotAllowed)
		h.malformed.Inc()
		h.observe(app.OutcomeMalformed, start)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	ce, err := firestoreevent.ReadRequest(r)
	if err != nil {
		code := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		h.malformed.Inc()
		h.observe(app.OutcomeMalformed, start)
		h.log.WithError(err).WithField("status", code).Warn("request is not a CloudEvent")
		writeJSON(w, code, map[string]string{"outcome": app.OutcomeMalformed, "error": err.Error()})
		return
	}
	if len(ce.ID()) > maxIDBytes || len(ce.Source()) > maxSourceBytes {
		// Eventarc's ids and sources are short; a longer one is not from it
		// and must not reach log lines, spans or the dedupe key.
		h.malformed.Inc()
		h.observe(app.OutcomeMalformed, start)
		h.log.WithFields(logrus.Fields{"idBytes": len(ce.ID()), "sourceBytes": len(ce.Source()), "status": http.StatusBadRequest}).Warn("CloudEvent id or source too long")
		writeJSON(w, http.StatusBadRequest, map[string]string{"outcome": app.OutcomeMalformed, "error": fmt.Sprintf("a CloudEvent id is limited to %d bytes, a source to %d", maxIDBytes, maxSourceBytes)})
		return
	}
	ctx, span := startEventSpan(r, ce)
	res := h.in.HandleEvent(ctx, ce)

	body := map[string]string{"outcome": res.Outcome}
	code := http.StatusOK
	switch res.Outcome {
	case app.OutcomePublished:
		body["pubsubMessageId"] = res.PubsubID
	case app.OutcomeRejected:
		body["reason"] = res.Reason
		body["detail"] = res.Err.Error()
		if res.Refused {
			body["refusalPubsubMessageId"] = res.PubsubID
		}
	default:
		code = http.StatusServiceUnavailable
		body["error"] = fmt.Sprint(res.Err)
	}
	if res.MessagePath != "" {
		body["messagePath"] = res.MessagePath
	}
	h.observe(res.Outcome, start)
	endEventSpan(span, res)
	writeJSON(w, code, body)
}

func (h *EventHandler) observe(outcome string, start time.Time) {
	h.latency.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
