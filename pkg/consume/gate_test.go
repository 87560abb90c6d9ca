package consume_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
)

// A dependency that stays down for more handler calls than the tasks
// subscription's dead-letter policy allows deliveries: the messages are
// held, not nacked, so each is handled on its first delivery once the
// dependency is back and none reaches the dead-letter topic. While it is
// down, one call at a time probes it and the gate reports not ready.
func TestAnOutageHoldsMessagesInsteadOfSpendingDeliveryAttempts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsubemu.NewClient(ctx, pubsubemu.StartForTest(t), pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	maxAttempts := 0
	for _, s := range topo.Subscriptions {
		if s.Name == topology.TasksSubscription {
			maxAttempts = int(s.DeadLetterPolicy.MaxDeliveryAttempts)
		}
	}
	const n = 5
	pub := ps.Publisher(topology.TasksTopic)
	defer pub.Stop()
	for i := range n {
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte{byte(i)}}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}

	gate := consume.NewGate(5*time.Millisecond, 20*time.Millisecond)
	outageCalls := 3 * maxAttempts
	var (
		calls, concurrentWhileDown, maxConcurrentWhileDown atomic.Int64
		notReadySeen                                       atomic.Bool
		mu                                                 sync.Mutex
		attempts                                           = map[byte][]int{}
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = consume.Receive(ctx, ps.Subscriber(topology.TasksSubscription), consume.Options{Settings: pubsub.DefaultReceiveSettings, Gate: gate},
			func(_ context.Context, m consume.Message) consume.Verdict {
				c := calls.Add(1)
				mu.Lock()
				attempts[m.Data[0]] = append(attempts[m.Data[0]], m.DeliveryAttempt)
				mu.Unlock()
				if c > int64(outageCalls) {
					return consume.Verdict{Ack: true, Reason: "done"}
				}
				if c > 1 {
					if gate.Ready(ctx) == nil {
						t.Error("gate ready while the dependency is down")
					} else {
						notReadySeen.Store(true)
					}
					cur := concurrentWhileDown.Add(1)
					defer concurrentWhileDown.Add(-1)
					for {
						m := maxConcurrentWhileDown.Load()
						if cur <= m || maxConcurrentWhileDown.CompareAndSwap(m, cur) {
							break
						}
					}
					time.Sleep(time.Millisecond)
				}
				return consume.Verdict{Reason: "dependency_down", Unavailable: true}
			})
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if calls.Load() >= int64(outageCalls+n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handler calls, want %d", calls.Load(), outageCalls+n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != n {
		t.Errorf("%d messages handled, want %d", len(attempts), n)
	}
	for body, a := range attempts {
		for _, at := range a {
			if at != 1 {
				t.Errorf("message %d delivered with attempts %v: an outage spent delivery attempts", body, a)
				break
			}
		}
	}
	if got := maxConcurrentWhileDown.Load(); got > 1 {
		t.Errorf("%d calls at once while the dependency was down, want one probe at a time", got)
	}
	if !notReadySeen.Load() {
		t.Error("the gate never reported not ready")
	}
	if err := gate.Ready(context.Background()); err != nil {
		t.Errorf("gate still not ready after the dependency came back: %v", err)
	}

	// Nothing reached the dead-letter topic.
	dlCtx, dlCancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer dlCancel()
	var dead atomic.Int64
	_ = ps.Subscriber(topology.TasksDeadLetterHoldingSub).Receive(dlCtx, func(_ context.Context, m *pubsub.Message) {
		dead.Add(1)
		m.Ack()
	})
	if dead.Load() != 0 {
		t.Errorf("%d messages on the dead-letter topic", dead.Load())
	}
}

// A message held longer than HoldFor is nacked after all, so one stuck
// message does not stay in hand forever.
func TestAHoldEndsInANackAfterHoldFor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsubemu.NewClient(ctx, pubsubemu.StartForTest(t), pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	pub := ps.Publisher(topology.TasksTopic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("x")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	gate := consume.NewGate(5*time.Millisecond, 20*time.Millisecond)
	seen := make(chan int, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = consume.Receive(ctx, ps.Subscriber(topology.TasksSubscription), consume.Options{Settings: pubsub.DefaultReceiveSettings, Gate: gate, HoldFor: 200 * time.Millisecond},
			func(_ context.Context, m consume.Message) consume.Verdict {
				seen <- m.DeliveryAttempt
				if m.DeliveryAttempt > 1 {
					return consume.Verdict{Ack: true}
				}
				return consume.Verdict{Unavailable: true, Reason: "down"}
			})
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case a := <-seen:
			if a > 1 {
				cancel()
				<-done
				return
			}
		case <-timeout:
			t.Fatal("the held message was never redelivered")
		}
	}
}
