package chartcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/yannh/kubeconform/pkg/validator"
	"sigs.k8s.io/yaml"
)

// schemaDir holds the vendored schemas: schemas/README.md says where each
// comes from, and `make chart-schemas` regenerates them.
const schemaDir = "schemas"

// kubeconform reads the schemas from disk only: Kubernetes kinds in its own
// layout, CRDs in that of the CRDs catalog its docs point to.
var manifestValidator = sync.OnceValues(func() (validator.Validator, error) {
	dir, err := filepath.Abs(schemaDir)
	if err != nil {
		return nil, err
	}
	return validator.New([]string{
		filepath.Join(dir, "kubernetes", "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
		filepath.Join(dir, "crds", "{{ .Group }}", "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"),
	}, validator.Opts{
		Strict: true,
		// GKE publishes no CRD or schema for HealthCheckPolicy, and
		// StorageBucket's CRD is not vendored yet: their structs are
		// decoded strictly instead.
		SkipKinds: map[string]struct{}{"networking.gke.io/v1/HealthCheckPolicy": {}, "storage.cnrm.cloud.google.com/v1beta1/StorageBucket": {}},
	})
})

// validateManifests checks every document of a manifest stream against its
// kind's schema: an unknown or misplaced field, a wrong type, a missing
// required field, a duplicate key or a kind without a vendored schema is an
// error.
func validateManifests(stream []byte) error {
	v, err := manifestValidator()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range v.Validate("manifests", io.NopCloser(bytes.NewReader(stream))) {
		if r.Status == validator.Valid || r.Status == validator.Empty || r.Status == validator.Skipped {
			continue
		}
		what := "manifest"
		if sig, err := r.Resource.Signature(); err == nil {
			what = sig.Version + " " + sig.Kind + " " + sig.Name
		}
		// kubeconform's message names the schema file first; the
		// causes (at '/spec': additional properties 'replicaz' not
		// allowed) follow it.
		msg := r.Err.Error()
		if i := strings.Index(msg, " - at "); i >= 0 {
			msg = msg[i+3:]
		}
		errs = append(errs, fmt.Errorf("%s: %s", what, strings.ReplaceAll(msg, "   - ", "; ")))
	}
	return errors.Join(errs...)
}

var skaffoldValidator = sync.OnceValues(func() (*jsonschema.Schema, error) {
	file, err := filepath.Abs(filepath.Join(schemaDir, "skaffold", "v4beta14.json"))
	if err != nil {
		return nil, err
	}
	return jsonschema.NewCompiler().Compile(file)
})

// validateSkaffold checks a skaffold config against skaffold's published
// schema, which lists every builder, deployer and field it accepts.
func validateSkaffold(doc []byte) error {
	s, err := skaffoldValidator()
	if err != nil {
		return err
	}
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	if err := s.Validate(v); err != nil {
		// The schema tries each builder and deployer in an anyOf: every
		// one of them reports the same unknown field.
		var lines []string
		seen := map[string]bool{}
		for _, l := range strings.Split(err.Error(), "\n") {
			if !seen[l] {
				lines = append(lines, l)
			}
			seen[l] = true
		}
		return errors.New(strings.Join(lines, "\n"))
	}
	return nil
}

// The schemas are strict: each case is one mistake a template could make,
// and a valid object of the same kind passes, so a rejection is the
// schema's doing and not a missing file.
func TestSchemasRejectMistakes(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, labels: {app: d}}
spec:
  replicas: 2
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
        - name: c
          image: i
          ports: [{name: http, containerPort: 8080}]
          resources: {requests: {cpu: 1, memory: 64Mi}}
`
	const topic = `apiVersion: pubsub.cnrm.cloud.google.com/v1beta1
kind: PubSubTopic
metadata: {name: t}
spec: {resourceID: t}
`
	const subscription = `apiVersion: pubsub.cnrm.cloud.google.com/v1beta1
kind: PubSubSubscription
metadata: {name: s}
spec:
  topicRef: {name: t}
  ackDeadlineSeconds: 60
`
	const podMonitoring = `apiVersion: monitoring.googleapis.com/v1
kind: PodMonitoring
metadata: {name: p}
spec:
  selector: {matchLabels: {app: d}}
  endpoints: [{port: http, path: /metrics, interval: 30s}]
`
	cases := []schemaCase{
		{"valid Deployment", deployment, ""},
		{"misspelt field", strings.Replace(deployment, "replicas:", "replicaz:", 1), "replicaz"},
		{"misspelt metadata", strings.Replace(deployment, "labels: {app: d}}", "lables: {app: d}}", 1), "lables"},
		{"misplaced field", strings.Replace(deployment, "      containers:", "      replicas: 2\n      containers:", 1), "replicas"},
		{"wrong type", strings.Replace(deployment, "containerPort: 8080", "containerPort: http", 1), "containerPort"},
		{"missing required field", strings.Replace(deployment, "          image: i\n", "          image: i\n        - image: j\n", 1), "name"},
		{"duplicate key", strings.Replace(deployment, "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", 1), "replicas"},
		{"kind without a schema", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\n", "could not find schema"},
		{"valid PubSubTopic", topic, ""},
		{"Config Connector field misspelt", strings.Replace(topic, "resourceID", "resourceId", 1), "resourceId"},
		{"Config Connector metadata misspelt", strings.Replace(topic, "{name: t}", "{name: t, annotation: {a: b}}", 1), "annotation"},
		{"valid PubSubSubscription", subscription, ""},
		{"Config Connector required field", strings.Replace(subscription, "  topicRef: {name: t}\n", "", 1), "topicRef"},
		{"Config Connector reference both name and external", strings.Replace(subscription, "{name: t}", "{name: t, external: projects/p/topics/t}", 1), "topicRef"},
		{"valid PodMonitoring", podMonitoring, ""},
		{"GMP field misspelt", strings.Replace(podMonitoring, "interval:", "intervall:", 1), "intervall"},
	}
	checkVerdicts(t, validateManifests, cases)
}

// skaffold's schema knows each builder: a ko artifact passes as a docker one
// does, and a misspelt builder or field does not.
func TestSkaffoldSchemaRejectsMistakes(t *testing.T) {
	const config = `apiVersion: skaffold/v4beta14
kind: Config
build:
  artifacts:
    - image: wadispatch-ingest
      docker: {dockerfile: Dockerfile, buildArgs: {SERVICE: ingest}}
    - image: wadispatch-sender
      ko: {main: ./services/sender}
deploy:
  helm:
    releases: [{name: wadispatch, chartPath: charts/wadispatch}]
`
	cases := []schemaCase{
		{"valid", config, ""},
		{"misspelt builder", strings.Replace(config, "docker:", "dokcer:", 1), "dokcer"},
		{"misspelt field", strings.Replace(config, "main:", "mian:", 1), "mian"},
		{"two builders", strings.Replace(config, "ko: {main: ./services/sender}", "ko: {main: ./services/sender}\n      docker: {dockerfile: Dockerfile}", 1), "artifacts/1"},
		{"wrong type", strings.Replace(config, "[{name: wadispatch, chartPath: charts/wadispatch}]", "{name: wadispatch}", 1), "releases"},
	}
	checkVerdicts(t, validateSkaffold, cases)
}

// schemaCase is a document and what its validation must say: want "" is
// valid, otherwise the error must name want.
type schemaCase struct{ name, doc, want string }

func checkVerdicts(t *testing.T, validate func([]byte) error, cases []schemaCase) {
	t.Helper()
	for _, c := range cases {
		err := validate([]byte(c.doc))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: accepted", c.name)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error does not name %q: %v", c.name, c.want, err)
		}
	}
}

// kubeconform reports a schema that does not compile as "could not find
// schema"; compiling each here, as it does (draft 4), names the broken one.
func TestVendoredSchemasCompile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(schemaDir, "kubernetes", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	crds, err := filepath.Glob(filepath.Join(schemaDir, "crds", "*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 || len(crds) == 0 {
		t.Fatalf("no schemas in %s", schemaDir)
	}
	for _, f := range append(files, crds...) {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft4)
		if _, err := c.Compile(abs); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
