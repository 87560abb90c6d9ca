package wadispatch_test

import (
	"strings"
	"testing"

	chart "github.com/visn/wadispatch/charts/wadispatch"
)

func TestParseRejectsInconsistentDeclarations(t *testing.T) {
	for name, doc := range map[string]string{
		"undeclared topic": "topics: [{name: a}]\nsubscriptions: [{name: s, topic: b, ackDeadline: 10s}]",
		"undeclared dlq":   "topics: [{name: a}]\nsubscriptions: [{name: s, topic: a, ackDeadline: 10s, deadLetterPolicy: {deadLetterTopic: x, maxDeliveryAttempts: 5}}]",
		"attempts range":   "topics: [{name: a}]\nsubscriptions: [{name: s, topic: a, ackDeadline: 10s, deadLetterPolicy: {deadLetterTopic: a, maxDeliveryAttempts: 200}}]",
		"unknown field":    "topics: [{name: a, colour: red}]",
		"bad duration":     "topics: [{name: a}]\nsubscriptions: [{name: s, topic: a, ackDeadline: soon}]",
	} {
		if _, err := chart.ParseTopology([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "topology") {
			t.Errorf("%s: error %q lacks context", name, err)
		}
	}
}

// Every dead-letter topic of the chart has a hold subscription, and each
// hold leads back to the one topic its dead letters came from.
func TestEveryDeadLetterTopicHasAHoldWithAWayBack(t *testing.T) {
	topo, err := chart.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	holds := map[string]chart.DeadLetterHold{}
	for _, h := range topo.DeadLetterHolds() {
		holds[h.DeadLetterTopic] = h
	}
	dlTopics := map[string]bool{}
	for _, s := range topo.Subscriptions {
		d := s.DeadLetterPolicy
		if d == nil {
			continue
		}
		dlTopics[d.DeadLetterTopic] = true
		h, ok := holds[d.DeadLetterTopic]
		if !ok {
			t.Errorf("%s dead-letters to %s, which no subscription holds: its dead letters would be lost", s.Name, d.DeadLetterTopic)
			continue
		}
		if len(h.Sources) != 1 || h.Sources[0].Topic != s.Topic {
			t.Errorf("hold %s: sources %+v, want only %s's", h.Subscription, h.Sources, s.Name)
		}
	}
	if len(holds) != len(dlTopics) {
		t.Errorf("%d holds, want one per topic that dead-letters (%d): %+v", len(holds), len(dlTopics), holds)
	}
}
