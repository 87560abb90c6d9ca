package chartcheck

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The chart's `helm test` is one Pod, a test hook, running `wadispatchctl
// health` against the Services of the recorder's gRPC port and ingest's
// probes port, locked down like every workload and admitted to both ports
// by the NetworkPolicies, in every rendering.
func TestHelmTestChecksRecorderAndIngestHealth(t *testing.T) {
	for _, files := range append([][]string{nil}, ciValuesSets(t)...) {
		t.Run(fmt.Sprint("values=", files), func(t *testing.T) {
			m := render(t, files)
			if len(m.Pods) != 1 {
				t.Fatalf("%d Pods rendered, want the one helm test", len(m.Pods))
			}
			pod := m.Pods[0]
			if pod.Annotations["helm.sh/hook"] != "test" {
				t.Errorf("%s: annotation helm.sh/hook %q, want test", pod.Name, pod.Annotations["helm.sh/hook"])
			}
			if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("%s: restartPolicy %q: a failed check must fail the test, not be retried", pod.Name, pod.Spec.RestartPolicy)
			}
			if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
				t.Errorf("%s: mounts a service account token it has no use for", pod.Name)
			}
			checkPodLockedDown(t, pod.Name, pod.Spec)
			if len(pod.Spec.Containers) != 1 {
				t.Fatalf("%s: %d containers", pod.Name, len(pod.Spec.Containers))
			}
			c := pod.Spec.Containers[0]
			if len(c.Command) > 0 || len(c.Args) == 0 || c.Args[0] != "health" {
				t.Fatalf("%s: command %q args %q, want the image's wadispatchctl with health", pod.Name, c.Command, c.Args)
			}
			flags := map[string]string{}
			for _, a := range c.Args[1:] {
				k, v, _ := strings.Cut(a, "=")
				flags[k] = v
			}

			// --addr is the recorder Service's gRPC port.
			host, port, _ := strings.Cut(flags["--addr"], ":")
			svc := m.service(host)
			if svc == nil {
				t.Fatalf("--addr %q: no such Service", flags["--addr"])
			}
			sp := servicePort(t, svc, port)
			if sp == nil || sp.Name != "grpc" || svc.Name != release+"-recorder" {
				t.Errorf("--addr %q is not the recorder Service's grpc port", flags["--addr"])
			}
			// --ingest is the ingest Service's port to the container port
			// whose readiness probe is /readyz.
			hostPort, ok := strings.CutPrefix(flags["--ingest"], "http://")
			host, port, _ = strings.Cut(hostPort, ":")
			svc = m.service(host)
			if !ok || svc == nil || svc.Name != release+"-ingest" {
				t.Fatalf("--ingest %q is not http:// to the ingest Service", flags["--ingest"])
			}
			sp = servicePort(t, svc, port)
			d := m.deployment(release + "-ingest")
			probe := d.Spec.Template.Spec.Containers[0].ReadinessProbe
			if sp == nil || probe.HTTPGet == nil || sp.TargetPort.String() != probe.HTTPGet.Port.String() || probe.HTTPGet.Path != "/readyz" {
				t.Errorf("--ingest %q does not reach the port of ingest's /readyz probe", flags["--ingest"])
			}

			// The NetworkPolicies admit the pod to both ports.
			for component, portName := range map[string]string{"recorder": "grpc", "ingest": "http"} {
				i := slices.IndexFunc(m.NetworkPolicies, func(np *networkingv1.NetworkPolicy) bool { return np.Name == release+"-"+component })
				if i < 0 {
					t.Errorf("no NetworkPolicy %s-%s", release, component)
					continue
				}
				if !admits(m.NetworkPolicies[i], pod.Labels, portName) {
					t.Errorf("NetworkPolicy %s does not admit the test pod to port %s", m.NetworkPolicies[i].Name, portName)
				}
			}
		})
	}
}

// The test's image is tests.image, its tag the chart's appVersion unless set.
func TestHelmTestImage(t *testing.T) {
	m := render(t, nil)
	if got := m.Pods[0].Spec.Containers[0].Image; !strings.HasPrefix(got, "wadispatchctl:") || strings.HasSuffix(got, ":") {
		t.Errorf("default test image %q, want wadispatchctl:APPVERSION", got)
	}
	m = render(t, nil, "tests.image.repository=r/ctl", "tests.image.tag=9@sha256:"+strings.Repeat("a", 64))
	if got, want := m.Pods[0].Spec.Containers[0].Image, "r/ctl@sha256:"+strings.Repeat("a", 64); got != want {
		t.Errorf("test image %q, want %q", got, want)
	}
}

func servicePort(t *testing.T, svc *corev1.Service, port string) *corev1.ServicePort {
	t.Helper()
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Errorf("port %q: %v", port, err)
		return nil
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == n })
	if i < 0 {
		return nil
	}
	return &svc.Spec.Ports[i]
}

// admits reports whether a rule of np lets a pod with podLabels, in the
// policy's own namespace, reach the named port.
func admits(np *networkingv1.NetworkPolicy, podLabels map[string]string, port string) bool {
	for _, rule := range np.Spec.Ingress {
		if !slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == port }) {
			continue
		}
		for _, peer := range rule.From {
			if peer.PodSelector != nil && peer.NamespaceSelector == nil &&
				labels.SelectorFromSet(peer.PodSelector.MatchLabels).Matches(labels.Set(podLabels)) {
				return true
			}
		}
	}
	return false
}
