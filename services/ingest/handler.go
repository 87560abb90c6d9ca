package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// maxBodyBytes bounds a request body. A Firestore document is at most
// 1 MiB; its DocumentEventData, even as JSON in a structured event, stays
// well below this.
const maxBodyBytes = 4 << 20

// taskSchema is the `schema` attribute of published tasks.
var taskSchema = string((&wadispatchv1.SendTask{}).ProtoReflect().Descriptor().FullName())

// ingester turns Eventarc's chat message creation events into SendTasks.
//
// Answers, following Eventarc's delivery semantics (Eventarc Standard
// delivers through a Pub/Sub push subscription: a 2xx acknowledges the event,
// any other answer is retried with backoff for up to 24 hours):
//   - 200 once the task is published;
//   - 200 with the reason for an event that can never succeed (wrong type,
//     not a chat message, invalid data, no WhatsApp configuration, from a
//     driver, migrated), logged and counted, so Eventarc stops retrying;
//   - 503 for a transient failure (Firestore or Pub/Sub unavailable, the
//     handling timeout), so Eventarc retries;
//   - 400 (413 when too large, 405 for other methods) for a request that is
//     not a CloudEvent at all. Eventarc never sends such a request, so these
//     answer misdirected callers; were Eventarc ever to, its retries would
//     keep the event for a fixed deployment instead of dropping it.
type ingester struct {
	fs        *firestore.Client
	publisher *pubsub.Publisher
	leases    *leaseConfigs
	dedupe    *dedupe
	database  string
	region    string
	timeout   time.Duration
	metrics   *metrics
	log       *logrus.Entry
}

// result is the outcome of handling one event.
type result struct {
	outcome     string // outcomePublished, outcomeRejected or outcomeRetry
	reason      string // for rejections
	err         error  // the rejection or the transient failure
	messagePath string
	pubsubID    string
}

// dependencyError is a transient failure of Firestore or Pub/Sub.
type dependencyError struct {
	dep string
	err error
}

func (e *dependencyError) Error() string { return e.dep + ": " + e.err.Error() }
func (e *dependencyError) Unwrap() error { return e.err }

// firestoreError classifies a Firestore read error. InvalidArgument means
// Firestore refuses the path itself, which no retry changes.
func firestoreError(what string, err error) error {
	if status.Code(err) == codes.InvalidArgument {
		return &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: fmt.Sprintf("%s: %v", what, err)}
	}
	return &dependencyError{dep: depFirestore, err: fmt.Errorf("%s: %w", what, err)}
}

func (in *ingester) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "CloudEvents are POSTed", http.StatusMethodNotAllowed)
		in.metrics.malformed.Inc()
		in.metrics.observe(outcomeMalformed, start)
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
		in.metrics.malformed.Inc()
		in.metrics.observe(outcomeMalformed, start)
		in.log.WithError(err).WithField("status", code).Warn("request is not a CloudEvent")
		writeJSON(w, code, map[string]string{"outcome": outcomeMalformed, "error": err.Error()})
		return
	}
	in.metrics.received.WithLabelValues(typeLabel(ce.Type())).Inc()
	ctx, span := startEventSpan(r, ce)
	logging.WithContext(ctx, in.log).WithFields(logrus.Fields{"eventId": ce.ID(), "type": ce.Type()}).Debug("event received")

	ctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	// CloudEvents ids are unique per source, not globally.
	res, dup := in.dedupe.do(ctx, ce.Source()+" "+ce.ID(), func() result { return in.handle(ctx, ce) })
	log := logging.WithContext(ctx, in.log).WithField("eventId", ce.ID())
	if res.messagePath != "" {
		log = log.WithField("messagePath", res.messagePath)
	}
	if dup {
		in.metrics.duplicates.Inc()
		log = log.WithField("duplicate", true)
	}

	body := map[string]string{"outcome": res.outcome}
	code := http.StatusOK
	switch res.outcome {
	case outcomePublished:
		if !dup {
			in.metrics.published.Inc()
		}
		body["pubsubMessageId"] = res.pubsubID
		log.WithField("pubsubMessageId", res.pubsubID).Info("task published")
	case outcomeRejected:
		if !dup {
			in.metrics.rejected.WithLabelValues(res.reason).Inc()
		}
		body["reason"] = res.reason
		body["detail"] = res.err.Error()
		entry := log.WithError(res.err).WithField("reason", res.reason)
		var cr *chatmessage.Rejection
		if errors.As(res.err, &cr) && cr.Field != "" {
			entry = entry.WithField("field", cr.Field)
		}
		switch res.reason {
		case chatmessage.ReasonFromDriver, chatmessage.ReasonMigrated:
			// Expected: the web app records these too, and they are not ours to send.
			entry.Info("event skipped")
		default:
			entry.Warn("event rejected: it can never be sent")
		}
	default:
		code = http.StatusServiceUnavailable
		// Without a failing dependency, the event ran out of time waiting
		// for another delivery of itself.
		dep := "none"
		var de *dependencyError
		if errors.As(res.err, &de) {
			dep = de.dep
			if !dup {
				in.metrics.transient.WithLabelValues(dep).Inc()
			}
		}
		body["error"] = fmt.Sprint(res.err)
		log.WithError(res.err).WithField("dependency", dep).Warn("event failed transiently; Eventarc will retry")
	}
	if res.messagePath != "" {
		body["messagePath"] = res.messagePath
	}
	in.metrics.observe(res.outcome, start)
	endEventSpan(span, res)
	writeJSON(w, code, body)
}

