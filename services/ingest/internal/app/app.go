// Package app is ingest's application: a Firestore message creation event
// (or a document the reconciler finds without one) becomes a published
// SendTask, a Refusal the recorder writes on the document, or a reasoned
// rejection; a signed WhatsApp webhook becomes status events and driver
// replies for the recorder.
//
// Its dependencies are the small interfaces below (the lease, enquiry and
// recent message reads, the publishers), defined here where they are used, so that
// internal/adapters only translates between them and Firestore, Pub/Sub and
// HTTP.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Leases reads a lease's WhatsApp configuration: a *chatmessage.Rejection
// when it has none, a *DependencyError when it could not be read.
type Leases interface {
	WhatsAppConfig(ctx context.Context, leaseID string) (chatmessage.WhatsAppConfig, error)
	// BusinessNumber finds the leases whose configuration names the
	// business phone number phoneNumberID. A number no lease has is a
	// NumberLeases with Problem set, not an error.
	BusinessNumber(ctx context.Context, phoneNumberID string) (NumberLeases, error)
	// BusinessAccount finds the leases whose configuration names the
	// WhatsApp Business Account accountID, as BusinessNumber does.
	BusinessAccount(ctx context.Context, accountID string) (NumberLeases, error)
}

// NumberLeases are the leases a business phone number belongs to, in id
// order: usually one. WhatsApp keeps one conversation per number and user,
// so leases sharing a number share their drivers' replies to it.
type NumberLeases struct {
	LeaseIDs []string
	// Config is the first lease's configuration, OptOut its keywords.
	Config chatmessage.WhatsAppConfig
	OptOut chatmessage.OptOut
	// Problem is why the number has no lease: NumberUnknown or
	// NumberShared. A driver's message to it is attached to no lease.
	Problem string
}

// Why a business number has no lease (skip reasons of webhook parts).
const (
	NumberUnknown = "unknown_business_number"
	// NumberShared: more leases than MaxLeasesPerNumber name the number.
	NumberShared = "shared_business_number"
)

// MaxLeasesPerNumber bounds the leases one business number may serve.
const MaxLeasesPerNumber = 10

// Messages reads the message document an event names: the event is a
// notification, the stored document is what is sent.
type Messages interface {
	Message(ctx context.Context, path string) (StoredMessage, error)
	// MessageAndDriver reads the message document at path and, in the
	// same read, the documents with names (the driver's record of the
	// lease, the template's registry entries): a send costs no read of
	// its own for them.
	MessageAndDriver(ctx context.Context, path string, with Companions) (StoredMessage, error)
	// DriverRecord reads a driver's record of a lease; nil when none.
	DriverRecord(ctx context.Context, path string) (map[string]any, error)
	// Template reads a template's registry entry and its name's entry
	// (dispatch.TemplatePath, TemplateNamePath); nil for one that does
	// not exist.
	Template(ctx context.Context, path, namePath string) (entry, name map[string]any, err error)
}

// Companions name the documents read with a message; "" for none.
type Companions struct {
	DriverRecord string
	// Template and TemplateName are the registry's entry of the template
	// in the lease's language and the entry of its name.
	Template, TemplateName string
}

// StoredMessage is a message document as Firestore holds it now.
type StoredMessage struct {
	Exists     bool
	CreateTime time.Time
	Fields     map[string]any
	// DriverRecordPath is the driver's record read with the message
	// ("" when none was), DriverRecord its fields (nil when it does not
	// exist).
	DriverRecordPath string
	DriverRecord     map[string]any
	// TemplatePath and TemplateNamePath are the registry's entries read
	// with the message ("" when none was), Template and TemplateName
	// their fields (nil when one does not exist).
	TemplatePath, TemplateNamePath string
	Template, TemplateName         map[string]any
}

// Reasons of rejections decided by reading the document.
const (
	// ReasonDocumentMissing: the document was deleted before it was read;
	// nothing is sent.
	ReasonDocumentMissing = "document_missing"
	// ReasonDocumentReplaced: the document at the path is not the one the
	// event announced (deleted and created again); the new document's own
	// event sends it.
	ReasonDocumentReplaced = "document_replaced"
)

