package consume_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/tracing/tracingtest"
)

// Through a real subscription: an acked message is done, a nacked one comes
// back with a higher delivery attempt, a poison one is counted as poison,
// and each delivery is one span carrying its verdict.
func TestReceiveTurnsVerdictsIntoAcksAndNacks(t *testing.T) {
	rec := tracingtest.Record(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsubemu.NewClient(ctx, pubsubemu.StartForTest(t), pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	pub := ps.Publisher(topology.TasksTopic)
	defer pub.Stop()
	for _, body := range []string{"ack", "nack-once", "poison"} {
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(body), Attributes: map[string]string{"messagePath": body}}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	seen := map[string][]int{} // body → delivery attempts
	done := make(chan struct{})
	reg := prometheus.NewRegistry()
	m := consume.NewMetrics(reg, consume.MetricNames{Handled: "wadispatch_test_pubsub_messages_total", Poison: "wadispatch_test_poison_messages_total"})
	go func() {
		defer close(done)
		err := consume.Receive(ctx, ps.Subscriber(topology.TasksSubscription), consume.Options{
			Settings: pubsub.DefaultReceiveSettings, Metrics: m, Log: logrus.NewEntry(logrus.New()),
		}, func(_ context.Context, msg consume.Message) consume.Verdict {
			body := string(msg.Data)
			mu.Lock()
			seen[body] = append(seen[body], msg.DeliveryAttempt)
			n := len(seen[body])
			mu.Unlock()
			switch {
			case body == "ack", body == "nack-once" && n > 1:
				return consume.Verdict{Ack: true, Reason: "done"}
			case body == "poison":
				// Acked on its second delivery, so the test ends; the
				// first is what is counted.
				return consume.Verdict{Ack: n > 1, Reason: "bad", Poison: n == 1}
			}
			return consume.Verdict{Reason: "later"}
		})
		if err != nil {
			t.Errorf("receive: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		finished := len(seen["ack"]) >= 1 && len(seen["nack-once"]) >= 2 && len(seen["poison"]) >= 2
		mu.Unlock()
		if finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries so far: %v", seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	if got := seen["ack"]; len(got) != 1 {
		t.Errorf("acked message delivered %d times, want once", len(got))
	}
	if got := seen["nack-once"]; len(got) < 2 || got[1] <= got[0] {
		t.Errorf("nacked message's delivery attempts %v, want a second, later attempt", got)
	}
	sub := topology.TasksSubscription
	for _, c := range []struct {
		verdict, reason string
		want            float64
	}{{"ack", "done", 2}, {"nack", "later", 1}, {"nack", "bad", 1}, {"ack", "bad", 1}} {
		if got := testutil.ToFloat64(m.Handled(sub, c.verdict, c.reason)); got != c.want {
			t.Errorf("wadispatch_test_pubsub_messages_total{%s,%s} = %v, want %v", c.verdict, c.reason, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.Poisoned(sub, "bad")); got != 1 {
		t.Errorf("poison count %v, want 1", got)
	}
	spans := 0
	for _, s := range rec.Ended() {
		if s.Name() == "process "+sub {
			spans++
		}
	}
	if want := len(seen["ack"]) + len(seen["nack-once"]) + len(seen["poison"]); spans != want {
		t.Errorf("%d spans for %d deliveries", spans, want)
	}
}
