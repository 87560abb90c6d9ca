package main

import (
	"context"
	"fmt"
	"sync"

	"cloud.google.com/go/pubsub/v2"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/services/sender/internal/app"
)

// receive feeds the subscription's messages to the procedure until ctx ends;
// Receive returns once the handlers in progress have returned.
func receive(ctx context.Context, client *pubsub.Client, cfg spec, proc *app.Processor, log *logrus.Entry) error {
	subscription := cfg.Subscription
	sub := client.Subscriber(subscription)
	sub.ReceiveSettings.MaxOutstandingMessages = cfg.MaxInFlight
	sub.ReceiveSettings.NumGoroutines = cfg.PullStreams
	sub.ReceiveSettings.MaxDurationPerAckExtension = cfg.AckExtension
	err := sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		attempt := 0
		if m.DeliveryAttempt != nil {
			attempt = *m.DeliveryAttempt
		}
		v := proc.Process(ctx, app.Delivery{Data: m.Data, Attributes: m.Attributes, Attempt: attempt})
		if v.Ack {
			m.Ack()
		} else {
			m.Nack()
		}
	})
	if err != nil {
		return fmt.Errorf("receive from %s: %w", subscription, err)
	}
	log.Info("stopped receiving; in-flight tasks finished")
	return nil
}

// publisher publishes on any topic of the project, one Publisher per topic.
type publisher struct {
	client *pubsub.Client

	mu     sync.Mutex
	topics map[string]*pubsub.Publisher
}

func newPublisher(client *pubsub.Client) *publisher {
	return &publisher{client: client, topics: map[string]*pubsub.Publisher{}}
}

// Publish implements sending.Publisher: it returns once the server has the
// message.
func (p *publisher) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) error {
	p.mu.Lock()
	pub, ok := p.topics[topic]
	if !ok {
		pub = p.client.Publisher(topic)
		p.topics[topic] = pub
	}
	p.mu.Unlock()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs}).Get(ctx); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	return nil
}

// Stop flushes and stops every publisher.
func (p *publisher) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.topics {
		pub.Stop()
	}
}
