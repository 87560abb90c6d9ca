package chartcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// topology is charts/wadispatch/topology.yaml (the chart's Go package reads the
// same file for wadispatchctl and the local Pub/Sub server; this module does
// not import the product module, to keep it out of its build).
type topology struct {
	Topics []struct {
		Name string `json:"name"`
	} `json:"topics"`
	Subscriptions []topologySubscription `json:"subscriptions"`
}

type topologySubscription struct {
	Name                  string `json:"name"`
	Topic                 string `json:"topic"`
	AckDeadline           string `json:"ackDeadline"`
	EnableMessageOrdering bool   `json:"enableMessageOrdering"`
	RetryPolicy           *struct {
		MinimumBackoff string `json:"minimumBackoff"`
		MaximumBackoff string `json:"maximumBackoff"`
	} `json:"retryPolicy"`
	DeadLetterPolicy *struct {
		DeadLetterTopic     string `json:"deadLetterTopic"`
		MaxDeliveryAttempts int    `json:"maxDeliveryAttempts"`
	} `json:"deadLetterPolicy"`
	MessageRetention string `json:"messageRetention"`
}

func readTopology(t *testing.T) *topology {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var top topology
	if err := yaml.UnmarshalStrict(b, &top); err != nil {
		t.Fatalf("topology.yaml: %v", err)
	}
	return &top
}

// firestoreIndex is one index of charts/wadispatch/firestore.indexes.json.
type firestoreIndex struct {
	CollectionGroup string       `json:"collectionGroup"`
	QueryScope      string       `json:"queryScope"`
	Fields          []IndexField `json:"fields"`
}

func readFirestoreIndexes(t *testing.T) []firestoreIndex {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "firestore.indexes.json"))
	if err != nil {
		t.Fatal(err)
	}
	var config struct {
		Indexes []firestoreIndex `json:"indexes"`
	}
	if err := yaml.UnmarshalStrict(b, &config); err != nil {
		t.Fatalf("firestore.indexes.json: %v", err)
	}
	if len(config.Indexes) == 0 {
		t.Fatal("firestore.indexes.json declares no index")
	}
	return config.Indexes
}

var services = []string{"ingest", "sender", "recorder"}

func TestHelmLint(t *testing.T) {
	for _, files := range append([][]string{nil}, ciValuesSets(t)...) {
		args := []string{"lint", "--strict", "--kube-version", kubeVersion, chartDir}
		for _, f := range files {
			args = append(args, "-f", f)
		}
		if _, err := runHelm(t, args...); err != nil {
			t.Error(err)
		}
	}
}

func ciValuesSets(t *testing.T) [][]string {
	var sets [][]string
	for _, f := range ciValues(t) {
		sets = append(sets, []string{f})
	}
	return sets
}

// Every rendering, default or production-like: every workload follows the
// security and operability rules.
func TestWorkloadsAreLockedDownAndOperable(t *testing.T) {
	for _, files := range append([][]string{nil}, ciValuesSets(t)...) {
		t.Run(fmt.Sprint("values=", files), func(t *testing.T) {
			m := render(t, files)
			if len(m.Deployments) < len(services) {
				t.Fatalf("%d Deployments rendered, want at least %d", len(m.Deployments), len(services))
			}
			for _, d := range m.Deployments {
				checkDeployment(t, m, d)
			}
			for _, name := range services {
				d := m.deployment(release + "-" + name)
				if d == nil {
					t.Fatalf("no Deployment %s-%s", release, name)
				}
				checkServiceProbes(t, name, d)
			}
			checkSelectorsMatch(t, m)
			checkNetworkPolicies(t, m)
			checkSenderGrace(t, m.deployment(release+"-sender"))
			checkSenderBalancesOverRecorders(t, m)
		})
	}
}

func checkDeployment(t *testing.T, m *Manifests, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
	checkPodLockedDown(t, d.Name, pod)
	if pod.TerminationGracePeriodSeconds == nil {
		t.Errorf("%s: terminationGracePeriodSeconds not set", d.Name)
	}
	if len(pod.InitContainers) > 0 {
		t.Errorf("%s: init containers are not expected", d.Name)
	}
	if pod.ServiceAccountName != "" && !slices.ContainsFunc(m.ServiceAccounts, func(sa *corev1.ServiceAccount) bool { return sa.Name == pod.ServiceAccountName }) {
		t.Errorf("%s: serviceAccountName %s is not rendered", d.Name, pod.ServiceAccountName)
	}
	for _, c := range pod.Containers {
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("%s/%s: liveness and readiness probes are required", d.Name, c.Name)
		}
	}
}

// checkPodLockedDown checks the security and resource rules every pod of
// the chart follows, a workload's or a test's.
func checkPodLockedDown(t *testing.T, name string, pod corev1.PodSpec) {
	t.Helper()
	ps := pod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
	}
	if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile is not RuntimeDefault", name)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: uses host namespaces", name)
	}
	for _, c := range pod.Containers {
		where := name + "/" + c.Name
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", where)
			continue
		case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
			t.Errorf("%s: runAsNonRoot is not true", where)
		case sc.RunAsUser == nil || *sc.RunAsUser == 0:
			t.Errorf("%s: runAsUser is not a non-root UID", where)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: readOnlyRootFilesystem is not true", where)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: allowPrivilegeEscalation is not false", where)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s: privileged", where)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s: capabilities are not exactly drop [ALL]", where)
		case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
			t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[res]
			lim, okLim := c.Resources.Limits[res]
			if !okReq || !okLim || req.IsZero() || lim.IsZero() {
				t.Errorf("%s: %s request and limit are required", where, res)
			} else if req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s exceeds limit %s", where, res, req.String(), lim.String())
			}
		}
		if c.Image == "" || strings.HasSuffix(c.Image, ":") {
			t.Errorf("%s: image %q", where, c.Image)
		}
	}
}

