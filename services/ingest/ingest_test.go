package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/logging/logtest"
	"github.com/visn/wadispatch/pkg/ops"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/ingest/internal/adapters"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

const (
	project  = pubsubemu.TestProject
	tokenRef = "projects/wadispatch-local/secrets/lease-l1-token/versions/latest"
	msgPath  = "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1"
)

// env is ingest on the real ops server, backed by the project's Firestore
// emulator and a pstest Pub/Sub server, with a receiver on the sender's
// subscription.
type env struct {
	url        string
	fsEmu      *firestoreemu.Server
	stopPubSub func()
	fs         *firestore.Client
	events     http.Handler
	registry   prometheus.Gatherer
	clock      *clock
	tasks      chan *pubsub.Message
	refusals   chan *pubsub.Message // on the results topic
	logs       *logtest.Buffer
	timeout    time.Duration
	// pubsubDown is set when a test stopped the Pub/Sub server: the
	// subscriber's Receive then keeps retrying its pending acks and does not
	// return, so cleanup does not wait for it.
	pubsubDown bool
}

func newEnv(t testing.TB, tune func(*spec)) *env {
	t.Helper()
	ctx := context.Background()
	fsEmu := firestoreemu.StartForTest(t, firestoreemu.Options{Logger: logrus.New().WithField("test", "emulator")})
	t.Setenv("FIRESTORE_EMULATOR_HOST", fsEmu.Addr())
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	psEmu, err := pubsubemu.Start(ctx, "127.0.0.1:0", project, topo)
	if err != nil {
		t.Fatal(err)
	}
	stopPubSub := func() { _ = psEmu.Close() }
	t.Cleanup(stopPubSub)
	t.Setenv("PUBSUB_EMULATOR_HOST", psEmu.Addr)

	var cfg spec
	if err := config.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.HandlerTimeout = 3 * time.Second
	if tune != nil {
		tune(&cfg)
	}
	logs := &logtest.Buffer{}
	log, err := logging.NewTo(logs, "ingest", project, "debug")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := firestore.NewClientWithDatabase(ctx, project, cfg.FirestoreDatabase)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	ps, err := pubsub.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	tasks := adapters.NewTasks(ps, cfg.TasksTopic, cfg.HandlerTimeout)
	t.Cleanup(tasks.Stop)
	refusals := adapters.NewRefusals(ps, cfg.ResultsTopic, cfg.HandlerTimeout)
	t.Cleanup(refusals.Stop)

	srv, err := ops.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leaseClock := &clock{}
	parts := newParts(cfg, fs, tasks, refusals, nil, srv.Registry, log, leaseClock.now)
	in := parts.events
	srv.Handle("/", in)
	srv.Handle("/events/firestore", in)
	runCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Run(runCtx, 5*time.Second) }()

	e := &env{url: "http://" + srv.Addr() + "/", fsEmu: fsEmu, stopPubSub: stopPubSub, fs: fs, events: in,
		registry: srv.Registry, clock: leaseClock, tasks: make(chan *pubsub.Message, 1024), refusals: make(chan *pubsub.Message, 1024),
		logs: logs, timeout: cfg.HandlerTimeout}
	recvCtx, stopRecv := context.WithCancel(ctx)
	var received sync.WaitGroup
	for sub, into := range map[string]chan *pubsub.Message{topology.TasksSubscription: e.tasks, topology.ResultsSubscription: e.refusals} {
		received.Go(func() {
			_ = ps.Subscriber(sub).Receive(recvCtx, func(ctx context.Context, m *pubsub.Message) {
				select {
				case into <- m:
					m.Ack()
				case <-ctx.Done():
					m.Nack()
				}
			})
		})
	}
	t.Cleanup(func() {
		stopRecv()
		if !e.pubsubDown {
			received.Wait()
		}
		stop()
		if err := <-served; err != nil {
			t.Errorf("ops server: %v", err)
		}
		if strings.Contains(logs.String(), tokenRef) {
			t.Errorf("the token reference appears in the logs")
		}
	})
	return e
}

