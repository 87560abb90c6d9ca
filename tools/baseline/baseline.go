// Package baseline is the send flow as the seed describes it
// (summarised in docs/architecture.md, "The seed design"), kept honest and simple
// so the load harness can compare wadispatch with it on the same machine:
//
//   - a function per created document (Validator, an HTTP handler receiving
//     the same Eventarc-shaped CloudEvents as ingest) checks that the
//     document exists, reads the lease (and the enquiry for accountId and
//     serviceUnitId), validates with the same rules as ingest, and enqueues
//     the task on Pub/Sub;
//   - a queue worker (Worker) calls WhatsApp, then makes the three writes one
//     after another, a transaction each: the message document, the user's
//     performance metrics (read, increment, write) and the ancillary
//     conversation document (read, append, write).
//
// It has none of wadispatch's claims, so a redelivered task is sent again;
// it exists to be measured, not to send.
package baseline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Validator is the document-created function.
type Validator struct {
	FS        *firestore.Client
	Publisher *pubsub.Publisher
	Defaults  chatmessage.ConfigDefaults
	Region    string
	Log       *logrus.Entry
}

// rejection is an error no retry changes.
type rejection interface{ RejectReason() string }

// ServeHTTP handles one event: 200 when enqueued or never sendable, 500 on
// a transient failure so the trigger retries.
func (v *Validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ce, err := firestoreevent.ReadRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev, err := firestoreevent.Decode(ce)
	if err == nil {
		err = v.enqueue(r.Context(), ev)
	}
	var rej rejection
	switch {
	case err == nil:
		v.Log.WithField("messagePath", ev.Path).Info("task enqueued")
		w.WriteHeader(http.StatusOK)
	case errors.As(err, &rej):
		v.Log.WithError(err).WithField("reason", rej.RejectReason()).Warn("message not sent")
		w.WriteHeader(http.StatusOK)
	default:
		v.Log.WithError(err).Error("validation failed")
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (v *Validator) enqueue(ctx context.Context, ev *firestoreevent.Event) error {
	snap, err := v.FS.Doc(ev.Path).Get(ctx)
	if err != nil {
		return fmt.Errorf("read message %s: %w", ev.Path, err)
	}
	msg, err := chatmessage.Parse(ev.Ref, snap.Data(), v.Region)
	if err != nil {
		return err
	}
	lease, err := v.FS.Doc(ev.Ref.LeasePath()).Get(ctx)
	if err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("read lease: %w", err)
	}
	var leaseData map[string]any
	if lease != nil && lease.Exists() {
		leaseData = lease.Data()
	}
	cfg, err := chatmessage.ParseWhatsAppConfig(leaseData, v.Defaults)
	if err != nil {
		return err
	}
	if msg.NeedsEnquiry() {
		enq, err := v.FS.Doc(ev.Ref.EnquiryPath()).Get(ctx)
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("read enquiry: %w", err)
		}
		if enq != nil && enq.Exists() {
			msg.FillFromEnquiry(enq.Data())
		}
	}
	task, err := msg.Task(cfg, ev.ID, ev.CreateTime)
	if err != nil {
		return err
	}
	data, err := proto.Marshal(task)
	if err != nil {
		return fmt.Errorf("marshal task: %w", err)
	}
	if _, err := v.Publisher.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx); err != nil {
		return fmt.Errorf("enqueue task: %w", err)
	}
	return nil
}

// Worker is the queue service's /whatsapp/sendMessage endpoint.
type Worker struct {
	FS          *firestore.Client
	Ancillary   *firestore.Client
	WhatsApp    *whatsapp.Client
	Tokens      map[string]whatsapp.Token
	APIVersion  string
	MetricsPath func(leaseID, createdBy string) string
	Log         *logrus.Entry
}

// Handle processes one task; an error means the task should be retried.
func (w *Worker) Handle(ctx context.Context, data []byte) error {
	var task wadispatchv1.SendTask
	if err := proto.Unmarshal(data, &task); err != nil {
		w.Log.WithError(err).Error("undecodable task dropped")
		return nil
	}
	log := w.Log.WithField("messagePath", task.GetMessageDocId())
	sender, msg, err := sendtask.Message(&task, w.APIVersion)
	if err != nil {
		return w.fail(ctx, &task, err)
	}
	sender.Token = w.Tokens[task.GetLeaseWhatsappDetails().GetTokenRef()]
	sent, err := w.WhatsApp.Send(ctx, sender, msg)
	if err != nil {
		log.WithError(err).Warn("WhatsApp call failed")
		return w.fail(ctx, &task, err)
	}

	msgRef := w.FS.Doc(task.GetMessageDocId())
	if err := w.FS.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := tx.Get(msgRef); err != nil {
			return err
		}
		return tx.Update(msgRef, []firestore.Update{
			{Path: "whatsappMessageId", Value: sent.MessageID},
			{Path: "status", Value: string(dispatch.StatusSent)},
			{Path: "sentAt", Value: firestore.ServerTimestamp},
		})
	}); err != nil {
		return fmt.Errorf("update message: %w", err)
	}

	metrics := w.FS.Doc(w.MetricsPath(task.GetLeaseId(), task.GetCreatedBy()))
	if err := w.FS.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(metrics)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		var n int64
		if snap != nil && snap.Exists() {
			n, _ = snap.Data()["numberOfWhatsappMessagesSent"].(int64)
		}
		return tx.Set(metrics, map[string]any{"numberOfWhatsappMessagesSent": n + 1}, firestore.MergeAll)
	}); err != nil {
		return fmt.Errorf("increment metrics: %w", err)
	}

	conv := w.Ancillary.Doc(dispatch.AncillaryPath(task.GetDriverMobileNumber(), task.GetEnquiryId()))
	if err := w.Ancillary.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(conv)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		var ids []any
		if snap != nil && snap.Exists() {
			ids, _ = snap.Data()["arrayOfWhatsappMessageIds"].([]any)
		}
		return tx.Set(conv, map[string]any{
			"arrayOfWhatsappMessageIds": append(slices.Clone(ids), sent.MessageID),
			"driverPhoneNumber":         task.GetDriverMobileNumber(),
			"leaseId":                   task.GetLeaseId(),
			"enquiryId":                 task.GetEnquiryId(),
		}, firestore.MergeAll)
	}); err != nil {
		return fmt.Errorf("append ancillary id: %w", err)
	}
	log.WithField("wamid", sent.MessageID).Info("sent and recorded")
	return nil
}

// fail records FAILED on the message document, as the seed does for any
// failed call.
func (w *Worker) fail(ctx context.Context, task *wadispatchv1.SendTask, cause error) error {
	ref := w.FS.Doc(task.GetMessageDocId())
	if err := w.FS.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := tx.Get(ref); err != nil {
			return err
		}
		return tx.Update(ref, []firestore.Update{
			{Path: "status", Value: string(dispatch.StatusFailed)},
			{Path: "failureReason", Value: cause.Error()},
		})
	}); err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return nil
}
