// Package wadispatch gives Go code the files of the Helm chart that are also
// the source of truth for local runs, so the two cannot drift: the Pub/Sub
// topology, read into PubSubTopology, and the Firestore indexes.
package wadispatch

import (
	_ "embed"
	"fmt"
	"time"

	"sigs.k8s.io/yaml"
)

// Topology is topology.yaml: the Pub/Sub topics and subscriptions.
//
//go:embed topology.yaml
var Topology []byte

// FirestoreIndexes is firestore.indexes.json: the composite indexes the
// recorder's queries and ingest's reconciler need in the messages database.
//
//go:embed firestore.indexes.json
var FirestoreIndexes []byte

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

// PubSubTopology is the declaration in topology.yaml.
type PubSubTopology struct {
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
	// MessageRetention is how long the subscription keeps a message it
	// has not acknowledged; unset, Pub/Sub's default (7 days).
	MessageRetention *Duration `json:"messageRetention,omitempty"`
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

// DefaultTopology is the chart's declaration, topology.yaml.
func DefaultTopology() (*PubSubTopology, error) { return ParseTopology(Topology) }

// ParseTopology reads and checks a declaration.
func ParseTopology(b []byte) (*PubSubTopology, error) {
	var t PubSubTopology
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
		// Pub/Sub's documented range.
		if r := s.MessageRetention; r != nil && (r.Duration < 10*time.Minute || r.Duration > 31*24*time.Hour) {
			return nil, fmt.Errorf("topology: subscription %s: messageRetention %v outside 10m..744h (31 days)", s.Name, r.Duration)
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

// DeadLetterHold is a subscription on a dead-letter topic, where dead
// letters wait for an operator, with the subscriptions whose dead letters
// that topic receives: the way back for what it holds.
type DeadLetterHold struct {
	Subscription    string
	DeadLetterTopic string
	Sources         []Subscription
}

// DeadLetterHolds are the declaration's hold subscriptions, in its order.
func (t *PubSubTopology) DeadLetterHolds() []DeadLetterHold {
	var holds []DeadLetterHold
	for _, h := range t.Subscriptions {
		var sources []Subscription
		for _, s := range t.Subscriptions {
			if d := s.DeadLetterPolicy; d != nil && d.DeadLetterTopic == h.Topic {
				sources = append(sources, s)
			}
		}
		if len(sources) > 0 {
			holds = append(holds, DeadLetterHold{Subscription: h.Name, DeadLetterTopic: h.Topic, Sources: sources})
		}
	}
	return holds
}