func (e *env) seed(t testing.TB, path string, data map[string]any) {
	t.Helper()
	if _, err := e.fs.Doc(path).Set(context.Background(), data); err != nil {
		t.Fatalf("seed %s: %v", path, err)
	}
}

func (e *env) seedLeaseAndEnquiry(t testing.TB) {
	e.seed(t, "leasecompany/l1", map[string]any{"name": "Lease One", "whatsappConfig": map[string]any{
		"phoneNumberId": "106540352242922", "tokenRef": tokenRef, "businessAccountId": "102290129340398",
	}})
	e.seed(t, "leasecompany/l1/enquiries/e1", map[string]any{"accountId": "acc-enquiry", "serviceUnitId": "su-enquiry"})
}

type answer struct {
	code int
	body map[string]string
}

func (e *env) post(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode}
	_ = json.Unmarshal(b, &a.body)
	return a
}

// nextTask waits for one published task.
func (e *env) nextTask(t testing.TB) *pubsub.Message {
	t.Helper()
	select {
	case m := <-e.tasks:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no task published within 10s")
		return nil
	}
}

// onlyTask waits for the task of eventID and fails if any other task was
// published before it or arrives shortly after.
func (e *env) onlyTask(t testing.TB, eventID string) *pubsub.Message {
	t.Helper()
	m := e.nextTask(t)
	if got := m.Attributes["eventId"]; got != eventID {
		t.Fatalf("unexpected task of event %q published (want only %q)", got, eventID)
	}
	select {
	case extra := <-e.tasks:
		t.Fatalf("a second task was published: event %q", extra.Attributes["eventId"])
	case <-time.After(300 * time.Millisecond):
	}
	return m
}

func textMessage() map[string]any {
	return map[string]any{
		"message":            "Your van is ready for collection",
		"type":               "text",
		"driverMobileNumber": "07911 123456",
		"createdBy":          "user-7",
		"source":             "web",
		"isMigrated":         false,
	}
}

// chatEvent stores fields as the message document at path, as the web app
// does, and returns the event Firestore's trigger sends for it: ingest
// reads the document the event names and sends what is stored.
func (e *env) chatEvent(t testing.TB, id, path string, fields map[string]any) eventarctest.Event {
	t.Helper()
	ref := e.fs.Doc(path)
	if _, err := ref.Set(context.Background(), fields); err != nil {
		t.Fatalf("store %s: %v", path, err)
	}
	snap, err := ref.Get(context.Background())
	if err != nil {
		t.Fatalf("read %s back: %v", path, err)
	}
	return eventFor(id, path, fields, snap.CreateTime)
}

// eventFor is the event of a document that need not be stored.
func eventFor(id, path string, fields map[string]any, created time.Time) eventarctest.Event {
	return eventarctest.Event{ID: id, Path: path, Project: project, Fields: eventarctest.Fields(fields), CreateTime: created}
}

func decodeRefusal(t testing.TB, m *pubsub.Message) *wadispatchv1.Refusal {
	t.Helper()
	if m.Attributes["schema"] != "wadispatch.v1.Refusal" {
		t.Fatalf("schema attribute %q on the results topic", m.Attributes["schema"])
	}
	var r wadispatchv1.Refusal
	if err := proto.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("refusal payload: %v", err)
	}
	return &r
}

func decodeTask(t testing.TB, m *pubsub.Message) *wadispatchv1.SendTask {
	t.Helper()
	var task wadispatchv1.SendTask
	if err := proto.Unmarshal(m.Data, &task); err != nil {
		t.Fatalf("task payload: %v", err)
	}
	return &task
}

