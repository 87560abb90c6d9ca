// Package pubsub publishes what the recorder asks of other services.
package pubsub

import (
	"context"
	"fmt"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// MediaFetches publishes MediaFetch requests on the media topic.
type MediaFetches struct {
	p *pubsub.Publisher
}

// NewMediaFetches publishes on topic through client; the caller closes the
// client after Stop.
func NewMediaFetches(client *pubsub.Client, topic string) *MediaFetches {
	return &MediaFetches{p: client.Publisher(topic)}
}

// PublishMediaFetch implements app.MediaFetches, waiting for the server's
// acceptance. The attributes name the reply, never the driver.
func (m *MediaFetches) PublishMediaFetch(ctx context.Context, f *wadispatchv1.MediaFetch) error {
	data, err := proto.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode MediaFetch: %w", err)
	}
	attrs := map[string]string{
		"schema":      string(proto.MessageName(f)),
		"messagePath": f.GetMessageDocId(),
		"wamid":       f.GetWhatsappMessageId(),
		"leaseId":     f.GetLeaseId(),
	}
	if _, err := m.p.Publish(ctx, &pubsub.Message{Data: data, Attributes: tracing.Inject(ctx, attrs)}).Get(ctx); err != nil {
		return fmt.Errorf("publish MediaFetch: %w", err)
	}
	return nil
}

// Stop flushes what was accepted and stops the publisher.
func (m *MediaFetches) Stop() { m.p.Stop() }
