// Package topology reads the Pub/Sub topology declaration
// (charts/wadispatch/topology.yaml) and creates it on a Pub/Sub server.
package topology

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

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
	TasksDeadLetterTopic      = "whatsapp-messages-dead-letter"
	TasksDeadLetterHoldingSub = "whatsapp-messages-dead-letter-hold"
)

// Duration is a time.Duration written as "10s" in YAML.
type Duration struct{ time.Duration }

// UnmarshalJSON reads "10s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' {
		return fmt.Errorf("duration %s: want a quoted string like \"10s\"", b)
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Topology is the declaration.
type Topology struct {
	Topics        []Topic        `json:"topics"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// Topic is a Pub/Sub topic.
type Topic struct {
	Name string `json:"name"`
}

// Subscription is a pull subscription.
type Subscription struct {
	Name                  string            `json:"name"`
	Topic                 string            `json:"topic"`
	AckDeadline           Duration          `json:"ackDeadline"`
	EnableMessageOrdering bool              `json:"enableMessageOrdering"`
	RetryPolicy           *RetryPolicy      `json:"retryPolicy,omitempty"`
	DeadLetterPolicy      *DeadLetterPolicy `json:"deadLetterPolicy,omitempty"`
}

// RetryPolicy bounds the redelivery backoff of nacked messages.
type RetryPolicy struct {
	MinimumBackoff Duration `json:"minimumBackoff"`
	MaximumBackoff Duration `json:"maximumBackoff"`
}

// DeadLetterPolicy moves a message that failed MaxDeliveryAttempts times.
type DeadLetterPolicy struct {
	DeadLetterTopic     string `json:"deadLetterTopic"`
	MaxDeliveryAttempts int32  `json:"maxDeliveryAttempts"`
}

// Default is the project's declaration, from the chart.
func Default() (*Topology, error) { return Parse(chart.Topology) }

// Parse reads and checks a declaration.
func Parse(b []byte) (*Topology, error) {
	var t Topology
	if err := yaml.UnmarshalStrict(b, &t); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	topics := map[string]bool{}
	for _, tp := range t.Topics {
		topics[tp.Name] = true
	}
	for _, s := range t.Subscriptions {
		if !topics[s.Topic] {
			return nil, fmt.Errorf("topology: subscription %s: topic %q is not declared", s.Name, s.Topic)
		}
		if d := s.DeadLetterPolicy; d != nil {
			if !topics[d.DeadLetterTopic] {
				return nil, fmt.Errorf("topology: subscription %s: dead-letter topic %q is not declared", s.Name, d.DeadLetterTopic)
			}
			// Pub/Sub's documented range.
			if d.MaxDeliveryAttempts < 5 || d.MaxDeliveryAttempts > 100 {
				return nil, fmt.Errorf("topology: subscription %s: maxDeliveryAttempts %d outside 5..100", s.Name, d.MaxDeliveryAttempts)
			}
		}
	}
	return &t, nil
}

// Apply creates the topics and subscriptions in project; ones that exist are
// left as they are.
func (t *Topology) Apply(ctx context.Context, client *pubsub.Client) error {
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