func TestPublishesTaskFromBinaryProtobufEvent(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	ev := e.chatEvent(t, "ev-bin-1", msgPath, textMessage())
	created := ev.CreateTime
	a := e.post(t, ev.Binary(e.url))
	if a.code != http.StatusOK || a.body["outcome"] != app.OutcomePublished || a.body["messagePath"] != msgPath {
		t.Fatalf("answer %d %v", a.code, a.body)
	}
	m := e.onlyTask(t, "ev-bin-1")
	if m.OrderingKey != sendtask.OrderingKey("+447911123456") {
		t.Errorf("ordering key %q", m.OrderingKey)
	}
	wantAttrs := map[string]string{
		"messagePath": msgPath, "leaseId": "l1", "type": "text", "eventId": "ev-bin-1", "schema": "wadispatch.v1.SendTask",
	}
	for k, v := range wantAttrs {
		if m.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, m.Attributes[k], v)
		}
	}
	want := &wadispatchv1.SendTask{
		LeaseId:            "l1",
		AccountId:          "acc-enquiry",
		ServiceUnitId:      "su-enquiry",
		EnquiryId:          "e1",
		MessageDocId:       msgPath,
		MessageId:          "m1",
		DriverMobileNumber: "+447911123456",
		Message:            "Your van is ready for collection",
		Type:               wadispatchv1.MessageType_MESSAGE_TYPE_TEXT,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{
			PhoneNumberId: "106540352242922", ApiVersion: "v23.0", TokenRef: tokenRef,
			TemplateLanguage: "en_US", BusinessAccountId: "102290129340398",
		},
		CreatedBy: "user-7",
		Eta:       0,
		CreatedAt: timestamppb.New(created),
		EventId:   "ev-bin-1",
	}
	if got := decodeTask(t, m); !proto.Equal(got, want) {
		t.Fatalf("task\n got %v\nwant %v", got, want)
	}
	if got := e.metric(t, "wadispatch_ingest_tasks_published_total"); got != 1 {
		t.Errorf("tasks published metric = %v", got)
	}
	if got := e.metric(t, "wadispatch_ingest_events_received_total", "type", firestoreevent.TypeCreated); got != 1 {
		t.Errorf("events received metric = %v", got)
	}
}

func TestPublishesTemplateFromStructuredJSONEvent(t *testing.T) {
	e := newEnv(t, nil)
	e.seed(t, "leasecompany/l1", map[string]any{"whatsappConfig": map[string]any{
		"phoneNumberId": int64(106540352242922), "tokenRef": tokenRef, "apiVersion": "v22.0", "templateLanguage": "en_GB",
	}})
	// No enquiry document: the message's own ids are used and no read is needed.
	msg := map[string]any{
		"message":            "Reminder sent",
		"type":               "template",
		"templateType":       "collection_reminder",
		"driverMobileNumber": "+44 7400 123456",
		"createdBy":          "user-8",
		"accountId":          "acc-1",
		"serviceUnitId":      "su-1",
		"payload":            map[string]any{"name": "Sam", "slot": int64(3)},
		"ETA":                float64(45),
	}
	ev := e.chatEvent(t, "ev-json-1", msgPath, msg)
	created := ev.CreateTime
	ev.Type = firestoreevent.TypeCreatedWithAuthContext
	req := ev.Structured(strings.TrimSuffix(e.url, "/")+"/events/firestore", true)
	a := e.post(t, req)
	if a.code != http.StatusOK || a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("answer %d %v", a.code, a.body)
	}
	m := e.onlyTask(t, "ev-json-1")
	want := &wadispatchv1.SendTask{
		LeaseId: "l1", AccountId: "acc-1", ServiceUnitId: "su-1", EnquiryId: "e1", MessageDocId: msgPath, MessageId: "m1",
		DriverMobileNumber: "+447400123456",
		Message:            "Reminder sent",
		Type:               wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{
			PhoneNumberId: "106540352242922", ApiVersion: "v22.0", TokenRef: tokenRef, TemplateLanguage: "en_GB",
		},
		CreatedBy:    "user-8",
		Payload:      map[string]string{"name": "Sam", "slot": "3"},
		TemplateType: "collection_reminder",
		Eta:          45,
		CreatedAt:    timestamppb.New(created),
		EventId:      "ev-json-1",
	}
	if got := decodeTask(t, m); !proto.Equal(got, want) {
		t.Fatalf("task\n got %v\nwant %v", got, want)
	}
	if m.Attributes["type"] != "template" || m.OrderingKey != sendtask.OrderingKey("+447400123456") {
		t.Errorf("attributes %v key %q", m.Attributes, m.OrderingKey)
	}
}

