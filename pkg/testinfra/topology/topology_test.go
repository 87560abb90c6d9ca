package topology_test

import (
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