func checkServiceProbes(t *testing.T, name string, d *appsv1.Deployment) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	if g := c.LivenessProbe.HTTPGet; g == nil || g.Path != "/healthz" {
		t.Errorf("%s: liveness probe is not GET /healthz", name)
	}
	if c.StartupProbe == nil {
		t.Errorf("%s: no startup probe", name)
	}
	r := c.ReadinessProbe
	switch {
	case name == "recorder":
		if r.GRPC == nil || !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "grpc" && p.ContainerPort == r.GRPC.Port }) {
			t.Errorf("recorder: readiness is not the gRPC health check of its grpc port")
		}
	case r.HTTPGet == nil || r.HTTPGet.Path != "/readyz":
		t.Errorf("%s: readiness probe is not GET /readyz", name)
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa != d.Name {
		t.Errorf("%s: runs as service account %q, want its own %q", name, sa, d.Name)
	}
}

// Every Service, HPA, PDB and NetworkPolicy selects or targets a rendered
// Deployment, and every ServiceAccount of a service is a Workload Identity.
func checkSelectorsMatch(t *testing.T, m *Manifests) {
	t.Helper()
	selects := func(sel map[string]string) bool {
		return slices.ContainsFunc(m.Deployments, func(d *appsv1.Deployment) bool {
			return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels))
		})
	}
	for _, s := range m.Services {
		if !selects(s.Spec.Selector) {
			t.Errorf("Service %s selects no Deployment", s.Name)
		}
	}
	for _, p := range m.PDBs {
		if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels) {
			t.Errorf("PDB %s selects no Deployment", p.Name)
		}
	}
	for _, np := range m.NetworkPolicies {
		if !selects(np.Spec.PodSelector.MatchLabels) {
			t.Errorf("NetworkPolicy %s selects no Deployment", np.Name)
		}
	}
	for _, h := range m.HPAs {
		d := m.deployment(h.Spec.ScaleTargetRef.Name)
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || d == nil {
			t.Errorf("HPA %s targets no rendered Deployment", h.Name)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas while HPA %s scales it", d.Name, h.Name)
		}
	}
	for _, name := range services {
		sa := slices.IndexFunc(m.ServiceAccounts, func(sa *corev1.ServiceAccount) bool { return sa.Name == release+"-"+name })
		if sa < 0 {
			t.Errorf("no ServiceAccount for %s", name)
			continue
		}
		if gsa := m.ServiceAccounts[sa].Annotations["iam.gke.io/gcp-service-account"]; !strings.HasSuffix(gsa, ".iam.gserviceaccount.com") {
			t.Errorf("ServiceAccount %s: Workload Identity annotation %q", name, gsa)
		}
	}
}

// Only ingest takes traffic from outside the release (Eventarc's forwarder,
// a gateway, metrics scrapers); the recorder's gRPC port only from the
// sender and labelled clients; no rule admits every source.
func checkNetworkPolicies(t *testing.T, m *Manifests) {
	t.Helper()
	byComponent := map[string]*networkingv1.NetworkPolicy{}
	for _, np := range m.NetworkPolicies {
		byComponent[np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"]] = np
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("NetworkPolicy %s does not restrict ingress", np.Name)
		}
		for i, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				t.Errorf("NetworkPolicy %s rule %d admits every source", np.Name, i)
			}
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy %s rule %d admits every port", np.Name, i)
			}
		}
	}
	for _, name := range services {
		if byComponent[name] == nil {
			t.Errorf("no NetworkPolicy for %s", name)
		}
	}
	// The metrics scraper's namespaces reach ingest's probes-and-metrics
	// port, never its events port.
	if in := byComponent["ingest"]; in != nil {
		for _, rule := range in.Spec.Ingress {
			events := slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == "events" })
			for _, peer := range rule.From {
				if events && peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "gmp-system" {
					t.Errorf("ingest: the metrics namespace reaches the events port")
				}
			}
		}
	}
	if rec := byComponent["recorder"]; rec != nil {
		for _, rule := range rec.Spec.Ingress {
			if !slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == "grpc" }) {
				continue
			}
			for _, peer := range rule.From {
				if peer.IPBlock != nil || peer.PodSelector == nil {
					t.Errorf("recorder gRPC: peer %+v is not a pod selector", peer)
					continue
				}
				sel := peer.PodSelector.MatchLabels
				if sel["app.kubernetes.io/component"] != "sender" && sel["wadispatch.visn.io/recorder-client"] != "true" {
					t.Errorf("recorder gRPC: peer %v is neither the sender nor a labelled client", sel)
				}
			}
		}
	}
	for _, name := range []string{"sender", "recorder"} {
		np := byComponent[name]
		if np == nil {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.IPBlock != nil {
					t.Errorf("%s admits an IP block %s: only ingest faces a gateway", name, peer.IPBlock.CIDR)
				}
			}
		}
	}
}

