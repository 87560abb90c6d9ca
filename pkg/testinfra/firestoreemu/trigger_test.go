package firestoreemu_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"google.golang.org/protobuf/proto"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

type received struct {
	event   cloudevents.Event
	data    *firestoredata.DocumentEventData
	headers http.Header
}

// eventSink is an Eventarc destination: it decodes each POST as a binary
// mode CloudEvent with a protobuf DocumentEventData body. fail makes the
// first n requests answer 500.
type eventSink struct {
	t    *testing.T
	mu   sync.Mutex
	got  []received
	hits int
	fail int
	ch   chan struct{}
}

func newSink(t *testing.T, fail int) (*eventSink, string) {
	s := &eventSink{t: t, fail: fail, ch: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(s.ServeHTTP))
	t.Cleanup(srv.Close)
	return s, srv.URL + "/events"
}

func (s *eventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits++
	failing := s.hits <= s.fail
	s.mu.Unlock()
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		s.t.Errorf("decode CloudEvent: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if failing {
		http.Error(w, "try later", http.StatusInternalServerError)
		return
	}
	data := &firestoredata.DocumentEventData{}
	if err := proto.Unmarshal(ev.Data(), data); err != nil {
		s.t.Errorf("decode DocumentEventData: %v", err)
	}
	s.mu.Lock()
	s.got = append(s.got, received{event: *ev, data: data, headers: r.Header.Clone()})
	s.mu.Unlock()
	s.ch <- struct{}{}
}

func (s *eventSink) wait(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		if len(s.got) >= n {
			got := append([]received(nil), s.got...)
			s.mu.Unlock()
			return got
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d events", n)
		}
	}
}

const chatPattern = "leasecompany/{leaseId}/enquiries/{enquiryId}/whatsapp/messages/chatMessages/{messageId}"

func TestTriggerDeliversEventarcCloudEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sink, url := newSink(t, 0)
	srv := newServer(t, firestoreemu.Options{Triggers: []firestoreemu.Trigger{{Event: firestoreemu.Created, Pattern: chatPattern, URL: url}}})
	c := newClient(t, srv, "(default)")
	rel := "leasecompany/L1/enquiries/E1/whatsapp/messages/chatMessages/M1"
	wr, err := c.Doc(rel).Set(ctx, map[string]any{"text": "hello", "n": 1})
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	// Not matching: other collection, other database, and an update.
	if _, err := c.Doc("leasecompany/L1/enquiries/E1/whatsapp/messages/other/M2").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := newClient(t, srv, "ancillary").Doc(rel).Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := c.Doc(rel).Update(ctx, []firestore.Update{{Path: "n", Value: 2}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	got := sink.wait(t, 1)[0]
	ev := got.event
	if ev.SpecVersion() != "1.0" || ev.Type() != "google.cloud.firestore.document.v1.created" ||
		ev.Source() != "//firestore.googleapis.com/projects/"+project+"/databases/(default)" ||
		ev.Subject() != "documents/"+rel || ev.ID() == "" || !ev.Time().Equal(wr.UpdateTime) ||
		!strings.HasSuffix(ev.DataSchema(), "google/events/cloud/firestore/v1/data.proto") {
		t.Errorf("event attributes: %s", ev.String())
	}
	ext := ev.Extensions()
	for k, want := range map[string]string{"database": "(default)", "namespace": "(default)", "document": rel, "location": "nam5", "project": project} {
		if ext[k] != want {
			t.Errorf("extension %s = %v, want %q", k, ext[k], want)
		}
	}
	if ct := got.headers.Get("Content-Type"); ct != "application/protobuf" {
		t.Errorf("content-type %q", ct)
	}
	if got.headers.Get("Ce-Id") == "" {
		t.Errorf("not binary content mode: headers %v", got.headers)
	}
	v := got.data.GetValue()
	if v.GetName() != docPath("(default)", rel) || v.GetFields()["text"].GetStringValue() != "hello" || got.data.GetOldValue() != nil {
		t.Errorf("event data: %v", got.data)
	}
	if !v.GetCreateTime().AsTime().Equal(wr.UpdateTime) {
		t.Errorf("create time %v, want %v", v.GetCreateTime().AsTime(), wr.UpdateTime)
	}
	time.Sleep(100 * time.Millisecond)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.got) != 1 {
		t.Errorf("%d events delivered, want exactly 1", len(sink.got))
	}
}

