package chartcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardFile = "dashboards/wadispatch.json"

// documentedMetrics reads the metric tables of docs/metrics.md: each row's
// first cell is the metric name in backticks, the second its type.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \\| (counter|gauge|histogram) \\|")
	types := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			types[m[1]] = m[2]
		}
	}
	if len(types) == 0 {
		t.Fatal("docs/metrics.md lists no metric")
	}
	return types
}

// metricName finds, in PromQL, the names of the services' metrics and of the
// Cloud Monitoring metrics read through Managed Service for Prometheus.
var metricName = regexp.MustCompile(`\b(wadispatch_[a-z0-9_]+|[a-z0-9_]+_googleapis_com:[a-z0-9_]+)`)

// dashboardQueries returns every PromQL query of the dashboard: the panels'
// targets (rows' nested panels included) and the template variables'.
func dashboardQueries(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
			Panels []json.RawMessage `json:"panels"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	queries := map[string][]string{}
	for _, p := range d.Panels {
		if len(p.Panels) > 0 {
			t.Errorf("row %q: collapsed rows hide their panels from this check; keep rows open", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries["panel "+p.Title] = append(queries["panel "+p.Title], tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			queries["variable "+v.Name] = append(queries["variable "+v.Name], v.Definition)
		}
	}
	return queries
}

// Every metric a dashboard query uses is one docs/metrics.md lists (with
// _bucket, _sum and _count for its histograms): a renamed metric cannot
// leave a panel silently empty.
func TestDashboardQueriesUseDocumentedMetrics(t *testing.T) {
	types := documentedMetrics(t)
	known := map[string]bool{}
	for name, typ := range types {
		known[name] = true
		if typ == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[name+s] = true
			}
		}
	}
	used := map[string]bool{}
	for where, exprs := range dashboardQueries(t) {
		for _, e := range exprs {
			names := metricName.FindAllString(e, -1)
			if len(names) == 0 {
				t.Errorf("%s: query %q uses no wadispatch or Cloud Monitoring metric", where, e)
			}
			for _, n := range names {
				used[n] = true
				if !known[n] {
					t.Errorf("%s: %s is not a metric docs/metrics.md lists", where, n)
				}
			}
		}
	}
	for _, n := range []string{"wadispatch_sender_tasks_total", "wadispatch_sender_whatsapp_call_duration_seconds_bucket",
		"wadispatch_recorder_record_duration_seconds_bucket", "pubsub_googleapis_com:subscription_oldest_unacked_message_age",
		"wadispatch_recorder_expired_claims_marked_unknown_total"} {
		if !used[n] {
			t.Errorf("the dashboard does not chart %s", n)
		}
	}
}

// docs/metrics.md lists exactly the wadispatch_ metrics the services
// register (every `"wadispatch_..."` string literal of their Go sources).
func TestMetricsDocMatchesTheCode(t *testing.T) {
	literal := regexp.MustCompile(`"(wadispatch_[a-z0-9_]+)"`)
	inCode := map[string]string{}
	for _, dir := range []string{"services", "pkg"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
				inCode[m[1]] = path
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(inCode) == 0 {
		t.Fatal("no wadispatch_ metric found in services/ and pkg/")
	}
	documented := documentedMetrics(t)
	for name, path := range inCode {
		if documented[name] == "" {
			t.Errorf("%s (registered in %s) is not in docs/metrics.md", name, path)
		}
	}
	var stale []string
	for name := range documented {
		if _, ok := inCode[name]; !ok && strings.HasPrefix(name, "wadispatch_") {
			stale = append(stale, name)
		}
	}
	slices.Sort(stale)
	if len(stale) > 0 {
		t.Errorf("docs/metrics.md lists metrics no code registers: %v", stale)
	}
}

// With dashboards.enabled the chart ships the dashboard file, unchanged, in
// a ConfigMap the Grafana sidecar picks up; without, nothing.
func TestDashboardConfigMap(t *testing.T) {
	if m := render(t, nil); len(m.ConfigMaps) != 0 {
		t.Errorf("default values render %d ConfigMaps, want none", len(m.ConfigMaps))
	}
	m := render(t, nil, "dashboards.enabled=true")
	if len(m.ConfigMaps) != 1 {
		t.Fatalf("%d ConfigMaps rendered, want the dashboard's", len(m.ConfigMaps))
	}
	cm := m.ConfigMaps[0]
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("ConfigMap %s labels %v: the sidecar looks for grafana_dashboard: \"1\"", cm.Name, cm.Labels)
	}
	want, err := os.ReadFile(filepath.Join(chartDir, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	got := cm.Data["wadispatch.json"]
	var a, b any
	if err := json.Unmarshal([]byte(got), &a); err != nil {
		t.Fatalf("the ConfigMap's dashboard is not JSON: %v", err)
	}
	_ = json.Unmarshal(want, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Error("the ConfigMap's dashboard differs from " + dashboardFile)
	}
}