// Google does not document where Eventarc's GKE event forwarder runs, so by
// default ingest's events port admits every pod of the cluster (never an
// address outside it but the gateway's), and a deployment that knows the
// forwarder's namespaces and labels narrows it to exactly those.
func TestEventarcForwarderPeers(t *testing.T) {
	eventsPeers := func(m *Manifests) []networkingv1.NetworkPolicyPeer {
		t.Helper()
		for _, np := range m.NetworkPolicies {
			if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != "ingest" {
				continue
			}
			for _, rule := range np.Spec.Ingress {
				if slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == "events" }) {
					return rule.From
				}
			}
		}
		t.Fatal("no rule for ingest's events port")
		return nil
	}
	def := eventsPeers(render(t, nil))
	if len(def) != 1 || def[0].NamespaceSelector == nil || len(def[0].NamespaceSelector.MatchLabels)+len(def[0].NamespaceSelector.MatchExpressions) != 0 ||
		def[0].PodSelector != nil || def[0].IPBlock != nil {
		t.Errorf("default events peers %+v, want one: every namespace, every pod", def)
	}
	narrowed := eventsPeers(render(t, nil, "networkPolicy.ingest.eventarcNamespaces={eventarc-a,eventarc-b}", "networkPolicy.ingest.eventarcPodLabels.app=forwarder"))
	var got []string
	for _, p := range narrowed {
		if p.NamespaceSelector == nil || p.PodSelector == nil || p.PodSelector.MatchLabels["app"] != "forwarder" {
			t.Errorf("narrowed peer %+v: want a namespace and the forwarder's labels", p)
			continue
		}
		got = append(got, p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
	}
	if !slices.Equal(got, []string{"eventarc-a", "eventarc-b"}) {
		t.Errorf("narrowed to namespaces %v, want [eventarc-a eventarc-b]", got)
	}
	labelsOnly := eventsPeers(render(t, nil, "networkPolicy.ingest.eventarcPodLabels.app=forwarder"))
	if len(labelsOnly) != 1 || labelsOnly[0].NamespaceSelector == nil || len(labelsOnly[0].NamespaceSelector.MatchLabels) != 0 ||
		labelsOnly[0].PodSelector == nil || labelsOnly[0].PodSelector.MatchLabels["app"] != "forwarder" {
		t.Errorf("narrowed by labels only: %+v, want the labelled pods of every namespace", labelsOnly)
	}
}

// The sender's pods outlive their longest in-flight send: the claim call,
// WhatsApp calls with backoffs (capped by the claim lease) and the result's
// publication, from the environment the chart gives the sender.
func checkSenderGrace(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	dur := func(name string) time.Duration {
		v, err := time.ParseDuration(env[name])
		if err != nil {
			t.Fatalf("sender %s=%q: %v", name, env[name], err)
		}
		return v
	}
	attempts, err := strconv.Atoi(env["SENDER_MAX_ATTEMPTS"])
	if err != nil {
		t.Fatalf("SENDER_MAX_ATTEMPTS: %v", err)
	}
	calls := dur("SENDER_WHATSAPP_TIMEOUT")*time.Duration(attempts) + dur("SENDER_MAX_BACKOFF")*time.Duration(attempts-1)
	longest := dur("SENDER_CLAIM_TIMEOUT") + min(calls, dur("SENDER_CLAIM_LEASE")) + dur("SENDER_PUBLISH_TIMEOUT")
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= longest {
		t.Errorf("sender terminationGracePeriodSeconds %v does not exceed the longest in-flight send %v", grace, longest)
	}
}

// The sender reaches the recorder through a headless Service (every ready
// pod's address, for its round robin) on the recorder's gRPC port, and
// pings no more often than the recorder permits.
func checkSenderBalancesOverRecorders(t *testing.T, m *Manifests) {
	t.Helper()
	env := func(d *appsv1.Deployment) map[string]string {
		out := map[string]string{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			out[e.Name] = e.Value
		}
		return out
	}
	sender, recorder := env(m.deployment(release+"-sender")), env(m.deployment(release+"-recorder"))
	addr := sender["SENDER_RECORDER_ADDR"]
	host, port, ok := strings.Cut(strings.TrimPrefix(addr, "dns:///"), ":")
	name, inNamespace := strings.CutSuffix(host, "."+namespace+".svc.cluster.local")
	if !strings.HasPrefix(addr, "dns:///") || !ok || !inNamespace {
		t.Fatalf("SENDER_RECORDER_ADDR %q is not dns:///SERVICE.%s.svc.cluster.local:PORT", addr, namespace)
	}
	svc := m.service(name)
	if svc == nil {
		t.Fatalf("SENDER_RECORDER_ADDR names Service %s, which is not rendered", name)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s is not headless (clusterIP %q): the sender would see one address", name, svc.Spec.ClusterIP)
	}
	d := m.deployment(release + "-recorder")
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service %s does not select the recorder's pods", name)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
		return strconv.Itoa(int(p.Port)) == port && p.TargetPort.String() == "grpc"
	}) {
		t.Errorf("Service %s has no port %s to the recorder's grpc port", name, port)
	}
	if ping, allowed := seconds(t, sender["SENDER_RECORDER_KEEPALIVE_TIME"]), seconds(t, recorder["RECORDER_KEEPALIVE_MIN_TIME"]); ping < allowed {
		t.Errorf("sender pings every %ds, the recorder permits every %ds at most", ping, allowed)
	}
}