// The Firestore emulator's own trigger posts the event, with exactly the
// request Eventarc would send, when the web app creates the document.
func TestEmulatorTriggerEndToEnd(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	if err := e.fsEmu.AddTrigger(firestoreemu.Trigger{
		Event:   firestoreemu.Created,
		Pattern: "leasecompany/{leaseId}/enquiries/{enquiryId}/whatsapp/messages/chatMessages/{messageId}",
		URL:     e.url,
	}); err != nil {
		t.Fatal(err)
	}
	e.seed(t, msgPath, textMessage())
	m := e.nextTask(t)
	task := decodeTask(t, m)
	if task.MessageDocId != msgPath || task.DriverMobileNumber != "+447911123456" || task.AccountId != "acc-enquiry" ||
		task.EventId == "" || task.CreatedAt == nil {
		t.Fatalf("task %v", task)
	}
}

func TestRejectionsAnswer2xxAndPublishNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	e.seed(t, "leasecompany/noconfig", map[string]any{"name": "No WhatsApp"})
	e.seed(t, "leasecompany/halfconfig", map[string]any{"whatsappConfig": map[string]any{"phoneNumberId": "1"}})
	with := func(k string, v any) map[string]any {
		m := textMessage()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name   string
		req    func(id string) *http.Request
		reason string
	}{
		{"updated event", func(id string) *http.Request {
			ev := e.chatEvent(t, id, msgPath, textMessage())
			ev.Type = "google.cloud.firestore.document.v1.updated"
			return ev.Binary(e.url)
		}, firestoreevent.ReasonWrongEventType},
		{"not a chat message", func(id string) *http.Request {
			return e.chatEvent(t, id, "leasecompany/l1/enquiries/e1", textMessage()).Binary(e.url)
		}, firestoreevent.ReasonNotAChatMessage},
		{"undecodable data", func(id string) *http.Request {
			r := e.chatEvent(t, id, msgPath, textMessage()).Binary(e.url)
			r.Body = io.NopCloser(strings.NewReader("\xff\xff garbage"))
			r.ContentLength = -1
			return r
		}, firestoreevent.ReasonInvalidEvent},
		{"missing createdBy", func(id string) *http.Request {
			return e.chatEvent(t, id, msgPath, with("createdBy", nil)).Binary(e.url)
		}, chatmessage.ReasonInvalidData},
		{"invalid phone number", func(id string) *http.Request {
			return e.chatEvent(t, id, msgPath, with("driverMobileNumber", "+447700900123")).Binary(e.url)
		}, chatmessage.ReasonInvalidData},
		{"lease without config", func(id string) *http.Request {
			return e.chatEvent(t, id, strings.Replace(msgPath, "/l1/", "/noconfig/", 1), textMessage()).Binary(e.url)
		}, chatmessage.ReasonNoWhatsAppConfig},
		{"config without token ref", func(id string) *http.Request {
			return e.chatEvent(t, id, strings.Replace(msgPath, "/l1/", "/halfconfig/", 1), textMessage()).Binary(e.url)
		}, chatmessage.ReasonNoWhatsAppConfig},
		{"lease missing", func(id string) *http.Request {
			return e.chatEvent(t, id, strings.Replace(msgPath, "/l1/", "/nolease/", 1), textMessage()).Binary(e.url)
		}, chatmessage.ReasonNoWhatsAppConfig},
		{"other database", func(id string) *http.Request {
			ev := e.chatEvent(t, id, msgPath, textMessage())
			ev.Database = "ancillary"
			return ev.Binary(e.url)
		}, firestoreevent.ReasonInvalidEvent},
		{"from driver", func(id string) *http.Request {
			return e.chatEvent(t, id, msgPath, map[string]any{"message": "ok", "source": "driver", "driverMobileNumber": "+447911123456"}).Binary(e.url)
		}, chatmessage.ReasonFromDriver},
		{"migrated", func(id string) *http.Request {
			return e.chatEvent(t, id, msgPath, with("isMigrated", true)).Structured(e.url, true)
		}, chatmessage.ReasonMigrated},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.metric(t, "wadispatch_ingest_events_rejected_total", "reason", tc.reason)
			id := fmt.Sprintf("ev-rej-%d", i)
			a := e.post(t, tc.req(id))
			if a.code != http.StatusOK || a.body["outcome"] != app.OutcomeRejected || a.body["reason"] != tc.reason {
				t.Fatalf("answer %d %v, want 200 rejected %s", a.code, a.body, tc.reason)
			}
			if got := e.metric(t, "wadispatch_ingest_events_rejected_total", "reason", tc.reason) - before; got != 1 {
				t.Errorf("rejections metric for %s grew by %v", tc.reason, got)
			}
			// What the V-Customer can correct is refused onto the document
			// (the answer came after the publish); the rest stays untouched.
			actionable := tc.reason == chatmessage.ReasonInvalidData || tc.reason == chatmessage.ReasonNoWhatsAppConfig
			wait := 100 * time.Millisecond
			if actionable {
				wait = 10 * time.Second
			}
			select {
			case m := <-e.refusals:
				if !actionable {
					t.Fatalf("a refusal was published for %s: %v", tc.reason, m.Attributes)
				}
				r := decodeRefusal(t, m)
				if m.Attributes["eventId"] != id || r.GetReason() != tc.reason || r.GetEventId() != id || a.body["refusalPubsubMessageId"] != m.ID {
					t.Fatalf("refusal %v %v for event %s (answer %v)", m.Attributes, r, id, a.body)
				}
			case <-time.After(wait):
				if actionable {
					t.Fatalf("no refusal published for %s", tc.reason)
				}
			}
		})
	}
	// Every answer above came after any publish it made; a valid event now
	// must be the only task on the subscription.
	if a := e.post(t, e.chatEvent(t, "ev-after", msgPath, textMessage()).Binary(e.url)); a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("valid event: %v", a.body)
	}
	e.onlyTask(t, "ev-after")
	if got := e.metric(t, "wadispatch_ingest_tasks_published_total"); got != 1 {
		t.Errorf("tasks published metric = %v", got)
	}
}

