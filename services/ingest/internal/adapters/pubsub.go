package adapters

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// Tasks publishes SendTasks the way every task is published
// (pkg/sendtask): ordered by the driver's number.
type Tasks struct {
	p *sendtask.Publisher
}

// NewTasks publishes on topic, giving up on one publish after timeout.
func NewTasks(client *pubsub.Client, topic string, timeout time.Duration) *Tasks {
	return &Tasks{p: sendtask.NewPublisher(client, topic, timeout)}
}

// PublishTask implements app.Tasks; every failure is Pub/Sub's.
func (t *Tasks) PublishTask(ctx context.Context, task *wadispatchv1.SendTask) (string, error) {
	id, err := t.p.Publish(ctx, task, nil)
	if err != nil {
		return "", &app.DependencyError{Dep: app.DepPubSub, Err: err}
	}
	return id, nil
}

// Stop flushes the tasks accepted so far.
func (t *Tasks) Stop() { t.p.Stop() }

// Refusals publishes refusals on the results topic, where the recorder
// tells them from send results by their `schema` attribute. Their
// attributes name the message, never the driver.
type Refusals struct {
	p *pubsub.Publisher
}

// NewRefusals publishes on topic, giving up on one publish after timeout.
func NewRefusals(client *pubsub.Client, topic string, timeout time.Duration) *Refusals {
	p := client.Publisher(topic)
	p.PublishSettings.Timeout = timeout
	return &Refusals{p: p}
}

// PublishRefusal implements app.Refusals; a failed publish is Pub/Sub's.
func (r *Refusals) PublishRefusal(ctx context.Context, ref *wadispatchv1.Refusal) (string, error) {
	data, err := proto.Marshal(ref)
	if err != nil {
		return "", fmt.Errorf("encode Refusal: %w", err)
	}
	attrs := map[string]string{
		"schema":      string(proto.MessageName(ref)),
		"messagePath": ref.GetMessageDocId(),
		"leaseId":     ref.GetLeaseId(),
		"reason":      ref.GetReason(),
	}
	if id := ref.GetEventId(); id != "" {
		attrs["eventId"] = id
	}
	id, err := r.p.Publish(ctx, &pubsub.Message{Data: data, Attributes: tracing.Inject(ctx, attrs)}).Get(ctx)
	if err != nil {
		return "", &app.DependencyError{Dep: app.DepPubSub, Err: fmt.Errorf("publish Refusal: %w", err)}
	}
	return id, nil
}

// Stop flushes the refusals accepted so far.
func (r *Refusals) Stop() { r.p.Stop() }

// Events publishes webhook events on the status events topic. No ordering:
// the recorder applies statuses forward-only, so their order does not
// matter.
type Events struct {
	p *pubsub.Publisher
}

// NewEvents publishes on topic, giving up on one publish after timeout.
func NewEvents(client *pubsub.Client, topic string, timeout time.Duration) *Events {
	p := client.Publisher(topic)
	p.PublishSettings.Timeout = timeout
	return &Events{p: p}
}

// PublishEvent implements app.Events: the `schema` attribute is the
// message's full name, which the recorder dispatches on.
func (e *Events) PublishEvent(ctx context.Context, m proto.Message, wamid string) (app.Pending, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	return e.p.Publish(ctx, &pubsub.Message{Data: data, Attributes: tracing.Inject(ctx, map[string]string{
		"schema": string(proto.MessageName(m)),
		"wamid":  wamid,
	})}), nil
}

// Stop flushes the events accepted so far.
func (e *Events) Stop() { e.p.Stop() }