// The Config Connector rendering declares every topic and subscription of
// topology.yaml as topology.yaml says, and every grant names a resource
// that exists.
func TestConfigConnectorRendersTopology(t *testing.T) {
	top := readTopology(t)
	m := render(t, []string{filepath.Join(chartDir, "ci", "production-values.yaml")})
	if len(m.Topics) != len(top.Topics) || len(m.Subscriptions) != len(top.Subscriptions) {
		t.Errorf("rendered %d topics and %d subscriptions; topology.yaml has %d and %d",
			len(m.Topics), len(m.Subscriptions), len(top.Topics), len(top.Subscriptions))
	}
	for _, want := range top.Topics {
		if !slices.ContainsFunc(m.Topics, func(tp *PubSubTopic) bool { return tp.Name == want.Name && tp.Spec.ResourceID == want.Name }) {
			t.Errorf("topic %s not rendered", want.Name)
		}
	}
	for _, want := range top.Subscriptions {
		i := slices.IndexFunc(m.Subscriptions, func(s *PubSubSubscription) bool { return s.Name == want.Name })
		if i < 0 {
			t.Errorf("subscription %s not rendered", want.Name)
			continue
		}
		got := m.Subscriptions[i].Spec
		if got.TopicRef.Name != want.Topic {
			t.Errorf("%s: topicRef %q, want %q", want.Name, got.TopicRef.Name, want.Topic)
		}
		if ack := seconds(t, want.AckDeadline); got.AckDeadlineSeconds != ack {
			t.Errorf("%s: ackDeadlineSeconds %d, want %d", want.Name, got.AckDeadlineSeconds, ack)
		}
		if got.EnableMessageOrdering != want.EnableMessageOrdering {
			t.Errorf("%s: enableMessageOrdering %v, want %v", want.Name, got.EnableMessageOrdering, want.EnableMessageOrdering)
		}
		if got.ExpirationPolicy == nil || got.ExpirationPolicy.TTL != "" {
			t.Errorf("%s: subscription may expire", want.Name)
		}
		if got.MessageRetentionDuration != want.MessageRetention {
			t.Errorf("%s: messageRetentionDuration %q, want %q", want.Name, got.MessageRetentionDuration, want.MessageRetention)
		}
		// The runbook gives operators the holds' retention to act in; it
		// must not be left to a default.
		if strings.HasSuffix(want.Name, "-dead-letter-hold") && want.MessageRetention == "" {
			t.Errorf("%s: a dead-letter hold without messageRetention", want.Name)
		}
		switch w := want.RetryPolicy; {
		case (w == nil) != (got.RetryPolicy == nil):
			t.Errorf("%s: retry policy %v, want %v", want.Name, got.RetryPolicy, w)
		case w != nil && (seconds(t, got.RetryPolicy.MinimumBackoff) != seconds(t, w.MinimumBackoff) || seconds(t, got.RetryPolicy.MaximumBackoff) != seconds(t, w.MaximumBackoff)):
			t.Errorf("%s: retry policy %+v, want %+v", want.Name, *got.RetryPolicy, *w)
		}
		switch w := want.DeadLetterPolicy; {
		case (w == nil) != (got.DeadLetterPolicy == nil):
			t.Errorf("%s: dead-letter policy %v, want %v", want.Name, got.DeadLetterPolicy, w)
		case w != nil && (got.DeadLetterPolicy.DeadLetterTopicRef.Name != w.DeadLetterTopic || got.DeadLetterPolicy.MaxDeliveryAttempts != w.MaxDeliveryAttempts):
			t.Errorf("%s: dead-letter policy %+v, want %+v", want.Name, *got.DeadLetterPolicy, *w)
		}
	}
	checkGrants(t, m)
	checkEventarc(t, m)
	checkBacklogScaling(t, m, top)
}

