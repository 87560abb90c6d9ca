package topology_test

import (
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/testinfra/topology"
)

func TestDefaultDeclaresWhatTheServicesUse(t *testing.T) {
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	subs := map[string]topology.Subscription{}
	for _, s := range topo.Subscriptions {
		subs[s.Name] = s
	}
	for sub, topic := range map[string]string{
		topology.TasksSubscription:        topology.TasksTopic,
		topology.ResultsSubscription:      topology.ResultsTopic,
		topology.StatusEventsSubscription: topology.StatusEventsTopic,
	} {
		s, ok := subs[sub]
		if !ok || s.Topic != topic {
			t.Errorf("subscription %s on %q, want topic %s", sub, s.Topic, topic)
		}
		if s.DeadLetterPolicy == nil {
			t.Errorf("subscription %s has no dead-letter policy", sub)
		}
	}
	if !subs[topology.TasksSubscription].EnableMessageOrdering {
		t.Error("tasks are not delivered in order per driver")
	}
}

func TestParseRejectsInconsistentDeclarations(t *testing.T) {
	for name, doc := range map[string]string{
		"undeclared topic": "topics: [{name: a}]\nsubscriptions: [{name: s, topic: b, ackDeadline: 10s}]",
		"undeclared dlq":   "topics: [{name: a}]\nsubscriptions: [{name: s, topic: a, ackDeadline: 10s, deadLetterPolicy: {deadLetterTopic: x, maxDeliveryAttempts: 5}}]",
		"attempts range":   "topics: [{name: a}]\nsubscriptions: [{name: s, topic: a, ackDeadline: 10s, deadLetterPolicy: {deadLetterTopic: a, maxDeliveryAttempts: 200}}]",
		"unknown field":    "topics: [{name: a, colour: red}]",
		"bad duration":     "topics: [{name: a}]\nsubscriptions: [{name: s, topic: a, ackDeadline: soon}]",
	} {
		if _, err := topology.Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "topology") {
			t.Errorf("%s: error %q lacks context", name, err)
		}
	}
}
