package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

const msgPath = "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1"

type fakeLeases struct {
	cfg chatmessage.WhatsAppConfig
	err error
}

func (f fakeLeases) WhatsAppConfig(context.Context, string) (chatmessage.WhatsAppConfig, error) {
	return f.cfg, f.err
}

func (f fakeLeases) BusinessNumber(context.Context, string) (NumberLeases, error) {
	return NumberLeases{LeaseIDs: []string{"lease-1"}, Config: f.cfg}, f.err
}

func (f fakeLeases) BusinessAccount(_ context.Context, id string) (NumberLeases, error) {
	if id != "waba-1" {
		return NumberLeases{Problem: NumberUnknown}, f.err
	}
	return NumberLeases{LeaseIDs: []string{"lease-1", "lease-2"}, Config: f.cfg}, f.err
}

// fakeMessages holds the stored documents, by path.
type fakeMessages map[string]StoredMessage

func (f fakeMessages) MessageAndDriver(ctx context.Context, path string, _ Companions) (StoredMessage, error) {
	return f.Message(ctx, path)
}

func (f fakeMessages) DriverRecord(context.Context, string) (map[string]any, error) { return nil, nil }

func (f fakeMessages) Template(context.Context, string, string) (map[string]any, map[string]any, error) {
	return nil, nil, nil
}

func (f fakeMessages) Message(_ context.Context, path string) (StoredMessage, error) {
	return f[path], nil
}

// storedAs is the document as ce announced it.
func storedAs(t *testing.T, ce *event.Event) fakeMessages {
	t.Helper()
	ev, err := firestoreevent.Decode(ce)
	if err != nil {
		t.Fatal(err)
	}
	return fakeMessages{ev.Path: {Exists: true, CreateTime: ev.CreateTime, Fields: ev.Fields}}
}

type fakeEnquiries struct{}

func (fakeEnquiries) Enquiry(context.Context, string) (map[string]any, error) { return nil, nil }

type fakeTasks struct {
	published []*wadispatchv1.SendTask
	err       error
}

func (f *fakeTasks) PublishTask(_ context.Context, task *wadispatchv1.SendTask) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	f.published = append(f.published, task)
	return "ps-1", nil
}

type fakeRefusals struct {
	published []*wadispatchv1.Refusal
	err       error
}

func (f *fakeRefusals) PublishRefusal(_ context.Context, r *wadispatchv1.Refusal) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	f.published = append(f.published, r)
	return "ps-refusal", nil
}

func cloudEvent(t *testing.T, id string) *event.Event {
	t.Helper()
	req := eventarctest.Event{ID: id, Path: msgPath, Fields: eventarctest.Fields(map[string]any{
		"message": "Your van is ready", "type": "text", "driverMobileNumber": "+447911123456",
		"createdBy": "user-7", "source": "web", "isMigrated": false,
	})}.Binary("http://ingest/")
	ce, err := firestoreevent.ReadRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	return ce
}

func newTestIngester(leases Leases, messages Messages, tasks Tasks) (*Ingester, *Metrics) {
	return newTestIngesterRefusing(leases, messages, tasks, &fakeRefusals{})
}

func newTestIngesterRefusing(leases Leases, messages Messages, tasks Tasks, refusals Refusals) (*Ingester, *Metrics) {
	m := NewMetrics(prometheus.NewRegistry())
	log := logrus.NewEntry(logrus.New())
	log.Logger.SetLevel(logrus.PanicLevel)
	in := New(Config{Database: "(default)", Region: "GB", Timeout: time.Second, DedupeTTL: time.Minute},
		leases, messages, fakeEnquiries{}, tasks, refusals, nil, m, log, log)
	return in, m
}

var usableConfig = chatmessage.WhatsAppConfig{PhoneNumberID: "1", APIVersion: "v23.0", TokenRef: "ref", TemplateLanguage: "en_US"}

func TestHandleEventClassifiesOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		leases  Leases
		publish error
		outcome string
		reason  string
		dep     string
	}{
		{"published", fakeLeases{cfg: usableConfig}, nil, OutcomePublished, "", ""},
		{"lease without configuration", fakeLeases{err: &chatmessage.Rejection{Reason: chatmessage.ReasonNoWhatsAppConfig}}, nil,
			OutcomeRejected, chatmessage.ReasonNoWhatsAppConfig, ""},
		{"Firestore down", fakeLeases{err: &DependencyError{Dep: DepFirestore, Err: errors.New("unavailable")}}, nil,
			OutcomeRetry, "", DepFirestore},
		{"Pub/Sub down", fakeLeases{cfg: usableConfig}, &DependencyError{Dep: DepPubSub, Err: errors.New("unavailable")},
			OutcomeRetry, "", DepPubSub},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tasks := &fakeTasks{err: tc.publish}
			ce := cloudEvent(t, "ev-1")
			in, m := newTestIngester(tc.leases, storedAs(t, ce), tasks)
			res := in.HandleEvent(context.Background(), ce)
			if res.Outcome != tc.outcome || res.Reason != tc.reason || res.MessagePath != msgPath {
				t.Fatalf("result %+v, want %s %q", res, tc.outcome, tc.reason)
			}
			if tc.dep != "" {
				if got := testutil.ToFloat64(m.transient.WithLabelValues(tc.dep)); got != 1 {
					t.Errorf("transient failures{dependency=%s} = %v", tc.dep, got)
				}
			}
			if published := len(tasks.published); (tc.outcome == OutcomePublished) != (published == 1) {
				t.Errorf("%d tasks published", published)
			}
		})
	}
}

// A redelivery of a published event shares its result and publishes nothing.
func TestHandleEventRedeliveryPublishesOnce(t *testing.T) {
	tasks := &fakeTasks{}
	ce := cloudEvent(t, "ev-dup")
	in, m := newTestIngester(fakeLeases{cfg: usableConfig}, storedAs(t, ce), tasks)
	for range 2 {
		if res := in.HandleEvent(context.Background(), ce); res.Outcome != OutcomePublished || res.PubsubID != "ps-1" {
			t.Fatalf("result %+v", res)
		}
	}
	if len(tasks.published) != 1 || testutil.ToFloat64(m.duplicates) != 1 || testutil.ToFloat64(m.published) != 1 {
		t.Fatalf("published %d, duplicates %v, published metric %v", len(tasks.published), testutil.ToFloat64(m.duplicates), testutil.ToFloat64(m.published))
	}
}

// The event is a notification: the task is built from the stored document,
// and an event whose document is gone or is another document sends nothing.
func TestHandleEventSendsTheStoredDocument(t *testing.T) {
	ce := cloudEvent(t, "ev-forged")
	stored := storedAs(t, ce)
	truth := stored[msgPath]
	truth.Fields = map[string]any{"message": "Stored text", "type": "text", "driverMobileNumber": "+447911123457", "createdBy": "user-7", "source": "web"}
	for _, tc := range []struct {
		name   string
		doc    StoredMessage
		reason string
	}{
		{"stored fields win", truth, ""},
		{"deleted", StoredMessage{}, ReasonDocumentMissing},
		{"created again", StoredMessage{Exists: true, CreateTime: truth.CreateTime.Add(time.Second), Fields: truth.Fields}, ReasonDocumentReplaced},
		{"the stored document is a driver's", StoredMessage{Exists: true, CreateTime: truth.CreateTime,
			Fields: map[string]any{"message": "hi", "type": "text", "driverMobileNumber": "+447911123457", "createdBy": "user-7", "source": "driver"}}, chatmessage.ReasonFromDriver},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tasks := &fakeTasks{}
			in, _ := newTestIngester(fakeLeases{cfg: usableConfig}, fakeMessages{msgPath: tc.doc}, tasks)
			res := in.HandleEvent(context.Background(), ce)
			if tc.reason != "" {
				if res.Outcome != OutcomeRejected || res.Reason != tc.reason || len(tasks.published) != 0 {
					t.Fatalf("result %+v with %d tasks, want rejected %s and none", res, len(tasks.published), tc.reason)
				}
				return
			}
			if res.Outcome != OutcomePublished || len(tasks.published) != 1 {
				t.Fatalf("result %+v", res)
			}
			if got := tasks.published[0]; got.GetMessage() != "Stored text" || got.GetDriverMobileNumber() != "+447911123457" {
				t.Errorf("task %q to %s, want the stored text to the stored number", got.GetMessage(), got.GetDriverMobileNumber())
			}
		})
	}
}

