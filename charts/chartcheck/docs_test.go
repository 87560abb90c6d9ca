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
		if r := s.MessageRetention; r != "" {
			expect["message-retention-duration"] = r
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

// The gcloud commands of docs/deploy.md create the indexes of
// firestore.indexes.json, as the chart's Config Connector resources do.
func TestDeployDocMatchesFirestoreIndexes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "gcloud firestore indexes composite create ")
		if !ok {
			continue
		}
		var group, scope string
		var fields []string
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			switch k {
			case "collection-group":
				group = v
			case "query-scope":
				scope = v
			case "field-config":
				// field-path=status,order=ascending: the path keeps its case.
				var path, mode string
				for _, kv := range strings.Split(v, ",") {
					key, val, _ := strings.Cut(kv, "=")
					if key == "field-path" {
						path = val
					} else {
						mode = key + "=" + strings.ToUpper(val)
					}
				}
				fields = append(fields, path+" "+mode)
			case "database":
				if v != "'(default)'" {
					t.Errorf("deploy.md creates an index in database %s; the values' default is (default)", v)
				}
			default:
				t.Errorf("deploy.md index command: unexpected --%s", k)
			}
		}
		got = append(got, group+" "+scope+" "+strings.Join(fields, " "))
	}
	var want []string
	for _, ix := range readFirestoreIndexes(t) {
		var fields []string
		for _, f := range ix.Fields {
			mode := "order=" + f.Order
			if f.ArrayConfig != "" {
				mode = "array-config=" + f.ArrayConfig
			}
			fields = append(fields, f.FieldPath+" "+mode)
		}
		want = append(want, ix.CollectionGroup+" "+ix.QueryScope+" "+strings.Join(fields, " "))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("deploy.md creates indexes\n%s\nfirestore.indexes.json declares\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
