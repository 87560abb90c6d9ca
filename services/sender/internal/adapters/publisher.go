package adapters

import (
	"context"
	"fmt"
	"sync"

	"cloud.google.com/go/pubsub/v2"
)

// Publisher publishes on any topic of the project, one Publisher per topic.
type Publisher struct {
	client *pubsub.Client

	mu     sync.Mutex
	topics map[string]*pubsub.Publisher
}

// NewPublisher publishes through client; the caller closes it after Stop.
func NewPublisher(client *pubsub.Client) *Publisher {
	return &Publisher{client: client, topics: map[string]*pubsub.Publisher{}}
}

// Publish implements app.Publisher: it returns once the server has the
// message.
func (p *Publisher) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) error {
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
func (p *Publisher) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.topics {
		pub.Stop()
	}
}