// A rejection the V-Customer can act on is published as a refusal before
// the event is answered; a driver's or migrated message, or a document
// that is not the one announced, is left alone.
func TestHandleEventRefusesWhatTheCustomerCanCorrect(t *testing.T) {
	ce := cloudEvent(t, "ev-r")
	stored := storedAs(t, ce)[msgPath]
	with := func(k string, v any) StoredMessage {
		s := stored
		s.Fields = map[string]any{}
		for key, val := range stored.Fields {
			s.Fields[key] = val
		}
		s.Fields[k] = v
		return s
	}
	noConfig := fakeLeases{err: &chatmessage.Rejection{Reason: chatmessage.ReasonNoWhatsAppConfig, Field: "whatsappConfig", Detail: "the lease has no whatsappConfig"}}
	for _, tc := range []struct {
		name    string
		leases  Leases
		doc     StoredMessage
		reason  string
		refused bool
		field   string
	}{
		{"invalid number", fakeLeases{cfg: usableConfig}, with("driverMobileNumber", "12345"), chatmessage.ReasonInvalidData, true, "driverMobileNumber"},
		{"no text", fakeLeases{cfg: usableConfig}, with("message", ""), chatmessage.ReasonInvalidData, true, "message"},
		{"no WhatsApp configuration", noConfig, stored, chatmessage.ReasonNoWhatsAppConfig, true, "whatsappConfig"},
		{"from the driver", fakeLeases{cfg: usableConfig}, with("source", "driver"), chatmessage.ReasonFromDriver, false, ""},
		{"migrated", fakeLeases{cfg: usableConfig}, with("isMigrated", true), chatmessage.ReasonMigrated, false, ""},
		{"deleted", fakeLeases{cfg: usableConfig}, StoredMessage{}, ReasonDocumentMissing, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusals := &fakeRefusals{}
			in, m := newTestIngesterRefusing(tc.leases, fakeMessages{msgPath: tc.doc}, &fakeTasks{}, refusals)
			res := in.HandleEvent(context.Background(), ce)
			if res.Outcome != OutcomeRejected || res.Reason != tc.reason || res.Refused != tc.refused {
				t.Fatalf("result %+v, want rejected %s, refused %v", res, tc.reason, tc.refused)
			}
			if got := testutil.ToFloat64(m.rejected.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("rejected{reason=%s} = %v", tc.reason, got)
			}
			if !tc.refused {
				if len(refusals.published) != 0 {
					t.Fatalf("refusals %v published", refusals.published)
				}
				return
			}
			if len(refusals.published) != 1 || res.PubsubID != "ps-refusal" {
				t.Fatalf("refusals %v, result %+v", refusals.published, res)
			}
			r := refusals.published[0]
			if r.GetMessageDocId() != msgPath || r.GetLeaseId() != "l1" || r.GetEnquiryId() != "e1" || r.GetMessageId() != "m1" ||
				r.GetCreatedBy() != "user-7" || r.GetReason() != tc.reason || r.GetField() != tc.field || r.GetDetail() == "" ||
				r.GetEventId() != "ev-r" || !r.GetCreatedAt().AsTime().Equal(stored.CreateTime) || r.GetRefusedAt() == nil {
				t.Errorf("refusal %v", r)
			}
		})
	}
}

// A refusal not published is a transient failure, so Eventarc retries the
// event; the retry refuses it again.
func TestHandleEventRetriesAnUnpublishedRefusal(t *testing.T) {
	ce := cloudEvent(t, "ev-r")
	refusals := &fakeRefusals{err: &DependencyError{Dep: DepPubSub, Err: errors.New("unavailable")}}
	noConfig := fakeLeases{err: &chatmessage.Rejection{Reason: chatmessage.ReasonNoWhatsAppConfig}}
	in, m := newTestIngesterRefusing(noConfig, storedAs(t, ce), &fakeTasks{}, refusals)
	if res := in.HandleEvent(context.Background(), ce); res.Outcome != OutcomeRetry || res.Refused {
		t.Fatalf("result %+v, want retry", res)
	}
	if testutil.ToFloat64(m.transient.WithLabelValues(DepPubSub)) != 1 || testutil.ToFloat64(m.rejected.WithLabelValues(chatmessage.ReasonNoWhatsAppConfig)) != 0 {
		t.Errorf("transient %v, rejected %v", testutil.ToFloat64(m.transient.WithLabelValues(DepPubSub)), testutil.ToFloat64(m.rejected.WithLabelValues(chatmessage.ReasonNoWhatsAppConfig)))
	}
	refusals.err = nil
	if res := in.HandleEvent(context.Background(), ce); res.Outcome != OutcomeRejected || !res.Refused || len(refusals.published) != 1 {
		t.Fatalf("retry: %+v, %d refusals", res, len(refusals.published))
	}
}
