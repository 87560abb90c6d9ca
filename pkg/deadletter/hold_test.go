package deadletter_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/proto"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/deadletter"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func path(id string) string {
	return "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + id
}

func task(t *testing.T, id, driver string) []byte {
	t.Helper()
	b, err := proto.Marshal(&wadispatchv1.SendTask{MessageDocId: path(id), MessageId: id, DriverMobileNumber: driver})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publish(t *testing.T, ctx context.Context, c *pubsub.Client, topic string, m *pubsub.Message) {
	t.Helper()
	p := c.Publisher(topic)
	p.EnableMessageOrdering = true
	defer p.Stop()
	if _, err := p.Publish(ctx, m).Get(ctx); err != nil {
		t.Fatal(err)
	}
}

func tasksHold(t *testing.T) chart.DeadLetterHold {
	t.Helper()
	topo, err := chart.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range topo.DeadLetterHolds() {
		if h.Subscription == topology.TasksDeadLetterHoldingSub {
			return h
		}
	}
	t.Fatal("no hold for the tasks' dead letters")
	return chart.DeadLetterHold{}
}

func emulator(t *testing.T, ctx context.Context) *pubsub.Client {
	t.Helper()
	c, err := pubsubemu.NewClient(ctx, pubsubemu.StartForTest(t), pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newHold(t *testing.T, c *pubsub.Client, hold chart.DeadLetterHold) *deadletter.Hold {
	h := deadletter.NewHold(c, hold)
	h.PullWait = time.Second
	t.Cleanup(h.Close)
	return h
}

const driver = "+447700900123"

// deadLetterAsTheSender publishes a task whose WhatsApp retries ran out as
// the sender does: its attributes and why, no ordering key.
func deadLetterAsTheSender(t *testing.T, ctx context.Context, c *pubsub.Client, id string) {
	t.Helper()
	publish(t, ctx, c, topology.TasksDeadLetterTopic, &pubsub.Message{Data: task(t, id, driver), Attributes: map[string]string{
		"messagePath": path(id), "schema": sendtask.Schema,
		deadletter.AttrFailureReason: "retries_exhausted", deadletter.AttrLastErrorReason: "server_error", deadletter.AttrLastErrorCode: "131000"}})
}

// Dead letters are listed without leaving the hold, replayed to the tasks
// topic as they were (the ordering key the driver's), and a second replay
// finds nothing.
func TestPeekAndReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := emulator(t, ctx)
	deadLetterAsTheSender(t, ctx, c, "m1")
	deadLetterAsTheSender(t, ctx, c, "m2")

	h := newHold(t, c, tasksHold(t))
	for range 2 {
		letters, more, err := h.Peek(ctx, 10)
		if err != nil || more || len(letters) != 2 {
			t.Fatalf("peek: %d letters, more %v, %v", len(letters), more, err)
		}
		for _, l := range letters {
			if l.Reason() != "retries_exhausted: last error server_error (WhatsApp error 131000)" || l.PublishTime.IsZero() || l.ID == "" {
				t.Errorf("%s: reason %q, published %s, id %q", l.MessagePath(), l.Reason(), l.PublishTime, l.ID)
			}
		}
	}
	if letters, more, err := h.Peek(ctx, 1); err != nil || !more || len(letters) != 1 {
		t.Fatalf("peek of 1: %d letters, more %v, %v", len(letters), more, err)
	}

	at := time.Now().Truncate(time.Second)
	rep, err := h.Replay(ctx, 1, at)
	if replayed, failed := rep.Counts(); err != nil || replayed != 1 || failed != 0 || !rep.More {
		t.Fatalf("replay of 1: %d replayed, %d failed, more %v, %v", replayed, failed, rep.More, err)
	}
	rep2, err := h.Replay(ctx, 10, at)
	if replayed, failed := rep2.Counts(); err != nil || replayed != 1 || failed != 0 || rep2.More {
		t.Fatalf("replay of the rest: %d replayed, %d failed, more %v, %v", replayed, failed, rep2.More, err)
	}
	for _, r := range append(rep.Letters, rep2.Letters...) {
		if r.Topic != topology.TasksTopic || r.ID == "" || r.AckErr != nil {
			t.Errorf("%s: back to %q as %q, ack %v", r.Letter.MessagePath(), r.Topic, r.ID, r.AckErr)
		}
	}
	if rep3, err := h.Replay(ctx, 10, time.Now()); err != nil || len(rep3.Letters) != 0 || rep3.More {
		t.Fatalf("a second replay: %+v, %v", rep3, err)
	}

	back := takeAll(t, ctx, c, topology.TasksSubscription)
	if len(back) != 2 {
		t.Fatalf("%d tasks back on the sender's subscription, want 2", len(back))
	}
	for _, m := range back {
		checkReplayed(t, m, at)
	}
}

// checkReplayed checks a replayed task: the data as it was, the driver's
// ordering key, the attributes without why it was dead-lettered.
func checkReplayed(t *testing.T, m *pubsubpb.PubsubMessage, at time.Time) {
	t.Helper()
	a := m.GetAttributes()
	id := a["messagePath"][len(path("")):]
	if !bytes.Equal(m.GetData(), task(t, id, driver)) {
		t.Errorf("%s: data changed", id)
	}
	if key := sendtask.OrderingKey(driver); m.GetOrderingKey() != key {
		t.Errorf("%s: ordering key %q, want the driver's %q", id, m.GetOrderingKey(), key)
	}
	if a["schema"] != sendtask.Schema || a[deadletter.AttrReplayedFrom] != topology.TasksDeadLetterHoldingSub || a[deadletter.AttrReplayedAt] != at.UTC().Format(time.RFC3339) {
		t.Errorf("%s: attributes %v", id, a)
	}
	for k := range a {
		if k == deadletter.AttrFailureReason || strings.HasPrefix(k, "CloudPubSubDeadLetter") {
			t.Errorf("%s: still says why it was dead-lettered: %v", id, a)
		}
	}
}

// A task the subscription's dead-letter policy moved (here after a consumer
// nacked it ten times) is listed with that reason and its attempts, and
// replayed with its ordering key, once.
func TestPeekAndReplayWhatPubSubDeadLettered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := emulator(t, ctx)
	publish(t, ctx, c, topology.TasksTopic, &pubsub.Message{Data: task(t, "m1", driver), OrderingKey: sendtask.OrderingKey(driver),
		Attributes: map[string]string{"messagePath": path("m1"), "schema": sendtask.Schema}})
	if n, err := pubsubemu.NackUntilDeadLettered(ctx, c, topology.TasksSubscription); err != nil || n != 10 {
		t.Fatalf("nacked %d deliveries (want the policy's 10): %v", n, err)
	}

	h := newHold(t, c, tasksHold(t))
	letters, more, err := h.Peek(ctx, 10)
	if err != nil || more || len(letters) != 1 {
		t.Fatalf("peek: %d letters, more %v, %v", len(letters), more, err)
	}
	if l := letters[0]; l.MessagePath() != path("m1") || l.Reason() != "max delivery attempts on "+topology.TasksSubscription || l.Attempts() != 10 {
		t.Errorf("listed %s: %q after %d attempts", l.MessagePath(), l.Reason(), l.Attempts())
	}
	at := time.Now().Truncate(time.Second)
	rep, err := h.Replay(ctx, 10, at)
	if replayed, failed := rep.Counts(); err != nil || replayed != 1 || failed != 0 {
		t.Fatalf("replay: %d replayed, %d failed, %v", replayed, failed, err)
	}
	if rep, err := h.Replay(ctx, 10, time.Now()); err != nil || len(rep.Letters) != 0 {
		t.Fatalf("a second replay: %+v, %v", rep, err)
	}
	back := takeAll(t, ctx, c, topology.TasksSubscription)
	if len(back) != 1 {
		t.Fatalf("%d tasks back on the sender's subscription, want 1", len(back))
	}
	checkReplayed(t, back[0], at)
}

// A letter whose way back is unknown stays on the hold, and so does
// everything when its topic is gone.
func TestReplayFailuresStayOnTheHold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := emulator(t, ctx)
	publish(t, ctx, c, topology.TasksDeadLetterTopic, &pubsub.Message{Data: []byte("x"),
		Attributes: map[string]string{"messagePath": path("m1"), deadletter.AttrSourceSubscription: "somebody-elses"}})
	publish(t, ctx, c, topology.TasksDeadLetterTopic, &pubsub.Message{Data: []byte("y"), Attributes: map[string]string{"messagePath": path("m2")}})

	hold := tasksHold(t)
	hold.Sources = []chart.Subscription{{Name: topology.TasksSubscription, Topic: "deleted-topic"}}
	h := newHold(t, c, hold)
	rep, err := h.Replay(ctx, 10, time.Now())
	if replayed, failed := rep.Counts(); err != nil || replayed != 0 || failed != 2 {
		t.Fatalf("%d replayed, %d failed, %v", replayed, failed, err)
	}
	for _, r := range rep.Letters {
		if r.Err == nil || r.ID != "" {
			t.Errorf("%s: %q %v", r.Letter.MessagePath(), r.ID, r.Err)
		}
	}
	letters, _, err := h.Peek(ctx, 10)
	if err != nil || len(letters) != 2 {
		t.Fatalf("after the failed replay the hold has %d letters, %v", len(letters), err)
	}
}

func takeAll(t *testing.T, ctx context.Context, c *pubsub.Client, sub string) []*pubsubpb.PubsubMessage {
	t.Helper()
	ms, err := pubsubemu.TakeAll(ctx, c, sub)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