// The sender's backlog metric watches a declared subscription.
func checkBacklogScaling(t *testing.T, m *Manifests, top *topology) {
	t.Helper()
	n := 0
	for _, h := range m.HPAs {
		for _, metric := range h.Spec.Metrics {
			if metric.External == nil {
				continue
			}
			n++
			sub := metric.External.Metric.Selector.MatchLabels["resource.labels.subscription_id"]
			if !slices.ContainsFunc(top.Subscriptions, func(s topologySubscription) bool {
				return s.Name == sub
			}) {
				t.Errorf("HPA %s scales on subscription %q, which topology.yaml does not declare", h.Name, sub)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d backlog metrics in the production rendering, want 1 (the sender's)", n)
	}
}

// seconds reads a whole-seconds duration ("60s"), the form Pub/Sub takes.
func seconds(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSuffix(s, "s"))
	if err != nil || !strings.HasSuffix(s, "s") {
		t.Fatalf("duration %q is not whole seconds", s)
	}
	return n
}

func checkGrants(t *testing.T, m *Manifests) {
	t.Helper()
	exists := map[string]func(string) bool{
		"PubSubTopic": func(n string) bool {
			return slices.ContainsFunc(m.Topics, func(x *PubSubTopic) bool { return x.Name == n })
		},
		"PubSubSubscription": func(n string) bool {
			return slices.ContainsFunc(m.Subscriptions, func(x *PubSubSubscription) bool { return x.Name == n })
		},
		"IAMServiceAccount": func(n string) bool {
			return slices.ContainsFunc(m.IAMAccounts, func(x *IAMServiceAccount) bool { return x.Name == n })
		},
		"StorageBucket": func(n string) bool {
			return slices.ContainsFunc(m.StorageBuckets, func(x *StorageBucket) bool { return x.Name == n })
		},
	}
	type grant struct{ member, role, target string }
	var grants []grant
	for _, p := range m.IAMMembers {
		ref := p.Spec.ResourceRef
		switch {
		case ref.Name != "" && ref.External != "":
			t.Errorf("%s: resourceRef has both name and external", p.Name)
		case ref.Name != "":
			if ok := exists[ref.Kind]; ok == nil || !ok(ref.Name) {
				t.Errorf("%s: resourceRef %s/%s is not rendered", p.Name, ref.Kind, ref.Name)
			}
		case ref.External == "":
			t.Errorf("%s: resourceRef names nothing", p.Name)
		}
		if strings.Contains(p.Spec.Role, "admin") || strings.Contains(p.Spec.Role, "owner") || strings.Contains(p.Spec.Role, "editor") {
			t.Errorf("%s: broad role %s", p.Name, p.Spec.Role)
		}
		target := ref.Kind + "/" + ref.Name + ref.External
		grants = append(grants, grant{p.Spec.Member, p.Spec.Role, target})
	}
	has := func(component, role, target string) {
		t.Helper()
		member := fmt.Sprintf("serviceAccount:%s-%s@", release, component)
		if !slices.ContainsFunc(grants, func(g grant) bool {
			return strings.HasPrefix(g.member, member) && g.role == role && g.target == target
		}) {
			t.Errorf("%s lacks %s on %s", component, role, target)
		}
	}
	project := "Project/projects/visn-wadispatch-prod"
	has("ingest", "roles/pubsub.publisher", "PubSubTopic/whatsapp-messages")
	has("ingest", "roles/pubsub.publisher", "PubSubTopic/whatsapp-message-results") // refusals
	has("ingest", "roles/datastore.viewer", project)
	has("sender", "roles/pubsub.subscriber", "PubSubSubscription/whatsapp-messages-sender")
	has("sender", "roles/pubsub.publisher", "PubSubTopic/whatsapp-message-results")
	has("sender", "roles/pubsub.publisher", "PubSubTopic/whatsapp-messages-dead-letter")
	has("sender", "roles/secretmanager.secretAccessor", "SecretManagerSecret/projects/visn-wadispatch-prod/secrets/whatsapp-token-visn-main")
	has("recorder", "roles/datastore.user", project)
	has("recorder", "roles/pubsub.subscriber", "PubSubSubscription/whatsapp-message-results-recorder")
	has("recorder", "roles/pubsub.subscriber", "PubSubSubscription/whatsapp-status-events-recorder")
	has("recorder", "roles/pubsub.publisher", "PubSubTopic/whatsapp-messages")
	has("recorder", "roles/pubsub.publisher", "PubSubTopic/whatsapp-media")
	has("sender", "roles/pubsub.subscriber", "PubSubSubscription/whatsapp-media-sender")
	has("sender", "roles/pubsub.publisher", "PubSubTopic/whatsapp-status-events") // MediaStored
	const bucket = "StorageBucket/visn-wadispatch-prod-driver-media"
	has("sender", "roles/storage.objectCreator", bucket)
	has("sender", "roles/storage.objectViewer", bucket)
	// The outbound media bucket the production values name (media.outboundBuckets).
	const outbound = "StorageBucket/visn-platform-prod-outbound-media"
	has("sender", "roles/storage.objectViewer", outbound)
	for _, c := range services {
		ksa := fmt.Sprintf("serviceAccount:visn-wadispatch-prod.svc.id.goog[%s/%s-%s]", namespace, release, c)
		if !slices.Contains(grants, grant{ksa, "roles/iam.workloadIdentityUser", "IAMServiceAccount/" + release + "-" + c}) {
			t.Errorf("%s: no Workload Identity binding for %s", c, ksa)
		}
	}
	// Firestore roles are on the project, so each is conditioned on the
	// databases the service uses: ingest reads the messages database only.
	for _, p := range m.IAMMembers {
		if !strings.HasPrefix(p.Spec.Role, "roles/datastore.") {
			continue
		}
		want := `resource.name == "projects/visn-wadispatch-prod/databases/(default)"`
		if strings.Contains(p.Spec.Member, "-recorder@") {
			want += ` || resource.name == "projects/visn-wadispatch-prod/databases/ancillary"`
		}
		if p.Spec.Condition == nil || p.Spec.Condition.Expression != want {
			t.Errorf("%s: %s on the whole project without the condition %s", p.Name, p.Spec.Role, want)
		}
	}
	// Least privilege: no service may write Firestore but the recorder, and
	// only the sender reads secrets.
	for _, g := range grants {
		if g.role == "roles/datastore.user" && !strings.HasPrefix(g.member, "serviceAccount:"+release+"-recorder@") {
			t.Errorf("%s may write Firestore", g.member)
		}
		if g.role == "roles/secretmanager.secretAccessor" && !strings.HasPrefix(g.member, "serviceAccount:"+release+"-sender@") {
			t.Errorf("%s may read secrets", g.member)
		}
		// Only the sender touches media: drivers' media in its bucket, and
		// the platform's outbound media, which it only reads.
		sender := strings.HasPrefix(g.member, "serviceAccount:"+release+"-sender@")
		if strings.HasPrefix(g.role, "roles/storage.") && (!sender || (g.target != bucket && !(g.target == outbound && g.role == "roles/storage.objectViewer"))) {
			t.Errorf("%s has %s on %s", g.member, g.role, g.target)
		}
	}
}

func checkEventarc(t *testing.T, m *Manifests) {
	t.Helper()
	if len(m.EventarcTriggers) != 1 {
		t.Fatalf("%d Eventarc triggers rendered, want 1", len(m.EventarcTriggers))
	}
	tr := m.EventarcTriggers[0].Spec
	criteria := map[string]string{}
	for _, c := range tr.MatchingCriteria {
		criteria[c.Attribute] = c.Operator + " " + c.Value
	}
	if criteria["type"] != " google.cloud.firestore.document.v1.created" {
		t.Errorf("trigger type: %q", criteria["type"])
	}
	if want := "match-path-pattern leasecompany/{leaseId}/enquiries/{enquiryId}/whatsapp/messages/chatMessages/{messageId}"; criteria["document"] != want {
		t.Errorf("trigger document: %q, want %q", criteria["document"], want)
	}
	if criteria["database"] != " (default)" {
		t.Errorf("trigger database: %q", criteria["database"])
	}
	gke := tr.Destination.GKE
	if gke == nil {
		t.Fatal("trigger has no GKE destination")
	}
	svc := m.service(gke.Service)
	if svc == nil || gke.Namespace != namespace {
		t.Fatalf("trigger destination %s/%s is not the rendered ingest Service", gke.Namespace, gke.Service)
	}
	// Eventarc posts to port 80 of the Service.
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 80 }) {
		t.Errorf("ingest Service has no port 80")
	}
	if tr.ServiceAccountRef == nil || !slices.ContainsFunc(m.IAMAccounts, func(a *IAMServiceAccount) bool { return a.Name == tr.ServiceAccountRef.Name }) {
		t.Errorf("trigger service account is not rendered")
	}
	if tr.EventDataContentType != "application/protobuf" {
		t.Errorf("trigger content type %q: ingest expects protobuf DocumentEventData", tr.EventDataContentType)
	}
}