func TestMalformedRequestsGet4xx(t *testing.T) {
	e := newEnv(t, nil)
	plain, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(`{"message":"hi"}`))
	plain.Header.Set("Content-Type", "application/json")
	if a := e.post(t, plain); a.code != http.StatusBadRequest {
		t.Errorf("plain JSON: %d %v", a.code, a.body)
	}
	get, _ := http.NewRequest(http.MethodGet, e.url, nil)
	if a := e.post(t, get); a.code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", a.code)
	}
	// The body limit is 4 MiB.
	big := eventFor("ev-big", msgPath, map[string]any{"message": strings.Repeat("x", 4<<20)}, time.Now())
	if a := e.post(t, big.Binary(e.url)); a.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %v", a.code, a.body)
	}
	if got := e.metric(t, "wadispatch_ingest_malformed_requests_total"); got != 3 {
		t.Errorf("malformed metric = %v", got)
	}
	// The ops endpoints still answer next to the handler at /.
	resp, err := http.Get(e.url + "healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestDuplicateEventPublishesOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	ev := e.chatEvent(t, "ev-dup", msgPath, textMessage())
	var wg sync.WaitGroup
	answers := make([]answer, 6)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = e.post(t, ev.Binary(e.url))
		}()
	}
	wg.Wait()
	// And once more after the first was published.
	answers = append(answers, e.post(t, ev.Binary(e.url)))
	for i, a := range answers {
		if a.code != http.StatusOK || a.body["outcome"] != app.OutcomePublished {
			t.Errorf("delivery %d: %d %v", i, a.code, a.body)
		}
	}
	e.onlyTask(t, "ev-dup")
	if got := e.metric(t, "wadispatch_ingest_duplicate_events_total"); got != float64(len(answers)-1) {
		t.Errorf("duplicates metric = %v, want %d", got, len(answers)-1)
	}
	if got := e.metric(t, "wadispatch_ingest_tasks_published_total"); got != 1 {
		t.Errorf("published metric = %v", got)
	}
}

