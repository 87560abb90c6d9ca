// Package topology names the Pub/Sub topics and subscriptions of the
// declaration (charts/wadispatch/topology.yaml) and creates them on a
// Pub/Sub server.
package topology

import (
	"context"
	"fmt"

	"cloud.google.com/go/pubsub/v2"
	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	chart "github.com/visn/wadispatch/charts/wadispatch"
)

// Names of the topics and subscriptions the services use.
const (
	TasksTopic                = "whatsapp-messages"
	ResultsTopic              = "whatsapp-message-results"
	StatusEventsTopic         = "whatsapp-status-events"
	TasksSubscription         = "whatsapp-messages-sender"
	ResultsSubscription       = "whatsapp-message-results-recorder"
	StatusEventsSubscription  = "whatsapp-status-events-recorder"
	MediaTopic                = "whatsapp-media"
	MediaSubscription         = "whatsapp-media-sender"
	TasksDeadLetterTopic      = "whatsapp-messages-dead-letter"
	TasksDeadLetterHoldingSub = "whatsapp-messages-dead-letter-hold"
)

// The declaration is read by the chart package, so that product code
// (wadispatchctl) reads it without linking test infrastructure.
type (
	Topology     = chart.PubSubTopology
	Subscription = chart.Subscription
)

// Default is the project's declaration, from the chart.
func Default() (*Topology, error) { return chart.DefaultTopology() }

// Apply creates the topics and subscriptions of t in client's project; ones
// that exist are left as they are.
func Apply(ctx context.Context, client *pubsub.Client, t *Topology) error {
	project := client.Project()
	topicName := func(n string) string { return "projects/" + project + "/topics/" + n }
	for _, tp := range t.Topics {
		if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName(tp.Name)}); ignoreExists(err) != nil {
			return fmt.Errorf("create topic %s: %w", tp.Name, err)
		}
	}
	for _, s := range t.Subscriptions {
		sub := &pubsubpb.Subscription{
			Name:                  "projects/" + project + "/subscriptions/" + s.Name,
			Topic:                 topicName(s.Topic),
			AckDeadlineSeconds:    int32(s.AckDeadline.Seconds()),
			EnableMessageOrdering: s.EnableMessageOrdering,
		}
		if r := s.RetryPolicy; r != nil {
			sub.RetryPolicy = &pubsubpb.RetryPolicy{
				MinimumBackoff: durationpb.New(r.MinimumBackoff.Duration),
				MaximumBackoff: durationpb.New(r.MaximumBackoff.Duration),
			}
		}
		if r := s.MessageRetention; r != nil {
			sub.MessageRetentionDuration = durationpb.New(r.Duration)
		}
		if d := s.DeadLetterPolicy; d != nil {
			sub.DeadLetterPolicy = &pubsubpb.DeadLetterPolicy{
				DeadLetterTopic:     topicName(d.DeadLetterTopic),
				MaxDeliveryAttempts: d.MaxDeliveryAttempts,
			}
		}
		if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, sub); ignoreExists(err) != nil {
			return fmt.Errorf("create subscription %s: %w", s.Name, err)
		}
	}
	return nil
}

func ignoreExists(err error) error {
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return err
}