// handle decodes, validates and publishes one event.
func (in *ingester) handle(ctx context.Context, ce *event.Event) result {
	ev, err := firestoreevent.Decode(ce)
	if err != nil {
		return classify(err, "")
	}
	path := ev.Path
	if ev.Database != in.database {
		// A trigger on another database: its leases and enquiries are not
		// the ones ingest reads, so no retry could handle it correctly.
		return classify(&firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent,
			Detail: fmt.Sprintf("event from database %q, ingest reads %q (INGEST_FIRESTORE_DATABASE)", ev.Database, in.database)}, path)
	}
	msg, err := chatmessage.Parse(ev.Ref, ev.Fields, in.region)
	if err != nil {
		return classify(err, path)
	}
	cfg, err := in.leases.get(ctx, ev.Ref.LeaseID)
	if err != nil {
		return classify(err, path)
	}
	if msg.NeedsEnquiry() {
		enquiry, err := in.enquiry(ctx, ev.Ref.EnquiryPath())
		if err != nil {
			return classify(err, path)
		}
		msg.FillFromEnquiry(enquiry)
	}
	task, err := msg.Task(cfg, ev.ID, ev.CreateTime)
	if err != nil {
		return classify(err, path)
	}
	id, err := in.publish(ctx, task)
	if err != nil {
		return classify(err, path)
	}
	return result{outcome: outcomePublished, messagePath: path, pubsubID: id}
}

// enquiry reads the enquiry document's fields; nil when it does not exist
// (the message is still sendable without accountId and serviceUnitId).
func (in *ingester) enquiry(ctx context.Context, path string) (map[string]any, error) {
	ref := in.fs.Doc(path)
	if ref == nil {
		return nil, &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: fmt.Sprintf("enquiry path %q is not a document path", path)}
	}
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, firestoreError("read enquiry", err)
	}
	return snap.Data(), nil
}

// publish publishes the task and waits for the server's id. If the wait is
// cut short the task may still be published; the 5xx makes Eventarc deliver
// the event again and publish a second task, which the recorder's claim turns
// into a no-op for the sender.
func (in *ingester) publish(ctx context.Context, task *wadispatchv1.SendTask) (string, error) {
	data, err := proto.Marshal(task)
	if err != nil {
		return "", fmt.Errorf("marshal SendTask: %w", err)
	}
	key := task.DriverMobileNumber
	id, err := in.publisher.Publish(ctx, &pubsub.Message{
		Data:        data,
		OrderingKey: key,
		Attributes: tracing.Inject(ctx, map[string]string{
			"messagePath": task.MessageDocId,
			"leaseId":     task.LeaseId,
			"type":        dispatch.Label(task.Type),
			"eventId":     task.EventId,
			"schema":      taskSchema,
		}),
	}).Get(ctx)
	if err != nil {
		// A failed publish pauses its ordering key until resumed.
		in.publisher.ResumePublish(key)
		return "", &dependencyError{dep: depPubSub, err: fmt.Errorf("publish task: %w", err)}
	}
	return id, nil
}

// classify turns an error into a result: a rejection (any error with a
// RejectReason) is permanent, anything else transient.
func classify(err error, path string) result {
	var rej interface{ RejectReason() string }
	if errors.As(err, &rej) {
		return result{outcome: outcomeRejected, reason: rej.RejectReason(), err: err, messagePath: path}
	}
	return result{outcome: outcomeRetry, err: err, messagePath: path}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