func TestTriggerUpdatedDeletedWrittenAndDatabaseFilter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	updSink, updURL := newSink(t, 0)
	delSink, delURL := newSink(t, 0)
	wrSink, wrURL := newSink(t, 0)
	srv := newServer(t)
	for _, spec := range []string{
		"updated@ancillary:users/{uid}=" + updURL,
		"deleted@ancillary:users/{uid}=" + delURL,
		"written@ancillary:{path=**}=" + wrURL,
	} {
		tr, err := firestoreemu.ParseTrigger(spec)
		if err != nil {
			t.Fatalf("parse %q: %v", spec, err)
		}
		if err := srv.AddTrigger(tr); err != nil {
			t.Fatalf("add trigger: %v", err)
		}
	}
	def := newClient(t, srv, "(default)")
	anc := newClient(t, srv, "ancillary")
	if _, err := def.Doc("users/u1").Set(ctx, map[string]any{"a": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	doc := anc.Doc("users/u1")
	if _, err := doc.Set(ctx, map[string]any{"a": 1, "m": map[string]any{"x": 1, "y": 2}, "gone": true}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := doc.Set(ctx, map[string]any{"a": 1, "m": map[string]any{"x": 1, "y": 3}, "new": "v"}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := doc.Delete(ctx); err != nil {
		t.Fatalf("delete: %v", err)
	}
	upd := updSink.wait(t, 1)[0]
	if upd.event.Type() != "google.cloud.firestore.document.v1.updated" {
		t.Errorf("type %s", upd.event.Type())
	}
	if got, want := upd.data.GetUpdateMask().GetFieldPaths(), []string{"gone", "m.y", "new"}; !reflect.DeepEqual(got, want) {
		t.Errorf("update mask %v, want %v", got, want)
	}
	if upd.data.GetOldValue().GetFields()["gone"] == nil || upd.data.GetValue().GetFields()["new"] == nil {
		t.Errorf("update data %v", upd.data)
	}
	del := delSink.wait(t, 1)[0]
	if del.data.GetValue() != nil || del.data.GetOldValue().GetFields()["new"].GetStringValue() != "v" {
		t.Errorf("delete data %v", del.data)
	}
	if del.event.Extensions()["database"] != "ancillary" {
		t.Errorf("database extension %v", del.event.Extensions()["database"])
	}
	wr := wrSink.wait(t, 3)
	if len(wr) != 3 {
		t.Errorf("written events %d, want 3 (ancillary only)", len(wr))
	}
	for _, e := range wr {
		if e.event.Type() != "google.cloud.firestore.document.v1.written" {
			t.Errorf("type %s", e.event.Type())
		}
	}
}

func TestTriggerRetriesAfterServerError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sink, url := newSink(t, 2)
	srv := newServer(t, firestoreemu.Options{
		Triggers: []firestoreemu.Trigger{{Event: firestoreemu.Created, Pattern: "q/{id}", URL: url}},
		Delivery: firestoreemu.DeliveryPolicy{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
	})
	c := newClient(t, srv, "(default)")
	if _, err := c.Doc("q/1").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	got := sink.wait(t, 1)
	sink.mu.Lock()
	hits := sink.hits
	sink.mu.Unlock()
	if hits != 3 || got[0].data.GetValue().GetFields()["x"].GetIntegerValue() != 1 {
		t.Errorf("hits %d (want 3: two 500s then success), event %v", hits, got[0].data)
	}
}

func TestParseTrigger(t *testing.T) {
	t.Parallel()
	tr, err := firestoreemu.ParseTrigger("created:" + chatPattern + "=http://127.0.0.1:8081/")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	want := firestoreemu.Trigger{Event: firestoreemu.Created, Pattern: chatPattern, URL: "http://127.0.0.1:8081/"}
	if tr != want {
		t.Errorf("got %+v, want %+v", tr, want)
	}
	for _, bad := range []string{"made:a/{b}=http://x/", "created:a/{b}", "created:a/{b}=ftp://x", "nocolon"} {
		if _, err := firestoreemu.ParseTrigger(bad); err == nil {
			t.Errorf("ParseTrigger(%q) succeeded", bad)
		}
	}
}

// Deliveries dropped on purpose (the admin endpoint) never arrive, however
// long one waits; resumed, the next commits' events do.
func TestTriggerDeliveriesDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sink, url := newSink(t, 0)
	srv := newServer(t, firestoreemu.Options{Triggers: []firestoreemu.Trigger{{Event: firestoreemu.Created, Pattern: "q/{id}", URL: url}}})
	c := newClient(t, srv, "(default)")
	admin := func(verb string) {
		resp, err := http.Post("http://"+srv.Addr()+"/emulator/v1/triggers:"+verb, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", verb, resp.StatusCode)
		}
	}
	admin("dropDeliveries")
	if _, err := c.Doc("q/lost").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	admin("resumeDeliveries")
	if _, err := c.Doc("q/kept").Set(ctx, map[string]any{"x": 2}); err != nil {
		t.Fatal(err)
	}
	got := sink.wait(t, 1)
	time.Sleep(200 * time.Millisecond)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.hits != 1 || !strings.HasSuffix(got[0].event.Subject(), "q/kept") {
		t.Errorf("%d deliveries, first %s: want only q/kept's", sink.hits, got[0].event.Subject())
	}
}
