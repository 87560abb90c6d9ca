package chartcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../wadispatch"
	repoRoot  = "../.."
	release   = "wadispatch"
	namespace = "wadispatch"
	// kubeVersion is a GKE version within Chart.yaml's kubeVersion (helm
	// renders offline as Kubernetes 1.20 otherwise, which the chart refuses).
	kubeVersion = "1.30.5-gke.1014001"
)

// helm is the pinned helm the Makefile installs ($HELM overrides).
func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, err := filepath.Abs(filepath.Join(repoRoot, ".tools/bin/helm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("helm not installed at %s: run `make chart-check` (it installs the pinned helm)", h)
	}
	return h
}

// runHelm runs helm with args and returns stdout; stderr goes in the error.
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// templateArgs is `helm template` of the chart with values files and --set pairs.
func templateArgs(valuesFiles []string, sets ...string) []string {
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return args
}

// Manifests is one rendering, decoded.
type Manifests struct {
	Deployments     []*appsv1.Deployment
	Services        []*corev1.Service
	ServiceAccounts []*corev1.ServiceAccount
	Secrets         []*corev1.Secret
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	PDBs            []*policyv1.PodDisruptionBudget
	NetworkPolicies []*networkingv1.NetworkPolicy
	ConfigMaps      []*corev1.ConfigMap
	// Pods: the chart's `helm test` hooks.
	Pods []*corev1.Pod

	Topics           []*PubSubTopic
	Subscriptions    []*PubSubSubscription
	IAMAccounts      []*IAMServiceAccount
	IAMMembers       []*IAMPolicyMember
	EventarcTriggers []*EventarcTrigger
	FirestoreIndexes []*FirestoreIndex
	StorageBuckets   []*StorageBucket

	HTTPRoutes          []*gatewayv1.HTTPRoute
	HealthCheckPolicies []*HealthCheckPolicy

	PodMonitorings []*PodMonitoring
	Rules          []*GMPRules
	GlobalRules    []*GMPRules
}

// render runs helm template, validates every document against its kind's
// schema and decodes it.
func render(t *testing.T, valuesFiles []string, sets ...string) *Manifests {
	t.Helper()
	out, err := runHelm(t, templateArgs(valuesFiles, sets...)...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// decodeAll validates a multi-document stream against the vendored schemas
// (validateManifests), then decodes it for the checks to read. Kinds this
// chart is not meant to render and duplicate objects are errors.
func decodeAll(stream []byte) (*Manifests, error) {
	if err := validateManifests(stream); err != nil {
		return nil, err
	}
	m := &Manifests{}
	seen := map[string]bool{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split manifests: %w", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("manifest type: %w\n%s", err, doc)
		}
		tm := head.TypeMeta
		// Two objects of one kind and name: the second would replace the
		// first on apply (or fail the install).
		id := tm.Kind + "/" + head.Metadata.Name
		if seen[id] || head.Metadata.Name == "" {
			return nil, fmt.Errorf("%s: duplicate or unnamed object", id)
		}
		seen[id] = true
		if err := m.add(tm, doc); err != nil {
			return nil, fmt.Errorf("%s %s: %w\n%s", tm.APIVersion, tm.Kind, err, doc)
		}
	}
}

func (m *Manifests) add(tm metav1.TypeMeta, doc []byte) error {
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		return decodeInto(doc, &m.Deployments)
	case "v1 Service":
		return decodeInto(doc, &m.Services)
	case "v1 ServiceAccount":
		return decodeInto(doc, &m.ServiceAccounts)
	case "v1 Secret":
		return decodeInto(doc, &m.Secrets)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return decodeInto(doc, &m.HPAs)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(doc, &m.PDBs)
	case "networking.k8s.io/v1 NetworkPolicy":
		return decodeInto(doc, &m.NetworkPolicies)
	case "v1 ConfigMap":
		return decodeInto(doc, &m.ConfigMaps)
	case "v1 Pod":
		return decodeInto(doc, &m.Pods)
	case "pubsub.cnrm.cloud.google.com/v1beta1 PubSubTopic":
		return decodeInto(doc, &m.Topics)
	case "pubsub.cnrm.cloud.google.com/v1beta1 PubSubSubscription":
		return decodeInto(doc, &m.Subscriptions)
	case "iam.cnrm.cloud.google.com/v1beta1 IAMServiceAccount":
		return decodeInto(doc, &m.IAMAccounts)
	case "iam.cnrm.cloud.google.com/v1beta1 IAMPolicyMember":
		return decodeInto(doc, &m.IAMMembers)
	case "eventarc.cnrm.cloud.google.com/v1beta1 EventarcTrigger":
		return decodeInto(doc, &m.EventarcTriggers)
	case "firestore.cnrm.cloud.google.com/v1beta1 FirestoreIndex":
		return decodeInto(doc, &m.FirestoreIndexes)
	case "storage.cnrm.cloud.google.com/v1beta1 StorageBucket":
		return decodeStrictInto(doc, &m.StorageBuckets)
	case "gateway.networking.k8s.io/v1 HTTPRoute":
		return decodeInto(doc, &m.HTTPRoutes)
	case "networking.gke.io/v1 HealthCheckPolicy":
		return decodeStrictInto(doc, &m.HealthCheckPolicies)
	case "monitoring.googleapis.com/v1 PodMonitoring":
		return decodeInto(doc, &m.PodMonitorings)
	case "monitoring.googleapis.com/v1 Rules":
		return decodeInto(doc, &m.Rules)
	case "monitoring.googleapis.com/v1 GlobalRules":
		return decodeInto(doc, &m.GlobalRules)
	}
	return errors.New("kind not expected from this chart")
}

// decodeInto reads a document the schema has checked: its struct need only
// have the fields the checks read.
func decodeInto[T any](doc []byte, list *[]*T) error {
	v := new(T)
	if err := yaml.Unmarshal(doc, v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// decodeStrictInto is for a kind with no schema to check it: its struct is
// the schema.
func decodeStrictInto[T any](doc []byte, list *[]*T) error {
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// stripComments drops comment-only lines, so a document holding only
// helm's "# Source:" line counts as empty.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}

func (m *Manifests) deployment(name string) *appsv1.Deployment {
	for _, d := range m.Deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func (m *Manifests) service(name string) *corev1.Service {
	for _, s := range m.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ciValues are the production-like values files of the chart's ci folder.
func ciValues(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chartDir, err)
	}
	return files
}
