package sendtask

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Schema is the `schema` attribute of a published task.
var Schema = string((&wadispatchv1.SendTask{}).ProtoReflect().Descriptor().FullName())

// Attributes the sender adds to a task it publishes to the dead-letter
// topic itself, when its WhatsApp retries ran out: why, and WhatsApp's last
// error (pkg/deadletter reads them for operators).
const (
	AttrFailureReason   = "failureReason"
	AttrLastErrorReason = "lastErrorReason"
	AttrLastErrorCode   = "lastErrorCode"
)

// Publisher publishes SendTasks to the tasks topic the way every task is
// published, by ingest and by an operator's resend alike: the protobuf
// task, ordered per driver (OrderingKey) so one driver's messages go out in
// order, with routing attributes and the caller's trace.
type Publisher struct {
	p *pubsub.Publisher
}

// NewPublisher publishes on topic through client, giving up on one publish
// after timeout (0: the client's default). The caller closes the client
// after Stop.
func NewPublisher(client *pubsub.Client, topic string, timeout time.Duration) *Publisher {
	p := client.Publisher(topic)
	p.EnableMessageOrdering = true
	if timeout > 0 {
		p.PublishSettings.Timeout = timeout
	}
	return &Publisher{p: p}
}

// Publish publishes task with extra attributes beside the standard ones
// and returns the server's message id once it has the message. If ctx ends
// first the task may still be published: every consumer of tasks tolerates
// a second copy, since the sender claims each send.
func (p *Publisher) Publish(ctx context.Context, task *wadispatchv1.SendTask, extra map[string]string) (string, error) {
	data, err := proto.Marshal(task)
	if err != nil {
		return "", fmt.Errorf("encode SendTask: %w", err)
	}
	attrs := map[string]string{
		"messagePath": task.GetMessageDocId(),
		"leaseId":     task.GetLeaseId(),
		"type":        dispatch.Label(task.GetType()),
		"schema":      Schema,
	}
	if id := task.GetEventId(); id != "" {
		attrs["eventId"] = id
	}
	maps.Copy(attrs, extra)
	key := OrderingKey(task.GetDriverMobileNumber())
	id, err := p.p.Publish(ctx, &pubsub.Message{Data: data, OrderingKey: key, Attributes: tracing.Inject(ctx, attrs)}).Get(ctx)
	if err != nil {
		// A failed publish pauses its ordering key until resumed.
		p.p.ResumePublish(key)
		return "", fmt.Errorf("publish SendTask: %w", err)
	}
	return id, nil
}

// OrderingKey is the ordering key of a driver's tasks: the same for every
// task to one number, so one driver's messages go out in order, without the
// number in clear in the message's metadata (which Pub/Sub shows in its
// console and dead-letter listings).
func OrderingKey(driver string) string {
	sum := sha256.Sum256([]byte(driver))
	return "driver-" + hex.EncodeToString(sum[:12])
}

// Stop flushes the tasks accepted so far and stops the publisher.
func (p *Publisher) Stop() { p.p.Stop() }