// Enquiries reads an enquiry document's fields; nil when it does not exist
// (the message is still sendable without accountId and serviceUnitId).
type Enquiries interface {
	Enquiry(ctx context.Context, path string) (map[string]any, error)
}

// Tasks publishes a SendTask and returns the server's message id.
type Tasks interface {
	PublishTask(ctx context.Context, task *wadispatchv1.SendTask) (string, error)
}

// Refusals publishes a Refusal for the recorder, which writes it on the
// message's document, and returns the server's message id.
type Refusals interface {
	PublishRefusal(ctx context.Context, r *wadispatchv1.Refusal) (string, error)
}

// Events publishes a webhook's event without waiting for the server, so
// that every event of one notification is in flight at once.
type Events interface {
	PublishEvent(ctx context.Context, m proto.Message, wamid string) (Pending, error)
}

// Pending is a publish in flight; Get waits for the server's message id.
type Pending interface {
	Get(ctx context.Context) (string, error)
}

// Outcomes of one event (and the latency histogram's label).
const (
	OutcomePublished = "published"
	OutcomeRejected  = "rejected"
	OutcomeRetry     = "retry"
	OutcomeMalformed = "malformed"
)

// Dependencies whose failures are transient.
const (
	DepFirestore = "firestore"
	DepPubSub    = "pubsub"
)

// DependencyError is a transient failure of Firestore or Pub/Sub.
type DependencyError struct {
	Dep string
	Err error
}

func (e *DependencyError) Error() string { return e.Dep + ": " + e.Err.Error() }
func (e *DependencyError) Unwrap() error { return e.Err }

// Result is the outcome of handling one event.
type Result struct {
	Outcome string // OutcomePublished, OutcomeRejected or OutcomeRetry
	Reason  string // for rejections
	// Refused: the rejection is one the V-Customer can act on, and its
	// refusal is published for the recorder to write on the document.
	Refused     bool
	Err         error // the rejection or the transient failure
	MessagePath string
	PubsubID    string // of the task, or of the refusal
}

// Config is what the application is told by the environment.
type Config struct {
	// Database is the Firestore database whose events are handled.
	Database string
	// Region is assumed for driver numbers without country code.
	Region string
	// Timeout bounds the handling of one event or webhook.
	Timeout   time.Duration
	DedupeTTL time.Duration
	// WebhookReplayTTL is how long a published webhook body is remembered,
	// so that the same body again publishes nothing.
	WebhookReplayTTL time.Duration
	// WebhookAppSecret signs webhook bodies; empty, none is accepted.
	WebhookAppSecret   []byte
	WebhookVerifyToken string
	// MediaBuckets are the Cloud Storage buckets a media message's object
	// may be in.
	MediaBuckets []string
}

// Ingester is the application; its methods are ingest's use cases.
type Ingester struct {
	cfg        Config
	leases     Leases
	messages   Messages
	enquiries  Enquiries
	tasks      Tasks
	refusals   Refusals
	events     Events
	dedupe     *dedupe
	webhooks   *dedupe
	metrics    *Metrics
	log        *logrus.Entry
	webhookLog *logrus.Entry
	now        func() time.Time
}

// New builds the application. webhookLog is the logger of the webhook use
// cases, which the caller names after their endpoint.
func New(cfg Config, leases Leases, messages Messages, enquiries Enquiries, tasks Tasks, refusals Refusals, events Events, metrics *Metrics, log, webhookLog *logrus.Entry) *Ingester {
	return &Ingester{
		cfg: cfg, leases: leases, messages: messages, enquiries: enquiries, tasks: tasks, refusals: refusals, events: events,
		dedupe: newDedupe(cfg.DedupeTTL), webhooks: newDedupe(cfg.WebhookReplayTTL), metrics: metrics, log: log, webhookLog: webhookLog,
		now: time.Now,
	}
}