func TestLeaseConfigIsCached(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	if a := e.post(t, e.chatEvent(t, "ev-c1", msgPath, textMessage()).Binary(e.url)); a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("%v", a.body)
	}
	e.nextTask(t)
	if _, err := e.fs.Doc("leasecompany/l1").Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Within INGEST_LEASE_CACHE_TTL the configuration read first still holds.
	if a := e.post(t, e.chatEvent(t, "ev-c2", msgPath, textMessage()).Binary(e.url)); a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("second event after the lease was deleted: %v", a.body)
	}
	e.nextTask(t)
}

func TestLeaseConfigChangeSeenWithoutCache(t *testing.T) {
	e := newEnv(t, func(s *spec) { s.LeaseCacheTTL = 0 })
	e.seedLeaseAndEnquiry(t)
	if a := e.post(t, e.chatEvent(t, "ev-n1", msgPath, textMessage()).Binary(e.url)); a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("%v", a.body)
	}
	e.nextTask(t)
	if _, err := e.fs.Doc("leasecompany/l1").Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := e.post(t, e.chatEvent(t, "ev-n2", msgPath, textMessage()).Binary(e.url)); a.body["reason"] != chatmessage.ReasonNoWhatsAppConfig {
		t.Fatalf("after delete: %v", a.body)
	}
}

func TestFirestoreDownAnswers5xx(t *testing.T) {
	e := newEnv(t, func(s *spec) { s.HandlerTimeout = 2 * time.Second })
	e.seedLeaseAndEnquiry(t)
	ev := e.chatEvent(t, "ev-fs-down", msgPath, textMessage())
	if err := e.fsEmu.Close(); err != nil {
		t.Fatal(err)
	}
	a := e.post(t, ev.Binary(e.url))
	if a.code != http.StatusServiceUnavailable || a.body["outcome"] != app.OutcomeRetry {
		t.Fatalf("answer %d %v, want 503 retry", a.code, a.body)
	}
	if got := e.metric(t, "wadispatch_ingest_transient_failures_total", "dependency", app.DepFirestore); got != 1 {
		t.Errorf("firestore failures metric = %v", got)
	}
	select {
	case m := <-e.tasks:
		t.Fatalf("task published with Firestore down: %v", m.Attributes)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestPubSubDownAnswers5xx(t *testing.T) {
	e := newEnv(t, func(s *spec) { s.HandlerTimeout = 2 * time.Second })
	e.seedLeaseAndEnquiry(t)
	e.pubsubDown = true
	e.stopPubSub()
	start := time.Now()
	a := e.post(t, e.chatEvent(t, "ev-ps-down", msgPath, textMessage()).Binary(e.url))
	if a.code != http.StatusServiceUnavailable || a.body["outcome"] != app.OutcomeRetry {
		t.Fatalf("answer %d %v, want 503 retry", a.code, a.body)
	}
	if took := time.Since(start); took > e.timeout+2*time.Second {
		t.Errorf("503 took %v, handler timeout is %v", took, e.timeout)
	}
	if got := e.metric(t, "wadispatch_ingest_transient_failures_total", "dependency", app.DepPubSub); got != 1 {
		t.Errorf("pubsub failures metric = %v", got)
	}
	// The event id is free again for Eventarc's retry.
	a = e.post(t, e.chatEvent(t, "ev-ps-down", msgPath, textMessage()).Binary(e.url))
	if a.code != http.StatusServiceUnavailable || e.metric(t, "wadispatch_ingest_duplicate_events_total") != 0 {
		t.Fatalf("retry: %d %v (duplicates %v)", a.code, a.body, e.metric(t, "wadispatch_ingest_duplicate_events_total"))
	}
}

// A lease without configuration is remembered only briefly: a fix is picked
// up within seconds, not the full TTL.
func TestMissingLeaseConfigRememberedBriefly(t *testing.T) {
	e := newEnv(t, nil)
	e.seed(t, "leasecompany/l1", map[string]any{"name": "not configured yet"})
	post := func(id string) answer {
		return e.post(t, e.chatEvent(t, id, msgPath, textMessage()).Binary(e.url))
	}
	if a := post("ev-m1"); a.body["reason"] != chatmessage.ReasonNoWhatsAppConfig {
		t.Fatalf("unconfigured lease: %v", a.body)
	}
	e.seedLeaseAndEnquiry(t)
	if a := post("ev-m2"); a.body["reason"] != chatmessage.ReasonNoWhatsAppConfig {
		t.Fatalf("within the miss TTL the lease read first still holds: %v", a.body)
	}
	e.clock.advance(5 * time.Second) // the longest a missing configuration is kept
	if a := post("ev-m3"); a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("after the miss TTL: %v", a.body)
	}
	e.onlyTask(t, "ev-m3")
}

// metric is the value of the counter name{labels...} (label names and
// values alternating) on the env's registry.
func (e *env) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return metricValue(t, e.registry, name, labels...)
}

