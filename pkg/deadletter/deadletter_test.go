package deadletter

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/sendtask"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

const path = "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1"

func TestReasonAndAttempts(t *testing.T) {
	for _, c := range []struct {
		name         string
		attrs        map[string]string
		reason       string
		attempts     int
		exhausted    bool
		sourceSubscr string
	}{
		{name: "the sender's, with WhatsApp's last error",
			attrs:  map[string]string{AttrFailureReason: "retries_exhausted", AttrLastErrorReason: "server_error", AttrLastErrorCode: "131000"},
			reason: "retries_exhausted: last error server_error (WhatsApp error 131000)", exhausted: true},
		{name: "the sender's, an error without a code",
			attrs:  map[string]string{AttrFailureReason: "retries_exhausted", AttrLastErrorReason: "http_503"},
			reason: "retries_exhausted: last error http_503", exhausted: true},
		{name: "Pub/Sub's on GCP",
			attrs:  map[string]string{AttrSourceDeliveryCount: "10", AttrSourceSubscription: "whatsapp-messages-sender", AttrSourceSubscriptionProject: "visn"},
			reason: "max delivery attempts on whatsapp-messages-sender", attempts: 10, sourceSubscr: "whatsapp-messages-sender"},
		{name: "Pub/Sub's, the subscription as a full name",
			attrs:  map[string]string{AttrSourceSubscription: "projects/visn/subscriptions/whatsapp-messages-sender"},
			reason: "max delivery attempts on whatsapp-messages-sender", sourceSubscr: "whatsapp-messages-sender"},
		{name: "pstest's, which adds nothing", attrs: map[string]string{"messagePath": path}, reason: "max delivery attempts"},
		{name: "no attributes at all", reason: "max delivery attempts"},
	} {
		l := Letter{Attributes: c.attrs}
		if got := l.Reason(); got != c.reason {
			t.Errorf("%s: reason %q, want %q", c.name, got, c.reason)
		}
		if got := l.Attempts(); got != c.attempts {
			t.Errorf("%s: attempts %d, want %d", c.name, got, c.attempts)
		}
		if got := l.RetriesExhausted(); got != c.exhausted {
			t.Errorf("%s: retries exhausted %v", c.name, got)
		}
		if got := l.SourceSubscription(); got != c.sourceSubscr {
			t.Errorf("%s: source subscription %q, want %q", c.name, got, c.sourceSubscr)
		}
	}
}

// A replayed message keeps what its consumer reads and loses what said why
// it was dead-lettered.
func TestReplayAttributes(t *testing.T) {
	l := Letter{Attributes: map[string]string{
		"messagePath": path, "schema": sendtask.Schema, "traceparent": "00-abc-def-01",
		AttrFailureReason: "retries_exhausted", AttrLastErrorReason: "server_error", AttrLastErrorCode: "131000",
		AttrSourceDeliveryCount: "10", AttrSourceSubscription: "s", AttrSourceSubscriptionProject: "p", AttrSourceTopicPublishTime: "t",
	}}
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.FixedZone("CET", 3600))
	got := l.replayAttributes("whatsapp-messages-dead-letter-hold", at)
	want := map[string]string{
		"messagePath": path, "schema": sendtask.Schema, "traceparent": "00-abc-def-01",
		AttrReplayedFrom: "whatsapp-messages-dead-letter-hold", AttrReplayedAt: "2026-11-30T08:00:00Z",
	}
	if len(got) != len(want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := l.Attributes[AttrReplayedFrom]; ok || len(l.Attributes) != 10 {
		t.Error("the letter's own attributes were changed")
	}
	if got := (Letter{}).replayAttributes("h", at); got[AttrReplayedFrom] != "h" {
		t.Errorf("a letter without attributes: %v", got)
	}
}

func TestReplayOrderingKey(t *testing.T) {
	data, err := proto.Marshal(&wadispatchv1.SendTask{MessageDocId: path, DriverMobileNumber: "+447700900123"})
	if err != nil {
		t.Fatal(err)
	}
	task := map[string]string{"schema": sendtask.Schema}
	for _, c := range []struct {
		name string
		l    Letter
		want string
	}{
		{"kept", Letter{OrderingKey: "driver-abc", Data: data, Attributes: task}, "driver-abc"},
		{"a task the sender dead-lettered, which has none", Letter{Data: data, Attributes: task}, sendtask.OrderingKey("+447700900123")},
		{"an undecodable task", Letter{Data: []byte("\xff\xfe"), Attributes: task}, ""},
		{"a task without a driver", Letter{Attributes: task}, ""},
		{"a result, never ordered", Letter{Data: data, Attributes: map[string]string{"schema": "wadispatch.v1.SendResult"}}, ""},
	} {
		if got := c.l.replayOrderingKey(); got != c.want {
			t.Errorf("%s: ordering key %q, want %q", c.name, got, c.want)
		}
	}
}

func TestWayBack(t *testing.T) {
	topo, err := chart.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	var tasks chart.DeadLetterHold
	for _, h := range topo.DeadLetterHolds() {
		if h.Subscription == "whatsapp-messages-dead-letter-hold" {
			tasks = h
		}
	}
	for _, l := range []Letter{
		{},
		{Attributes: map[string]string{AttrFailureReason: "retries_exhausted"}},
		{Attributes: map[string]string{AttrSourceSubscription: "whatsapp-messages-sender"}},
	} {
		if got, err := WayBack(tasks, l); err != nil || got != "whatsapp-messages" {
			t.Errorf("%v: back to %q, %v", l.Attributes, got, err)
		}
	}
	if _, err := WayBack(tasks, Letter{Attributes: map[string]string{AttrSourceSubscription: "whatsapp-message-results-recorder"}}); err == nil ||
		!strings.Contains(err.Error(), "whatsapp-message-results-recorder") {
		t.Errorf("a letter from a subscription that does not dead-letter here: %v", err)
	}
	shared := chart.DeadLetterHold{Subscription: "h", DeadLetterTopic: "dl", Sources: []chart.Subscription{{Name: "a", Topic: "ta"}, {Name: "b", Topic: "tb"}}}
	if _, err := WayBack(shared, Letter{}); err == nil || !strings.Contains(err.Error(), "2 topics") {
		t.Errorf("a dead-letter topic shared by two topics, the letter silent: %v", err)
	}
	if got, err := WayBack(shared, Letter{Attributes: map[string]string{AttrSourceSubscription: "b"}}); err != nil || got != "tb" {
		t.Errorf("shared, the letter naming its subscription: %q %v", got, err)
	}
}
