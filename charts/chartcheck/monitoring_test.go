package chartcheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// PodMonitoring is what the checks read of Google Managed Prometheus's
// monitoring.googleapis.com/v1 PodMonitoring; the vendored CRD
// (schemas/crds) checks its shape.
type PodMonitoring struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// GMPRules is monitoring.googleapis.com/v1 Rules or GlobalRules: its groups
// are Prometheus rule groups.
type GMPRules struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name     string    `json:"name"`
			Interval string    `json:"interval"`
			Rules    []GMPRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type GMPRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// docAlert is one PromQL expression of a row of docs/metrics.md's alert
// table: a row may list several, joined by "or", each with its own (for).
type docAlert struct{ expr, forDuration string }

var (
	unescapedPipe = regexp.MustCompile(`(^|[^\\])\|`)
	docExpr       = regexp.MustCompile("`([^`]+)`(?:\\s*\\(([0-9]+[smh])\\))?")
)

// documentedAlerts parses the "| alert | PromQL (for) | why |" tables of
// docs/metrics.md: alert name to its expressions.
func documentedAlerts(t *testing.T) map[string][]docAlert {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	alerts := map[string][]docAlert{}
	inTable := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		// Split on the pipes that are not escaped.
		marked := unescapedPipe.ReplaceAllString(line, "$1\x00")
		cells := strings.Split(marked, "\x00")
		if len(cells) < 5 {
			continue
		}
		cells = cells[1 : len(cells)-1]
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == "alert" && strings.HasPrefix(cells[1], "PromQL") {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(cells[0], "---") {
			continue
		}
		for _, m := range docExpr.FindAllStringSubmatch(cells[1], -1) {
			alerts[cells[0]] = append(alerts[cells[0]], docAlert{strings.ReplaceAll(m[1], `\|`, "|"), m[2]})
		}
		if len(alerts[cells[0]]) == 0 {
			t.Errorf("docs/metrics.md: alert %q has no PromQL in backquotes", cells[0])
		}
	}
	if len(alerts) == 0 {
		t.Fatal("docs/metrics.md: no | alert | PromQL (for) | why | table found")
	}
	return alerts
}

// The alerts of docs/metrics.md ship as GMP rules, one source of truth:
// every documented expression (and its for) is a rule whose summary is the
// alert's name, and every rule is documented.
func TestAlertRulesMatchMetricsDoc(t *testing.T) {
	doc := documentedAlerts(t)
	m := render(t, nil)
	if len(m.Rules) != 1 || len(m.GlobalRules) != 1 {
		t.Fatalf("%d Rules and %d GlobalRules rendered, want 1 each", len(m.Rules), len(m.GlobalRules))
	}
	if m.Rules[0].Namespace != "" && m.Rules[0].Namespace != namespace {
		t.Errorf("Rules in namespace %q", m.Rules[0].Namespace)
	}
	shipped := map[string][]docAlert{}
	names := map[string]string{}
	for _, rs := range append(slices.Clone(m.Rules), m.GlobalRules...) {
		for _, g := range rs.Spec.Groups {
			if g.Name == "" || len(g.Rules) == 0 {
				t.Errorf("%s %s: an unnamed or empty group", rs.Kind, rs.Name)
			}
			for _, r := range g.Rules {
				summary := r.Annotations["summary"]
				if r.Alert == "" || summary == "" || r.Labels["severity"] == "" {
					t.Errorf("%s %s: rule %+v lacks an alert name, summary or severity", rs.Kind, rs.Name, r)
				}
				if n, ok := names[summary]; ok && n != r.Alert {
					t.Errorf("%q is alerted as both %s and %s", summary, n, r.Alert)
				}
				names[summary] = r.Alert
				shipped[summary] = append(shipped[summary], docAlert{r.Expr, r.For})
				// Cloud Monitoring metrics carry no namespace: GMP
				// evaluates them only in GlobalRules.
				if strings.Contains(r.Expr, "pubsub_googleapis_com:") != (rs.Kind == "GlobalRules") {
					t.Errorf("%s: a rule on Cloud Monitoring metrics belongs in GlobalRules, others in Rules (found in %s)", r.Alert, rs.Kind)
				}
			}
		}
	}
	for name, want := range doc {
		got := shipped[name]
		if !sameAlerts(got, want) {
			t.Errorf("alert %q:\n  docs/metrics.md %q\n  chart rules     %q", name, want, got)
		}
	}
	for name := range shipped {
		if _, ok := doc[name]; !ok {
			t.Errorf("alert %q is shipped but not in docs/metrics.md's alert table", name)
		}
	}
	if off := render(t, nil, "monitoring.rules.enabled=false"); len(off.Rules)+len(off.GlobalRules) != 0 {
		t.Error("monitoring.rules.enabled=false still renders rules")
	}
}

func sameAlerts(a, b []docAlert) bool {
	key := func(x docAlert) string { return x.expr + "\x00" + x.forDuration }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// Each service has a PodMonitoring scraping /metrics on the port the
// NetworkPolicy opens to the GMP collectors' namespace.
func TestPodMonitoringScrapesTheMetricsPort(t *testing.T) {
	for _, files := range append([][]string{nil}, ciValuesSets(t)...) {
		m := render(t, files)
		if len(m.PodMonitorings) != len(services) {
			t.Fatalf("values %v: %d PodMonitorings, want %d", files, len(m.PodMonitorings), len(services))
		}
		for _, svc := range services {
			name := release + "-" + svc
			pm := byName(t, m.PodMonitorings, name)
			d := m.deployment(name)
			if d == nil {
				t.Fatalf("no Deployment %s", name)
			}
			sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: PodMonitoring selector %v does not select the Deployment's pods (%v)", name, pm.Spec.Selector, err)
			}
			if len(pm.Spec.Endpoints) != 1 {
				t.Fatalf("%s: %d endpoints, want 1", name, len(pm.Spec.Endpoints))
			}
			ep := pm.Spec.Endpoints[0]
			if ep.Path != "/metrics" || ep.Interval == "" {
				t.Errorf("%s: endpoint %+v, want path /metrics and an interval", name, ep)
			}
			// The metrics port is the ops port (HTTP_ADDR :8080), never
			// ingest's events port.
			c := d.Spec.Template.Spec.Containers[0]
			var port int32
			for _, p := range c.Ports {
				if p.Name == ep.Port {
					port = p.ContainerPort
				}
			}
			if port != 8080 {
				t.Errorf("%s: PodMonitoring scrapes port %q (container port %d), want the ops port 8080", name, ep.Port, port)
			}
			for _, e := range c.Env {
				if e.Name == "HTTP_ADDR" && e.Value != ":8080" {
					t.Errorf("%s: HTTP_ADDR %q, not the scraped port", name, e.Value)
				}
			}
			np := byName(t, m.NetworkPolicies, name)
			admitted := false
			for _, rule := range np.Spec.Ingress {
				fromGMP := false
				for _, peer := range rule.From {
					if peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "gmp-system" {
						fromGMP = true
					}
				}
				for _, p := range rule.Ports {
					if fromGMP && p.Port != nil && p.Port.String() == ep.Port {
						admitted = true
					}
				}
			}
			if !admitted {
				t.Errorf("%s: the NetworkPolicy does not admit gmp-system to port %q", name, ep.Port)
			}
		}
	}
	if off := render(t, nil, "monitoring.podMonitoring.enabled=false"); len(off.PodMonitorings) != 0 {
		t.Error("monitoring.podMonitoring.enabled=false still renders PodMonitorings")
	}
}