// HandleEvent handles one CloudEvent within the configured timeout, sharing
// the outcome of a delivery of the same event in flight or recently
// published, and logs and counts how it ended. ctx carries the event's span.
func (in *Ingester) HandleEvent(ctx context.Context, ce *event.Event) Result {
	in.metrics.received.WithLabelValues(typeLabel(ce.Type())).Inc()
	logging.WithContext(ctx, in.log).WithFields(logrus.Fields{"eventId": ce.ID(), "type": ce.Type()}).Debug("event received")

	ctx, cancel := context.WithTimeout(ctx, in.cfg.Timeout)
	defer cancel()
	// CloudEvents ids are unique per source, not globally.
	res, dup := in.dedupe.do(ctx, ce.Source()+" "+ce.ID(), func() Result { return in.handle(ctx, ce) })
	log := logging.WithContext(ctx, in.log).WithField("eventId", ce.ID())
	if res.MessagePath != "" {
		log = log.WithField("messagePath", res.MessagePath)
	}
	if dup {
		in.metrics.duplicates.Inc()
		log = log.WithField("duplicate", true)
	}
	switch res.Outcome {
	case OutcomePublished:
		if !dup {
			in.metrics.published.Inc()
		}
		log.WithField("pubsubMessageId", res.PubsubID).Info("task published")
	case OutcomeRejected:
		if !dup {
			in.metrics.rejected.WithLabelValues(res.Reason).Inc()
		}
		logRejection(log, res)
	default:
		// Without a failing dependency, the event ran out of time waiting
		// for another delivery of itself.
		dep := "none"
		var de *DependencyError
		if errors.As(res.Err, &de) {
			dep = de.Dep
			if !dup {
				in.metrics.transient.WithLabelValues(dep).Inc()
			}
		}
		log.WithError(res.Err).WithField("dependency", dep).Warn("event failed transiently; Eventarc will retry")
	}
	return res
}

// logRejection says why a message is not sent: at warning level when
// somebody should fix something, at info level for what is expected.
func logRejection(log *logrus.Entry, res Result) {
	entry := log.WithError(res.Err).WithField("reason", res.Reason)
	var cr *chatmessage.Rejection
	if errors.As(res.Err, &cr) && cr.Field != "" {
		entry = entry.WithField("field", cr.Field)
	}
	switch {
	case res.Reason == chatmessage.ReasonFromDriver || res.Reason == chatmessage.ReasonMigrated:
		// Expected: the web app records these too, and they are not ours to send.
		entry.Info("event skipped")
	case res.Refused:
		entry.WithField("pubsubMessageId", res.PubsubID).Warn("message refused: it can never be sent as it is; the refusal goes on its document")
	default:
		entry.Warn("event rejected: it can never be sent")
	}
}

// handle decodes one event, reads the document it announces and hands that
// to process.
func (in *Ingester) handle(ctx context.Context, ce *event.Event) Result {
	ev, err := firestoreevent.Decode(ce)
	if err != nil {
		return classify(err, "")
	}
	path := ev.Path
	if ev.Database != in.cfg.Database {
		// A trigger on another database: its leases and enquiries are not
		// the ones ingest reads, so no retry could handle it correctly.
		return classify(&firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent,
			Detail: fmt.Sprintf("event from database %q, ingest reads %q (INGEST_FIRESTORE_DATABASE)", ev.Database, in.cfg.Database)}, path)
	}
	stored, err := in.messages.MessageAndDriver(ctx, path, in.announced(ctx, ev))
	if err != nil {
		return classify(err, path)
	}
	if err := sameDocument(ev, stored); err != nil {
		return classify(err, path)
	}
	return in.process(ctx, ev.Ref, stored, ev.ID)
}

// process validates a stored message document and publishes its task, or
// its refusal when the V-Customer can act on what is wrong. It is the one
// path of events and of the reconciler; eventID names what brought the
// document (the CloudEvent, or the reconciler's pass).
func (in *Ingester) process(ctx context.Context, ref dispatch.MessageRef, stored StoredMessage, eventID string) Result {
	path := ref.Path()
	task, err := in.task(ctx, ref, stored, eventID)
	if err != nil {
		return in.refuse(ctx, ref, stored, eventID, classify(err, path))
	}
	// If the wait for the id is cut short the task may still be published;
	// the retry makes Eventarc deliver the event again and publish a second
	// task, which the recorder's claim turns into a no-op for the sender.
	id, err := in.tasks.PublishTask(ctx, task)
	if err != nil {
		return classify(err, path)
	}
	return Result{Outcome: OutcomePublished, MessagePath: path, PubsubID: id}
}

