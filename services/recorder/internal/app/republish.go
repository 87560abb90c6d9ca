package app

import (
	"context"
	"fmt"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// PubSubRepublisher publishes resent tasks as ingest publishes tasks: the
// protobuf SendTask, ordered by the driver's number.
type PubSubRepublisher struct {
	publisher *pubsub.Publisher
}

// NewPubSubRepublisher publishes on the tasks topic through client; the
// caller stops the returned publisher's client.
func NewPubSubRepublisher(client *pubsub.Client, topic string) *PubSubRepublisher {
	p := client.Publisher(topic)
	p.EnableMessageOrdering = true
	return &PubSubRepublisher{publisher: p}
}

// Republish implements Republisher.
func (r *PubSubRepublisher) Republish(ctx context.Context, task *wadispatchv1.SendTask) error {
	data, err := proto.Marshal(task)
	if err != nil {
		return fmt.Errorf("encode task: %w", err)
	}
	key := task.GetDriverMobileNumber()
	res := r.publisher.Publish(ctx, &pubsub.Message{
		Data:        data,
		OrderingKey: key,
		// The resend continues the trace of whoever asked for it.
		Attributes: tracing.Inject(ctx, map[string]string{
			"messagePath": task.GetMessageDocId(),
			"leaseId":     task.GetLeaseId(),
			"type":        messageType(task.GetType()),
			"schema":      string(proto.MessageName(task)),
			"resend":      "true",
		}),
	})
	if _, err := res.Get(ctx); err != nil {
		// An ordering key stops publishing after a failure until resumed.
		r.publisher.ResumePublish(key)
		return fmt.Errorf("publish task: %w", err)
	}
	return nil
}

// Stop flushes and stops the publisher.
func (r *PubSubRepublisher) Stop() { r.publisher.Stop() }

func messageType(t wadispatchv1.MessageType) string {
	switch t {
	case wadispatchv1.MessageType_MESSAGE_TYPE_TEXT:
		return "text"
	case wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE:
		return "template"
	}
	return "unspecified"
}
