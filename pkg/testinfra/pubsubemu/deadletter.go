package pubsubemu

import (
	"context"
	"fmt"
	"maps"
	"path"
	"strconv"
	"strings"
	"time"

	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// deadLetterer dead-letters as Pub/Sub does, in front of pstest. pstest
// (v2.8.1 and v2.9.0) moves a message out of delivery attempts to the
// dead-letter topic but never takes it off its subscription: its ack there
// names the message id where the ack id is expected, and is ignored. So it
// forwards the message again every 10 ms for as long as the server runs,
// each copy replacing the last on the hold subscription (an ack there is
// undone a moment later), and on a subscription with message ordering the
// stuck message is first of its ordering key forever: nothing published
// after it with that key is ever delivered.
//
// The deadLetterer takes over the last nack instead: a nack (a zero ack
// deadline, which the Go client sends as a ModifyAckDeadline call) of a
// delivery that used up the subscription's maxDeliveryAttempts publishes
// the message to the dead-letter topic, with the attributes Pub/Sub adds,
// and acks it on its subscription. pstest's own path is left for a last
// delivery whose ack deadline runs out without a nack (a consumer that
// died holding it).
type deadLetterer struct {
	srv *pstest.Server
}

// The attributes Pub/Sub adds to a message it dead-letters, as Google
// documents them.
const (
	attrSourceDeliveryCount       = "CloudPubSubDeadLetterSourceDeliveryCount"
	attrSourceSubscription        = "CloudPubSubDeadLetterSourceSubscription"
	attrSourceSubscriptionProject = "CloudPubSubDeadLetterSourceSubscriptionProject"
	attrSourceTopicPublishTime    = "CloudPubSubDeadLetterSourceTopicPublishTime"
)

func (d *deadLetterer) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r, ok := req.(*pubsubpb.ModifyAckDeadlineRequest)
	if !ok || r.GetAckDeadlineSeconds() != 0 {
		return handler(ctx, req)
	}
	sub, err := d.srv.GServer.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: r.GetSubscription()})
	policy := sub.GetDeadLetterPolicy()
	if err != nil || policy == nil {
		return handler(ctx, req)
	}
	var nacks []string
	for _, ackID := range r.GetAckIds() {
		if deliveries(ackID) < int(policy.GetMaxDeliveryAttempts()) {
			nacks = append(nacks, ackID)
			continue
		}
		forwarded, err := d.forward(ctx, sub, ackID)
		if err != nil {
			return nil, err
		}
		if !forwarded {
			nacks = append(nacks, ackID)
		}
	}
	if len(nacks) == 0 {
		return &emptypb.Empty{}, nil
	}
	return handler(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: r.GetSubscription(), AckIds: nacks})
}

// forward publishes the message of ackID to sub's dead-letter topic and
// acks it on sub. It reports false for an ack id it cannot place, which is
// then nacked as it was.
func (d *deadLetterer) forward(ctx context.Context, sub *pubsubpb.Subscription, ackID string) (bool, error) {
	id, _, _ := strings.Cut(ackID, ":")
	m := d.srv.Message(id)
	if m == nil {
		return false, nil
	}
	attrs := maps.Clone(m.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	project, _, _ := strings.Cut(strings.TrimPrefix(sub.GetName(), "projects/"), "/")
	attrs[attrSourceDeliveryCount] = strconv.Itoa(deliveries(ackID))
	attrs[attrSourceSubscription] = path.Base(sub.GetName())
	attrs[attrSourceSubscriptionProject] = project
	attrs[attrSourceTopicPublishTime] = m.PublishTime.UTC().Format(time.RFC3339Nano)
	dl := sub.GetDeadLetterPolicy().GetDeadLetterTopic()
	msg := &pubsubpb.PubsubMessage{Data: m.Data, Attributes: attrs, OrderingKey: m.OrderingKey}
	if _, err := d.srv.GServer.Publish(ctx, &pubsubpb.PublishRequest{Topic: dl, Messages: []*pubsubpb.PubsubMessage{msg}}); err != nil {
		return false, fmt.Errorf("dead-letter %s to %s: %w", id, dl, err)
	}
	if _, err := d.srv.GServer.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub.GetName(), AckIds: []string{ackID}}); err != nil {
		return false, fmt.Errorf("ack dead-lettered %s: %w", id, err)
	}
	return true, nil
}

// deliveries is the delivery count pstest writes into its ack ids
// ("m12:3"), or 0.
func deliveries(ackID string) int {
	_, n, _ := strings.Cut(ackID, ":")
	v, _ := strconv.Atoi(n)
	return v
}