// task validates the stored document and builds its SendTask.
func (in *Ingester) task(ctx context.Context, ref dispatch.MessageRef, stored StoredMessage, eventID string) (*wadispatchv1.SendTask, error) {
	msg, err := chatmessage.Parse(ref, stored.Fields, in.cfg.Region)
	if err != nil {
		return nil, err
	}
	if err := msg.CheckMediaBucket(in.cfg.MediaBuckets); err != nil {
		return nil, err
	}
	cfg, err := in.leases.WhatsAppConfig(ctx, ref.LeaseID)
	if err != nil {
		return nil, err
	}
	record, err := in.driverRecord(ctx, ref, msg, stored)
	if err != nil {
		return nil, err
	}
	registry, err := in.templateRegistry(ctx, ref, msg, cfg, stored)
	if err != nil {
		return nil, err
	}
	if err := chatmessage.CheckDriver(msg, record, cfg.OptOutPolicy, registry.Category()); err != nil {
		return nil, err
	}
	if err := chatmessage.CheckTemplate(msg, registry); err != nil {
		return nil, err
	}
	if msg.NeedsEnquiry() {
		enquiry, err := in.enquiries.Enquiry(ctx, ref.EnquiryPath())
		if err != nil {
			return nil, err
		}
		msg.FillFromEnquiry(enquiry)
	}
	return msg.Task(cfg, eventID, stored.CreateTime)
}

// announced names the documents read with the event's document: the
// record of the driver it names and, for a template, the registry's
// entries of the template in the lease's language (the configuration is
// kept by Leases, so asking for it here costs no read of its own; when it
// cannot be had, the entries are read later, as task finds it).
func (in *Ingester) announced(ctx context.Context, ev *firestoreevent.Event) Companions {
	var with Companions
	number, _ := ev.Fields["driverMobileNumber"].(string)
	if e164, err := chatmessage.NormalizeNumber(number, in.cfg.Region); err == nil && dispatch.CheckDocumentID(e164) == nil {
		with.DriverRecord = dispatch.DriverRecordPath(ev.Ref.LeaseID, e164)
	}
	name, _ := ev.Fields["templateType"].(string)
	if typ, _ := ev.Fields["type"].(string); typ != chatmessage.TypeTemplate || name == "" {
		return with
	}
	if cfg, err := in.leases.WhatsAppConfig(ctx, ev.Ref.LeaseID); err == nil {
		with.Template, with.TemplateName = templatePaths(ev.Ref.LeaseID, name, cfg.TemplateLanguage)
	}
	return with
}

// templatePaths are the registry's entries of a template in a language
// and of its name; "" when the name or language cannot name a document.
func templatePaths(leaseID, name, language string) (entry, namePath string) {
	if dispatch.CheckDocumentID(dispatch.TemplateDocID(name, language)) != nil || dispatch.CheckDocumentID(name) != nil {
		return "", ""
	}
	return dispatch.TemplatePath(leaseID, name, language), dispatch.TemplateNamePath(leaseID, name)
}

// templateRegistry is what the lease's registry holds of a template
// message's template: the entries read with the document, unless the
// document names another template than its event did (or came from the
// reconciler), then read now. Other messages have none.
func (in *Ingester) templateRegistry(ctx context.Context, ref dispatch.MessageRef, msg *chatmessage.Message, cfg chatmessage.WhatsAppConfig, stored StoredMessage) (chatmessage.TemplateRegistry, error) {
	reg := chatmessage.TemplateRegistry{Language: cfg.TemplateLanguage}
	if msg.Type != wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE {
		return reg, nil
	}
	path, namePath := templatePaths(ref.LeaseID, msg.TemplateType, cfg.TemplateLanguage)
	if path == "" {
		return reg, nil
	}
	entry, name := stored.Template, stored.TemplateName
	if stored.TemplatePath != path || stored.TemplateNamePath != namePath {
		var err error
		if entry, name, err = in.messages.Template(ctx, path, namePath); err != nil {
			return reg, err
		}
	}
	reg.Entry, reg.Languages = chatmessage.ParseTemplate(entry), chatmessage.TemplateLanguages(name)
	return reg, nil
}