// The Config Connector rendering declares every index of
// firestore.indexes.json (the file the local emulator enforces) in the
// messages database the values name.
func TestConfigConnectorRendersFirestoreIndexes(t *testing.T) {
	want := readFirestoreIndexes(t)
	if m := render(t, nil); len(m.FirestoreIndexes) != 0 {
		t.Errorf("%d FirestoreIndexes rendered without Config Connector", len(m.FirestoreIndexes))
	}
	m := render(t, []string{filepath.Join(chartDir, "ci", "production-values.yaml")}, "firestore.database=web-app")
	if len(m.FirestoreIndexes) != len(want) {
		t.Fatalf("rendered %d FirestoreIndexes, firestore.indexes.json has %d", len(m.FirestoreIndexes), len(want))
	}
	for i, w := range want {
		got := m.FirestoreIndexes[i].Spec
		if got.Database != "web-app" || got.Collection != w.CollectionGroup || got.QueryScope != w.QueryScope || !slices.Equal(got.Fields, w.Fields) {
			t.Errorf("index %d rendered as %+v, want database web-app and %+v", i, got, w)
		}
	}
}

// The media bucket is private by construction (IAM only, public access
// prevention enforced), keeps what the values say, and the sender is told
// where it is and where its fetches come from.
func TestMediaBucketIsPrivateAndTheSenderUsesIt(t *testing.T) {
	m := render(t, []string{filepath.Join(chartDir, "ci", "production-values.yaml")})
	if len(m.StorageBuckets) != 1 {
		t.Fatalf("%d StorageBuckets rendered, want the media bucket", len(m.StorageBuckets))
	}
	b := m.StorageBuckets[0]
	if b.Name != "visn-wadispatch-prod-driver-media" || b.Spec.ResourceID != b.Name || !b.Spec.UniformBucketLevelAccess || b.Spec.PublicAccessPrevention != "enforced" || b.Spec.Location != "EU" {
		t.Errorf("bucket %+v", b.Spec)
	}
	if r := b.Spec.RetentionPolicy; r == nil || r.RetentionPeriod != 30*86400 || r.IsLocked {
		t.Errorf("retention policy %+v, want 30 days, unlocked", r)
	}
	if l := b.Spec.LifecycleRule; len(l) != 1 || l[0].Action.Type != "Delete" || l[0].Condition.Age != 400 {
		t.Errorf("lifecycle %+v, want deletion at 400 days", l)
	}
	env := map[string]string{}
	for _, d := range m.Deployments {
		if strings.HasSuffix(d.Name, "-sender") {
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				env[e.Name] = e.Value
			}
		}
	}
	if env["SENDER_MEDIA_BUCKET"] != b.Name || env["SENDER_MEDIA_SUBSCRIPTION"] != "whatsapp-media-sender" || env["SENDER_MEDIA_STORED_TOPIC"] != "whatsapp-status-events" {
		t.Errorf("sender's media env %v", env)
	}
	if dev := render(t, nil); len(dev.StorageBuckets) != 0 {
		t.Errorf("a bucket rendered without Config Connector and media.bucket")
	}
}