func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, want) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

// clock is the real time, moved forward by advance.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// An event is a notification, not the message: a forged event naming a
// driver's reply, with fields of its own, sends nothing, and neither does an
// event whose document was deleted before ingest read it.
func TestForgedEventSendsOnlyWhatIsStored(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	reply := e.chatEvent(t, "ev-reply", msgPath, map[string]any{"message": "on my way", "source": "driver", "driverMobileNumber": "+447911123456"})
	forged := eventFor("ev-forged", msgPath, map[string]any{
		"message": "FORGED via CloudEvent", "type": "text", "driverMobileNumber": "+447700900999", "createdBy": "user-7", "source": "web",
	}, reply.CreateTime)
	if a := e.post(t, forged.Binary(e.url)); a.code != http.StatusOK || a.body["reason"] != chatmessage.ReasonFromDriver {
		t.Fatalf("forged event: %d %v, want 200 rejected from_driver (what is stored)", a.code, a.body)
	}

	gone := e.chatEvent(t, "ev-gone", strings.Replace(msgPath, "/m1", "/m2", 1), textMessage())
	if _, err := e.fs.Doc(gone.Path).Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := e.post(t, gone.Binary(e.url)); a.code != http.StatusOK || a.body["reason"] != app.ReasonDocumentMissing {
		t.Fatalf("deleted document: %d %v, want 200 rejected %s", a.code, a.body, app.ReasonDocumentMissing)
	}
	select {
	case m := <-e.tasks:
		t.Fatalf("a task was published: %v", m.Attributes)
	case <-time.After(300 * time.Millisecond):
	}
}

// An id or source no Eventarc event has is refused before it reaches a log
// line, a span or the dedupe key.
func TestOversizedEventIDIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	ev := e.chatEvent(t, strings.Repeat("i", 900_000), msgPath, textMessage())
	a := e.post(t, ev.Binary(e.url))
	if a.code != http.StatusBadRequest || a.body["outcome"] != app.OutcomeMalformed {
		t.Fatalf("answer %d %v, want 400 malformed", a.code, a.body)
	}
	for _, line := range e.logs.Entries(t) {
		if b, _ := json.Marshal(line); len(b) > 10_000 {
			t.Errorf("a log line of %d bytes: %.200s", len(b), b)
		}
	}
}