// driverRecord is the record of the stored document's driver: the one read
// with it, unless the document names another driver than its event did
// (or came from the reconciler), then read now.
func (in *Ingester) driverRecord(ctx context.Context, ref dispatch.MessageRef, msg *chatmessage.Message, stored StoredMessage) (map[string]any, error) {
	path := dispatch.DriverRecordPath(ref.LeaseID, msg.DriverE164)
	if stored.DriverRecordPath == path {
		return stored.DriverRecord, nil
	}
	return in.messages.DriverRecord(ctx, path)
}

// refuse publishes the refusal of a rejection the V-Customer can act on;
// other results are returned as they are. The event is answered 2xx only
// once the refusal is published: a failed publish is transient, and the
// event's retry refuses it again.
func (in *Ingester) refuse(ctx context.Context, ref dispatch.MessageRef, stored StoredMessage, eventID string, res Result) Result {
	var cr *chatmessage.Rejection
	if res.Outcome != OutcomeRejected || !errors.As(res.Err, &cr) || !cr.Actionable() {
		return res
	}
	id, err := in.refusals.PublishRefusal(ctx, refusal(ref, stored, cr, eventID, in.now()))
	if err != nil {
		return classify(err, res.MessagePath)
	}
	res.Refused, res.PubsubID = true, id
	return res
}

// refusal is what the recorder writes on the document of a refused
// message. createdBy is taken as stored when it is a string, since it may
// be the field at fault; the rejection's detail never quotes a phone
// number (pkg/chatmessage keeps numbers out of its errors).
func refusal(ref dispatch.MessageRef, stored StoredMessage, rej *chatmessage.Rejection, eventID string, now time.Time) *wadispatchv1.Refusal {
	createdBy, _ := stored.Fields["createdBy"].(string)
	r := &wadispatchv1.Refusal{
		MessageDocId: ref.Path(), LeaseId: ref.LeaseID, EnquiryId: ref.EnquiryID, MessageId: ref.MessageID,
		CreatedBy: dispatch.Clip(createdBy, maxRefusalText), Reason: rej.Reason,
		Field: dispatch.Clip(rej.Field, maxRefusalText), Detail: dispatch.Clip(rej.Detail, maxRefusalText),
		EventId: eventID, RefusedAt: timestamppb.New(now),
	}
	if !stored.CreateTime.IsZero() {
		r.CreatedAt = timestamppb.New(stored.CreateTime)
	}
	return r
}

// maxRefusalText bounds what a refusal carries of the document: it is
// written on the message document and the state, which the web app reads.
const maxRefusalText = 300

// sameDocument checks that the stored document is the one ev announced:
// whoever can post an event could otherwise have any text sent to any
// number by naming a document that exists.
func sameDocument(ev *firestoreevent.Event, stored StoredMessage) error {
	if !stored.Exists {
		return &firestoreevent.Rejection{Reason: ReasonDocumentMissing, Detail: "the message document does not exist (deleted before it was read?)"}
	}
	if !stored.CreateTime.Equal(ev.CreateTime) {
		return &firestoreevent.Rejection{Reason: ReasonDocumentReplaced, Detail: fmt.Sprintf("the document was created at %s, the event announced one created at %s",
			stored.CreateTime.UTC().Format(time.RFC3339Nano), ev.CreateTime.UTC().Format(time.RFC3339Nano))}
	}
	return nil
}

// classify turns an error into a result: a rejection (any error with a
// RejectReason) is permanent, anything else transient.
func classify(err error, path string) Result {
	var rej interface{ RejectReason() string }
	if errors.As(err, &rej) {
		return Result{Outcome: OutcomeRejected, Reason: rej.RejectReason(), Err: err, MessagePath: path}
	}
	return Result{Outcome: OutcomeRetry, Err: err, MessagePath: path}
}