// Every topic or subscription a service is configured with is declared in
// topology.yaml.
func TestServiceEnvNamesDeclaredTopics(t *testing.T) {
	top := readTopology(t)
	declared := map[string]bool{}
	for _, tp := range top.Topics {
		declared[tp.Name] = true
	}
	for _, s := range top.Subscriptions {
		declared[s.Name] = true
	}
	m := render(t, nil)
	n := 0
	for _, d := range m.Deployments {
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if strings.HasSuffix(e.Name, "_TOPIC") || strings.HasSuffix(e.Name, "_SUBSCRIPTION") {
				n++
				if !declared[e.Value] {
					t.Errorf("%s %s=%q is not declared in topology.yaml", d.Name, e.Name, e.Value)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no service is configured with a topic or subscription")
	}
}

// The chart refuses values that break its documented arithmetic, name a
// topic the topology does not declare, or are not in its schema.
// Meta reaches ingest through the Gateway only for the webhook: GET and
// POST of /whatsapp/webhook, to the port ingest serves it on; the
// CloudEvents endpoint, which makes wadispatch send messages, is not routed.
func TestWebhookRouteExposesOnlyTheWebhook(t *testing.T) {
	if m := render(t, nil); len(m.HTTPRoutes)+len(m.HealthCheckPolicies) != 0 {
		t.Errorf("default values render %d HTTPRoutes and %d HealthCheckPolicies, want none", len(m.HTTPRoutes), len(m.HealthCheckPolicies))
	}
	m := render(t, []string{filepath.Join(chartDir, "ci", "production-values.yaml")})
	if len(m.HTTPRoutes) != 1 || len(m.HealthCheckPolicies) != 1 {
		t.Fatalf("%d HTTPRoutes and %d HealthCheckPolicies, want one each", len(m.HTTPRoutes), len(m.HealthCheckPolicies))
	}
	route := m.HTTPRoutes[0].Spec
	if len(route.ParentRefs) != 1 || route.ParentRefs[0].Name != "external-https" || route.ParentRefs[0].Namespace == nil ||
		*route.ParentRefs[0].Namespace != "gateway-infra" || route.ParentRefs[0].SectionName == nil || *route.ParentRefs[0].SectionName != "https" {
		t.Errorf("parentRefs %+v, want the values' gateway", route.ParentRefs)
	}
	if len(route.Hostnames) != 1 || route.Hostnames[0] != "whatsapp-hooks.visn.example" {
		t.Errorf("hostnames %v", route.Hostnames)
	}
	if len(route.Rules) != 1 || len(route.Rules[0].BackendRefs) != 1 {
		t.Fatalf("rules %+v, want one rule with one backend", route.Rules)
	}
	var methods []string
	for _, match := range route.Rules[0].Matches {
		if match.Path == nil || match.Path.Type == nil || *match.Path.Type != gatewayv1.PathMatchExact ||
			match.Path.Value == nil || *match.Path.Value != "/whatsapp/webhook" || match.Method == nil ||
			len(match.Headers) != 0 || len(match.QueryParams) != 0 {
			t.Errorf("match %+v: want exactly the path /whatsapp/webhook and a method", match)
			continue
		}
		methods = append(methods, string(*match.Method))
	}
	if slices.Sort(methods); !slices.Equal(methods, []string{"GET", "POST"}) {
		t.Errorf("methods %v, want GET (handshake) and POST (notifications)", methods)
	}

	ingest := byName(t, m.Deployments, release+"-ingest")
	svc := byName(t, m.Services, release+"-ingest")
	backend := route.Rules[0].BackendRefs[0]
	if string(backend.Name) != svc.Name || backend.Port == nil {
		t.Fatalf("backend %+v, want Service %s", backend, svc.Name)
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == int32(*backend.Port) })
	if i < 0 {
		t.Fatalf("Service %s has no port %d", svc.Name, *backend.Port)
	}
	container := ingest.Spec.Template.Spec.Containers[0]
	target := svc.Spec.Ports[i].TargetPort.String()
	if !slices.ContainsFunc(container.Ports, func(p corev1.ContainerPort) bool { return p.Name == target }) {
		t.Errorf("Service port %d targets %q, not a port of the ingest container", *backend.Port, target)
	}

	// The webhook is served apart from the probes: the gateway checks
	// readiness where the kubelet does, on the container's probes port.
	probePort := slices.IndexFunc(container.Ports, func(p corev1.ContainerPort) bool {
		return p.Name == container.ReadinessProbe.HTTPGet.Port.String()
	})
	if probePort < 0 || target == container.ReadinessProbe.HTTPGet.Port.String() {
		t.Fatalf("readiness port %s: not a container port, or the webhook's own", container.ReadinessProbe.HTTPGet.Port.String())
	}
	hc := m.HealthCheckPolicies[0].Spec
	if hc.TargetRef.Kind != "Service" || hc.TargetRef.Name != svc.Name || hc.Default.Config.Type != "HTTP" ||
		hc.Default.Config.HTTPHealthCheck.PortSpecification != "USE_FIXED_PORT" ||
		hc.Default.Config.HTTPHealthCheck.Port != int(container.Ports[probePort].ContainerPort) ||
		hc.Default.Config.HTTPHealthCheck.RequestPath != container.ReadinessProbe.HTTPGet.Path {
		t.Errorf("health check %+v, want the ingest pods checked on port %d, path %s", hc, container.Ports[probePort].ContainerPort, container.ReadinessProbe.HTTPGet.Path)
	}
}

func TestChartRefusesUnsafeValues(t *testing.T) {
	const digest = "@sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct {
		set  string
		want string
	}{
		{"sender.terminationGracePeriodSeconds=60", "longest in-flight send"},
		{"sender.ratePerNumber=20", "exceeds whatsapp.throughputPerNumber"},
		{"pubsub.tasksTopic=whatsapp-mesages", "not declared in topology.yaml"},
		{"pubsub.resultsSubscription=nope", "not declared in topology.yaml"},
		{"ingest.terminationGracePeriodSeconds=30", "must exceed preStopSleepSeconds + shutdownGraceSeconds"},
		{"configConnector.enabled=true,ingest.image.tag=1" + digest + ",sender.image.tag=1" + digest + ",recorder.image.tag=1" + digest + ",tests.image.tag=1" + digest, "projectNumber is required"},
		// values.schema.json: a misspelt or unknown value is an error, not
		// a setting silently ignored.
		{"sender.tokens.secretID=x", "additional properties 'secretID' not allowed"},
		{"recorder.expiredClaimPolicy=maybe", "value must be one of"},
		{"sender.recorderKeepaliveSeconds=5", "minimum: got 5, want 10"},
		{"recorder.keepaliveMinTimeSeconds=30", "too_many_pings"},
		// A route the NetworkPolicy would block, or to a webhook without
		// its secret.
		{"ingest.webhook.route.gateway.name=gw", "needs networkPolicy.ingest.gatewayCIDRs"},
		{"ingest.webhook.route.gateway.name=gw,networkPolicy.ingest.gatewayCIDRs={35.191.0.0/16}", "needs ingest.webhook.secretName"},
		// A bucket name GCS refuses, or objects kept past their deletion.
		{"media.bucket=Driver_Media", "does not match pattern"},
		{"media.bucket=driver-media,media.retentionDays=30,media.deleteAfterDays=7", "must not be shorter than media.retentionDays"},
	} {
		_, err := runHelm(t, templateArgs(nil, tc.set)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: error %v, want one containing %q", tc.set, err, tc.want)
		}
	}
}

