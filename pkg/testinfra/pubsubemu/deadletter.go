package pubsubemu

import (
	"context"
	"fmt"
	"maps"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// deadLetterer dead-letters as Pub/Sub does, in front of pstest, which
// never sees a dead-letter policy. pstest (v2.8.1 and v2.9.0) moves a
// message out of delivery attempts to the dead-letter topic but never takes
// it off its subscription: its ack there names the message id where the ack
// id is expected, and is ignored. So it forwards the message again every
// 10 ms for as long as the server runs, each copy replacing the last on the
// hold subscription (an ack there is undone a moment later) and all of them
// kept in memory, until the server slows to a halt; and on a subscription
// with message ordering the stuck message is first of its ordering key
// forever: nothing published after it with that key is ever delivered.
//
// So the front strips the policy from the subscriptions it creates and
// keeps it: it stamps each delivery with its attempt (pstest counts
// deliveries in its ack ids, "m12:3", policy or not), and a nack (a zero ack
// deadline, which the Go client sends as a ModifyAckDeadline call) of a
// delivery that used up maxDeliveryAttempts publishes the message to the
// dead-letter topic, with the attributes Pub/Sub adds, and acks it on its
// subscription. A last delivery whose ack deadline runs out without a nack
// (a consumer that died holding it) is delivered again, past the maximum,
// and dead-lettered by its next nack.
type deadLetterer struct {
	srv *pstest.Server

	mu       sync.Mutex
	policies map[string]*pubsubpb.DeadLetterPolicy // by subscription name
}

func (d *deadLetterer) policy(subscription string) *pubsubpb.DeadLetterPolicy {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.policies[subscription]
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
	switch r := req.(type) {
	case *pubsubpb.Subscription: // CreateSubscription
		if r.GetDeadLetterPolicy() == nil {
			return handler(ctx, req)
		}
		stripped := proto.Clone(r).(*pubsubpb.Subscription)
		stripped.DeadLetterPolicy = nil
		resp, err := handler(ctx, stripped)
		if err != nil {
			return resp, err
		}
		d.mu.Lock()
		d.policies[r.GetName()] = r.GetDeadLetterPolicy()
		d.mu.Unlock()
		created := proto.Clone(resp.(*pubsubpb.Subscription)).(*pubsubpb.Subscription)
		created.DeadLetterPolicy = r.GetDeadLetterPolicy()
		return created, nil
	case *pubsubpb.GetSubscriptionRequest:
		resp, err := handler(ctx, req)
		if err != nil {
			return resp, err
		}
		if p := d.policy(r.GetSubscription()); p != nil {
			got := proto.Clone(resp.(*pubsubpb.Subscription)).(*pubsubpb.Subscription)
			got.DeadLetterPolicy = p
			return got, nil
		}
		return resp, nil
	case *pubsubpb.PullRequest:
		resp, err := handler(ctx, req)
		if err == nil {
			d.stamp(r.GetSubscription(), resp.(*pubsubpb.PullResponse).GetReceivedMessages())
		}
		return resp, err
	case *pubsubpb.ModifyAckDeadlineRequest:
		if r.GetAckDeadlineSeconds() == 0 {
			return d.nack(ctx, r, handler)
		}
	}
	return handler(ctx, req)
}

// stamp sets each message's delivery attempt, as Pub/Sub does on a
// subscription with a dead-letter policy.
func (d *deadLetterer) stamp(subscription string, msgs []*pubsubpb.ReceivedMessage) {
	if d.policy(subscription) == nil {
		return
	}
	for _, m := range msgs {
		m.DeliveryAttempt = int32(deliveries(m.GetAckId()))
	}
}

// streamIntercept stamps the deliveries of streaming pulls and answers
// their keepalive pings.
func (d *deadLetterer) streamIntercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &stampingStream{ServerStream: ss, d: d})
}

// stampingStream is pstest's side of a streaming pull. It learns the
// subscription from the first request and stamps the messages sent on it,
// and it answers the client's keepalive pings itself: pstest answers them
// while holding its server-wide lock, with a send that blocks forever once
// the stream's sender has quit (a client killed mid-stream), and then no
// call of any client is ever served again.
type stampingStream struct {
	grpc.ServerStream
	d            *deadLetterer
	subscription atomic.Value // string
	pings        bool         // the client's protocol expects ping answers
	first        bool         // the first request was received
	sendMu       sync.Mutex   // pstest's sender and ping answers share the stream
}

func (s *stampingStream) RecvMsg(m any) error {
	for {
		err := s.ServerStream.RecvMsg(m)
		r, ok := m.(*pubsubpb.StreamingPullRequest)
		if err != nil || !ok {
			return err
		}
		if !s.first {
			s.first = true
			s.pings = r.GetProtocolVersion() >= 1
			s.subscription.Store(r.GetSubscription())
			return nil
		}
		if len(r.GetAckIds()) > 0 || len(r.GetModifyDeadlineAckIds()) > 0 {
			return nil
		}
		// A keepalive ping, which is all pstest would take from it.
		if s.pings {
			if err := s.SendMsg(&pubsubpb.StreamingPullResponse{}); err != nil {
				return err
			}
		}
	}
}

func (s *stampingStream) SendMsg(m any) error {
	if r, ok := m.(*pubsubpb.StreamingPullResponse); ok {
		if sub, _ := s.subscription.Load().(string); sub != "" {
			s.d.stamp(sub, r.GetReceivedMessages())
		}
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.ServerStream.SendMsg(m)
}

// nack dead-letters the deliveries of r that used up their subscription's
// attempts and nacks the others.
func (d *deadLetterer) nack(ctx context.Context, r *pubsubpb.ModifyAckDeadlineRequest, handler grpc.UnaryHandler) (any, error) {
	policy := d.policy(r.GetSubscription())
	if policy == nil {
		return handler(ctx, r)
	}
	sub := &pubsubpb.Subscription{Name: r.GetSubscription(), DeadLetterPolicy: policy}
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
