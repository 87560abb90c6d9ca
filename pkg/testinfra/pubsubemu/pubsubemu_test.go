package pubsubemu_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func client(t *testing.T) *pubsub.Client {
	t.Helper()
	addr := pubsubemu.StartForTest(t)
	c, err := pubsubemu.NewClient(context.Background(), addr, pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// SendTasks published with ordering keys arrive on the sender's subscription
// in publish order per key.
func TestSendTasksArriveInOrderPerDriver(t *testing.T) {
	c := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	pub := c.Publisher(topology.TasksTopic)
	pub.EnableMessageOrdering = true
	defer pub.Stop()
	drivers := []string{"+447700900001", "+447700900002", "+447700900003"}
	const perDriver = 20
	var results []*pubsub.PublishResult
	for i := 0; i < perDriver; i++ {
		for _, d := range drivers {
			task := &wadispatchv1.SendTask{
				DriverMobileNumber: d,
				MessageId:          fmt.Sprintf("m%02d", i),
				Message:            "hello",
				Type:               wadispatchv1.MessageType_MESSAGE_TYPE_TEXT,
			}
			data, err := proto.Marshal(task)
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, pub.Publish(ctx, &pubsub.Message{Data: data, OrderingKey: d}))
		}
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	got := map[string][]string{}
	total := 0
	rctx, rcancel := context.WithCancel(ctx)
	err := c.Subscriber(topology.TasksSubscription).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		var task wadispatchv1.SendTask
		if err := proto.Unmarshal(m.Data, &task); err != nil {
			t.Errorf("payload is not a SendTask: %v", err)
		}
		if m.OrderingKey != task.DriverMobileNumber {
			t.Errorf("ordering key %q for driver %q", m.OrderingKey, task.DriverMobileNumber)
		}
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got[task.DriverMobileNumber] = append(got[task.DriverMobileNumber], task.MessageId)
		if total++; total == perDriver*len(drivers) {
			rcancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drivers {
		if len(got[d]) != perDriver {
			t.Fatalf("driver %s received %d tasks, want %d", d, len(got[d]), perDriver)
		}
		for i, id := range got[d] {
			if want := fmt.Sprintf("m%02d", i); id != want {
				t.Fatalf("driver %s: task %d is %s, want %s (order %v)", d, i, id, want, got[d])
			}
		}
	}
}

// A task nacked on every delivery moves to the dead-letter topic after the
// subscription's maxDeliveryAttempts.
func TestNackedTaskLandsOnDeadLetterTopic(t *testing.T) {
	c := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	var maxAttempts int
	for _, s := range topo.Subscriptions {
		if s.Name == topology.TasksSubscription {
			maxAttempts = int(s.DeadLetterPolicy.MaxDeliveryAttempts)
		}
	}

	pub := c.Publisher(topology.TasksTopic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("not a SendTask"), Attributes: map[string]string{"poison": "yes"}}).Get(ctx); err != nil {
		t.Fatal(err)
	}

	var deliveries atomic.Int32
	nctx, ncancel := context.WithCancel(ctx)
	go func() {
		_ = c.Subscriber(topology.TasksSubscription).Receive(nctx, func(_ context.Context, m *pubsub.Message) {
			deliveries.Add(1)
			m.Nack()
		})
	}()

	dctx, dcancel := context.WithCancel(ctx)
	var dead *pubsub.Message
	err = c.Subscriber(topology.TasksDeadLetterHoldingSub).Receive(dctx, func(_ context.Context, m *pubsub.Message) {
		dead = m
		m.Ack()
		dcancel()
	})
	ncancel()
	if err != nil {
		t.Fatal(err)
	}
	if dead == nil || string(dead.Data) != "not a SendTask" || dead.Attributes["poison"] != "yes" {
		t.Fatalf("dead letter = %+v", dead)
	}
	if int(deliveries.Load()) < maxAttempts {
		t.Fatalf("dead-lettered after %d deliveries, want at least %d", deliveries.Load(), maxAttempts)
	}
}

// A dead-lettered task leaves its subscription as on Pub/Sub: it reaches the
// hold once, with the attributes Pub/Sub adds, and the driver's next task
// (same ordering key) is delivered. pstest alone keeps the task, forwarding
// it again and again and holding back its key.
func TestDeadLetteredTaskLeavesItsSubscription(t *testing.T) {
	c := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := c.Publisher(topology.TasksTopic)
	pub.EnableMessageOrdering = true
	defer pub.Stop()
	publish := func(data string) {
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(data), OrderingKey: "driver-1", Attributes: map[string]string{"poison": "yes"}}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	publish("first")
	n, err := pubsubemu.NackUntilDeadLettered(ctx, c, topology.TasksSubscription)
	if err != nil || n != 10 {
		t.Fatalf("nacked %d deliveries, want the policy's 10: %v", n, err)
	}

	publish("next")
	got, err := pubsubemu.TakeAll(ctx, c, topology.TasksSubscription)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].GetData()) != "next" {
		t.Errorf("after the dead letter the sender's subscription gave %v, want the driver's next task", got)
	}

	time.Sleep(100 * time.Millisecond) // pstest's delivery loop runs every 10 ms
	dead, err := pubsubemu.TakeAll(ctx, c, topology.TasksDeadLetterHoldingSub)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 {
		t.Fatalf("%d dead letters on the hold, want 1", len(dead))
	}
	a := dead[0].GetAttributes()
	if string(dead[0].GetData()) != "first" || a["poison"] != "yes" || a["CloudPubSubDeadLetterSourceDeliveryCount"] != "10" ||
		a["CloudPubSubDeadLetterSourceSubscription"] != topology.TasksSubscription ||
		a["CloudPubSubDeadLetterSourceSubscriptionProject"] != pubsubemu.TestProject || a["CloudPubSubDeadLetterSourceTopicPublishTime"] == "" {
		t.Errorf("dead letter %q with %v", dead[0].GetData(), a)
	}
	time.Sleep(100 * time.Millisecond)
	if again, err := pubsubemu.TakeAll(ctx, c, topology.TasksDeadLetterHoldingSub); err != nil || len(again) != 0 {
		t.Errorf("acked on the hold, the dead letter came back %d times (%v)", len(again), err)
	}
}