// Outside dev (Config Connector manages the project's resources), a
// service's image is pinned by digest: a tag alone could change under the
// deployment.
func TestProductionImagesArePinnedByDigest(t *testing.T) {
	prod := []string{filepath.Join(chartDir, "ci", "production-values.yaml")}
	for _, svc := range append(slices.Clone(services), "tests") {
		_, err := runHelm(t, templateArgs(prod, svc+".image.tag=0.1.0")...)
		if err == nil || !strings.Contains(err.Error(), "@sha256") {
			t.Errorf("%s.image.tag=0.1.0 with configConnector.enabled: error %v, want the digest pattern refused", svc, err)
		}
	}
	if _, err := runHelm(t, templateArgs(nil, "sender.image.tag=dev")...); err != nil {
		t.Errorf("a dev install with a plain tag: %v", err)
	}
}

// byName is the rendered object of that name.
func byName[T interface{ GetName() string }](t *testing.T, objects []T, name string) T {
	t.Helper()
	i := slices.IndexFunc(objects, func(o T) bool { return o.GetName() == name })
	if i < 0 {
		t.Fatalf("no %T named %s rendered", *new(T), name)
	}
	return objects[i]
}

// Chart.yaml's kubeVersion admits GKE's versions from 1.30 (the preStop sleep
// action and gRPC probes) and refuses older clusters.
func TestChartKubeVersion(t *testing.T) {
	for version, ok := range map[string]bool{
		"1.29.9-gke.1000000": false,
		"1.30.0":             true,
		"1.30.5-gke.1014001": true,
		"1.33.2-gke.1111000": true,
	} {
		args := templateArgs(nil)
		args[len(args)-1] = version // templateArgs ends with --kube-version VERSION
		_, err := runHelm(t, args...)
		if (err == nil) != ok {
			t.Errorf("Kubernetes %s: error %v, want accepted=%v", version, err, ok)
		}
	}
}

// An image tag left empty is the chart's appVersion.
func TestImageTagDefaultsToAppVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q, %v", chart.AppVersion, err)
	}
	m := render(t, nil, "ingest.image.tag=", "sender.image.tag=", "recorder.image.tag=")
	for _, svc := range services {
		d := m.deployment(release + "-" + svc)
		if d == nil {
			t.Fatalf("no Deployment for %s", svc)
		}
		if got, want := d.Spec.Template.Spec.Containers[0].Image, "wadispatch-"+svc+":"+chart.AppVersion; got != want {
			t.Errorf("%s: image %s, want %s", svc, got, want)
		}
	}
	m = render(t, nil, "sender.image.tag=1.2.3")
	if got := m.deployment(release + "-sender").Spec.Template.Spec.Containers[0].Image; got != "wadispatch-sender:1.2.3" {
		t.Errorf("sender.image.tag=1.2.3: image %s", got)
	}
}

// skaffold sets a tag TAG@DIGEST, where TAG (its inputDigest) changes with
// any Go file of the tree: the image is referenced by the digest alone, so
// a service whose image is unchanged keeps its pod spec and is not rolled.
// A local build has no digest ("TAG@"): the tag is used.
func TestImageReferencedByDigestAlone(t *testing.T) {
	digest := "sha256:" + strings.Repeat("b", 64)
	for tag, want := range map[string]string{
		"3f2a9c@" + digest: "wadispatch-sender@" + digest,
		"41d0e7@" + digest: "wadispatch-sender@" + digest,
		digest:             "wadispatch-sender@" + digest,
		"3f2a9c@":          "wadispatch-sender:3f2a9c",
	} {
		m := render(t, nil, "sender.image.tag="+tag)
		if got := m.deployment(release + "-sender").Spec.Template.Spec.Containers[0].Image; got != want {
			t.Errorf("sender.image.tag=%s: image %s, want %s", tag, got, want)
		}
	}
}
