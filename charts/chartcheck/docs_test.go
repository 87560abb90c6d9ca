package chartcheck

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docs/deploy.md gives gcloud commands for clusters without Config
// Connector; they must create what topology.yaml declares, as the chart's
// Config Connector resources do.
func TestDeployDocMatchesTopology(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	top := readTopology(t)
	var topics []string
	subs := map[string]map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, "gcloud pubsub topics create "); ok {
			topics = append(topics, strings.TrimSpace(name))
		}
		if rest, ok := strings.CutPrefix(line, "gcloud pubsub subscriptions create "); ok {
			fields := strings.Fields(rest)
			flags := map[string]string{}
			for _, f := range fields[1:] {
				k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
				flags[k] = v
			}
			subs[fields[0]] = flags
		}
	}
	var want []string
	for _, tp := range top.Topics {
		want = append(want, tp.Name)
	}
	slices.Sort(want)
	slices.Sort(topics)
	if !slices.Equal(topics, want) {
		t.Errorf("deploy.md creates topics %v; topology.yaml declares %v", topics, want)
	}
	if len(subs) != len(top.Subscriptions) {
		t.Errorf("deploy.md creates %d subscriptions; topology.yaml declares %d", len(subs), len(top.Subscriptions))
	}
	for _, s := range top.Subscriptions {
		f, ok := subs[s.Name]
		if !ok {
			t.Errorf("deploy.md does not create subscription %s", s.Name)
			continue
		}
		expect := map[string]string{
			"topic":             s.Topic,
			"ack-deadline":      strconv.Itoa(seconds(t, s.AckDeadline)),
			"expiration-period": "never",
		}
		if s.EnableMessageOrdering {
			expect["enable-message-ordering"] = ""
		}
		if r := s.RetryPolicy; r != nil {
			expect["min-retry-delay"], expect["max-retry-delay"] = r.MinimumBackoff, r.MaximumBackoff
		}
		if d := s.DeadLetterPolicy; d != nil {
			expect["dead-letter-topic"], expect["max-delivery-attempts"] = d.DeadLetterTopic, strconv.Itoa(d.MaxDeliveryAttempts)
		}
		for k, v := range expect {
			if got, ok := f[k]; !ok || got != v {
				t.Errorf("deploy.md subscription %s: --%s=%q, want %q", s.Name, k, got, v)
			}
		}
		for k := range f {
			if _, ok := expect[k]; !ok {
				t.Errorf("deploy.md subscription %s: --%s is not in topology.yaml", s.Name, k)
			}
		}
	}
	m := render(t, []string{filepath.Join(chartDir, "ci", "production-values.yaml")})
	for _, c := range m.EventarcTriggers[0].Spec.MatchingCriteria {
		if c.Attribute == "document" && !strings.Contains(string(b), "document='"+c.Value+"'") {
			t.Errorf("deploy.md's Eventarc trigger does not match document %s", c.Value)
		}
	}
}