func TestCloseTwiceIsHarmless(t *testing.T) {
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	s, err := pubsubemu.Start(context.Background(), "127.0.0.1:0", pubsubemu.TestProject, topo)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A consumer that dies holding its deliveries nacks nothing: pstest's own
// dead-lettering would loop on such a message forever. Past the maximum it
// is delivered again, its attempt stamped, and its next nack dead-letters it
// once.
func TestDeliveriesThatExpirePastTheMaximumAreDeadLetteredOnce(t *testing.T) {
	c := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub := c.Publisher(topology.TasksTopic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("held by the dead")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	name := "projects/" + pubsubemu.TestProject + "/subscriptions/" + topology.TasksSubscription
	var last *pubsubpb.ReceivedMessage
	for attempt := 1; attempt <= 11; {
		resp, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetReceivedMessages()) == 0 {
			continue
		}
		last = resp.GetReceivedMessages()[0]
		if got := last.GetDeliveryAttempt(); got != int32(attempt) {
			t.Fatalf("delivery attempt %d, want %d", got, attempt)
		}
		attempt++
		// Let it expire: the consumer holding it died.
		if err := c.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: name, AckIds: []string{last.GetAckId()}, AckDeadlineSeconds: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		resp, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetReceivedMessages()) == 1 {
			// The 12th delivery, nacked.
			if err := c.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: name, AckIds: []string{resp.GetReceivedMessages()[0].GetAckId()}}); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if left, err := pubsubemu.TakeAll(ctx, c, topology.TasksSubscription); err != nil || len(left) != 0 {
		t.Errorf("%d left on the subscription after the dead letter (%v)", len(left), err)
	}
	time.Sleep(100 * time.Millisecond) // pstest's delivery loop runs every 10 ms
	dead, err := pubsubemu.TakeAll(ctx, c, topology.TasksDeadLetterHoldingSub)
	if err != nil || len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1 (%v)", len(dead), err)
	}
	if got := dead[0].GetAttributes()["CloudPubSubDeadLetterSourceDeliveryCount"]; got != "12" {
		t.Errorf("dead-lettered after %s deliveries, want 12", got)
	}
}