// An enquiry read once serves the messages that follow within
// INGEST_ENQUIRY_CACHE_TTL: reading the message document costs no more
// reads per message than before.
func TestEnquiryIsCached(t *testing.T) {
	e := newEnv(t, func(s *spec) { s.EnquiryCacheTTL = time.Minute })
	e.seedLeaseAndEnquiry(t)
	if a := e.post(t, e.chatEvent(t, "ev-q1", msgPath, textMessage()).Binary(e.url)); a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("%v", a.body)
	}
	if got := decodeTask(t, e.nextTask(t)).GetAccountId(); got != "acc-enquiry" {
		t.Fatalf("accountId %q from the enquiry", got)
	}
	e.seed(t, "leasecompany/l1/enquiries/e1", map[string]any{"accountId": "acc-changed", "serviceUnitId": "su-enquiry"})
	if a := e.post(t, e.chatEvent(t, "ev-q2", strings.Replace(msgPath, "/m1", "/m2", 1), textMessage()).Binary(e.url)); a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("%v", a.body)
	}
	if got := decodeTask(t, e.nextTask(t)).GetAccountId(); got != "acc-enquiry" {
		t.Errorf("accountId %q: the enquiry was read again within its TTL", got)
	}
}

// A message the V-Customer can correct is refused onto its document: the
// refusal names the document, the reason and the field, for the recorder,
// and never the driver's number (in its data or its attributes).
func TestRefusalNamesTheFieldAndNotTheNumber(t *testing.T) {
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	fields := textMessage()
	fields["driverMobileNumber"] = "+44 7700 900"
	ev := e.chatEvent(t, "ev-refused", msgPath, fields)
	if a := e.post(t, ev.Binary(e.url)); a.code != http.StatusOK || a.body["reason"] != chatmessage.ReasonInvalidData {
		t.Fatalf("answer %d %v", a.code, a.body)
	}
	var m *pubsub.Message
	select {
	case m = <-e.refusals:
	case <-time.After(10 * time.Second):
		t.Fatal("no refusal published")
	}
	r := decodeRefusal(t, m)
	want := &wadispatchv1.Refusal{
		MessageDocId: msgPath, LeaseId: "l1", EnquiryId: "e1", MessageId: "m1", CreatedBy: "user-7",
		Reason: chatmessage.ReasonInvalidData, Field: "driverMobileNumber", Detail: r.GetDetail(), EventId: "ev-refused",
		CreatedAt: timestamppb.New(ev.CreateTime), RefusedAt: r.GetRefusedAt(),
	}
	if !proto.Equal(r, want) || r.GetDetail() == "" || r.GetRefusedAt() == nil {
		t.Errorf("refusal %v\nwant      %v", r, want)
	}
	for _, s := range append(slices.Collect(maps.Values(m.Attributes)), string(m.Data)) {
		if strings.Contains(strings.ReplaceAll(s, " ", ""), "447700900") {
			t.Errorf("the driver's number is in the refusal: %q", s)
		}
	}
	if m.Attributes["messagePath"] != msgPath || m.Attributes["reason"] != chatmessage.ReasonInvalidData {
		t.Errorf("attributes %v", m.Attributes)
	}
	select {
	case m := <-e.tasks:
		t.Fatalf("a task was published for a refused message: %v", m.Attributes)
	case <-time.After(200 * time.Millisecond):
	}
}

// A refusal that cannot be published is a transient failure: Eventarc's
// retry refuses the message again, so the document still gets its reason.
func TestRefusalNotPublishedAnswers5xx(t *testing.T) {
	e := newEnv(t, func(s *spec) { s.HandlerTimeout = 2 * time.Second })
	e.seed(t, "leasecompany/l1", map[string]any{"name": "no WhatsApp yet"})
	e.pubsubDown = true
	e.stopPubSub()
	a := e.post(t, e.chatEvent(t, "ev-refusal-down", msgPath, textMessage()).Binary(e.url))
	if a.code != http.StatusServiceUnavailable || a.body["outcome"] != app.OutcomeRetry {
		t.Fatalf("answer %d %v, want 503 retry", a.code, a.body)
	}
	if got := e.metric(t, "wadispatch_ingest_transient_failures_total", "dependency", app.DepPubSub); got != 1 {
		t.Errorf("pubsub failures metric = %v", got)
	}
	if got := e.metric(t, "wadispatch_ingest_events_rejected_total", "reason", chatmessage.ReasonNoWhatsAppConfig); got != 0 {
		t.Errorf("counted as rejected (%v) before its refusal was published", got)
	}
}
