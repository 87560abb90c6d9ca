// Command schemagen writes the JSON schemas that chartcheck validates the
// chart's manifests and skaffold.yaml against (charts/chartcheck/schemas,
// see its README.md), so that a refresh is one command: `make chart-schemas`.
//
// Kubernetes kinds come from the OpenAPI spec of k8s.io/kubernetes at the
// version of chartcheck's k8s.io/api, and HTTPRoute from the CRD of its
// sigs.k8s.io/gateway-api: both are module zips, so the Go module proxy is
// all this needs for them. Config Connector, Google Managed Prometheus and
// skaffold are not Go modules one can download; their schemas are converted
// only when -kcc, -gmp and -skaffold name checkouts of those repositories.
//
// Every schema is strict the way `kubeconform -strict` means it: an object
// whose fields the spec lists has additionalProperties false, so a misspelt
// or misplaced field is an error, not silently dropped by the API server.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// kinds are the Kubernetes kinds the chart renders: a kind the chart starts
// rendering fails validation ("could not find schema") until it is added here.
// Pod is the chart's `helm test` hook.
var kinds = []string{
	"v1/ConfigMap",
	"v1/Pod",
	"v1/Secret",
	"v1/Service",
	"v1/ServiceAccount",
	"apps/v1/Deployment",
	"autoscaling/v2/HorizontalPodAutoscaler",
	"networking.k8s.io/v1/NetworkPolicy",
	"policy/v1/PodDisruptionBudget",
}

// crd is a CustomResourceDefinition file in a source tree and the one
// version of it the chart uses.
type crd struct{ file, version string }

var (
	gatewayCRDs = []crd{
		{"config/crd/standard/gateway.networking.k8s.io_httproutes.yaml", "v1"},
	}
	kccCRDs = []crd{
		{"config/crds/resources/apiextensions.k8s.io_v1_customresourcedefinition_eventarctriggers.eventarc.cnrm.cloud.google.com.yaml", "v1beta1"},
		{"config/crds/resources/apiextensions.k8s.io_v1_customresourcedefinition_firestoreindexes.firestore.cnrm.cloud.google.com.yaml", "v1beta1"},
		{"config/crds/resources/apiextensions.k8s.io_v1_customresourcedefinition_iampolicymembers.iam.cnrm.cloud.google.com.yaml", "v1beta1"},
		{"config/crds/resources/apiextensions.k8s.io_v1_customresourcedefinition_iamserviceaccounts.iam.cnrm.cloud.google.com.yaml", "v1beta1"},
		{"config/crds/resources/apiextensions.k8s.io_v1_customresourcedefinition_pubsubsubscriptions.pubsub.cnrm.cloud.google.com.yaml", "v1beta1"},
		{"config/crds/resources/apiextensions.k8s.io_v1_customresourcedefinition_pubsubtopics.pubsub.cnrm.cloud.google.com.yaml", "v1beta1"},
	}
	gmpCRDs = []crd{
		{"charts/operator/crds/monitoring.googleapis.com_globalrules.yaml", "v1"},
		{"charts/operator/crds/monitoring.googleapis.com_podmonitorings.yaml", "v1"},
		{"charts/operator/crds/monitoring.googleapis.com_rules.yaml", "v1"},
	}
	skaffoldSchema = "docs-v2/content/en/schemas/v4beta14.json"
)

const (
	objectMeta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
	quantity   = "io.k8s.apimachinery.pkg.api.resource.Quantity"
)

func main() {
	out := flag.String("out", "schemas", "schema folder")
	kcc := flag.String("kcc", "", "checkout of GoogleCloudPlatform/k8s-config-connector (its CRDs are converted when set)")
	gmp := flag.String("gmp", "", "checkout of GoogleCloudPlatform/prometheus-engine (its CRDs are converted when set)")
	skaffold := flag.String("skaffold", "", "checkout of GoogleContainerTools/skaffold (its v4beta14 schema is copied when set)")
	flag.Parse()

	if err := generate(*out, *kcc, *gmp, *skaffold); err != nil {
		log.Fatal(err)
	}
}

// versionsFile records the module versions the Kubernetes and Gateway API
// schemas were generated from, for the test that they follow go.mod.
const versionsFile = "versions.json"

// generate writes the schemas into out; kcc, gmp and skaffold are checkouts,
// each skipped when "".
func generate(out, kcc, gmp, skaffold string) error {
	versions, err := moduleVersions()
	if err != nil {
		return err
	}
	k8s, err := moduleDir("k8s.io/kubernetes", versions["k8s.io/kubernetes"])
	if err != nil {
		return err
	}
	gw, err := moduleDir("sigs.k8s.io/gateway-api", versions["sigs.k8s.io/gateway-api"])
	if err != nil {
		return err
	}
	defs, err := readSwagger(filepath.Join(k8s, "api/openapi-spec/swagger.json"))
	if err != nil {
		return err
	}
	// A kind the chart no longer renders loses its schema.
	if err := os.RemoveAll(filepath.Join(out, "kubernetes")); err != nil {
		return err
	}
	for _, k := range kinds {
		if err := writeKind(out, defs, k); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	sources := []struct {
		dir  string
		crds []crd
	}{{gw, gatewayCRDs}, {kcc, kccCRDs}, {gmp, gmpCRDs}}
	for _, s := range sources {
		if s.dir == "" {
			continue
		}
		for _, c := range s.crds {
			if err := writeCRD(out, defs, filepath.Join(s.dir, c.file), c.version); err != nil {
				return fmt.Errorf("%s: %w", c.file, err)
			}
		}
	}
	if skaffold != "" {
		b, err := os.ReadFile(filepath.Join(skaffold, skaffoldSchema))
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(out, "skaffold", filepath.Base(skaffoldSchema)), b); err != nil {
			return err
		}
	}
	return writeJSON(filepath.Join(out, versionsFile), versions)
}

// moduleVersions are the versions of the modules the schemas come from,
// following chartcheck's go.mod.
func moduleVersions() (map[string]string, error) {
	api, err := moduleVersion("k8s.io/api")
	if err != nil {
		return nil, err
	}
	gw, err := moduleVersion("sigs.k8s.io/gateway-api")
	if err != nil {
		return nil, err
	}
	// k8s.io/api v0.X.Y is published from Kubernetes v1.X.Y.
	return map[string]string{
		"k8s.io/kubernetes":       "v1" + strings.TrimPrefix(api, "v0"),
		"sigs.k8s.io/gateway-api": gw,
	}, nil
}

func moduleVersion(path string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", path).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", path, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// moduleDir downloads a module (or finds it in the module cache).
func moduleDir(path, version string) (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", path+"@"+version).Output()
	var m struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &m); jsonErr == nil && m.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", path, version, m.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", path, version, err)
	}
	return m.Dir, nil
}

type schema = map[string]any

func readSwagger(file string) (map[string]schema, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var spec struct {
		Definitions map[string]schema `json:"definitions"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return spec.Definitions, nil
}

// writeKind writes group/version/Kind in kubeconform's own layout for
// Kubernetes kinds: {kind}-{first label of the group}-{version}.json.
func writeKind(out string, defs map[string]schema, gvk string) error {
	i := strings.LastIndex(gvk, "/")
	apiVersion, kind := gvk[:i], gvk[i+1:]
	group, version := "", apiVersion
	if j := strings.Index(apiVersion, "/"); j >= 0 {
		group, version = apiVersion[:j], apiVersion[j+1:]
	}
	var name string
	for n, d := range defs {
		for _, x := range asList(d["x-kubernetes-group-version-kind"]) {
			x, _ := x.(schema)
			if x["group"] == group && x["version"] == version && x["kind"] == kind {
				name = n
			}
		}
	}
	if name == "" {
		return errors.New("not in the OpenAPI spec")
	}
	root := strictRef(defs, name)
	suffix := "-" + version
	if group != "" {
		suffix = "-" + strings.Split(group, ".")[0] + suffix
	}
	return writeJSON(filepath.Join(out, "kubernetes", strings.ToLower(kind)+suffix+".json"), root)
}

// strictRef is a standalone schema for the definition name: the definitions
// it refers to, and no others, are carried along under "definitions".
func strictRef(defs map[string]schema, name string) schema {
	used := map[string]schema{}
	var visit func(string)
	visit = func(n string) {
		if _, ok := used[n]; ok {
			return
		}
		used[n] = nil
		if n == quantity {
			// "cpu: 1" is as good as "cpu: 1000m".
			used[n] = schema{"oneOf": []any{schema{"type": "string"}, schema{"type": "number"}}}
			return
		}
		used[n] = strict(defs[n], visit)
	}
	visit(name)
	root := used[name]
	delete(used, name)
	if len(used) > 0 {
		d := schema{}
		for n, s := range used {
			d[n] = s
		}
		root["definitions"] = d
	}
	return root
}

// strict converts an OpenAPI schema (swagger's or a CRD's openAPIV3Schema)
// to the draft-4 JSON schema kubeconform compiles: descriptions, formats and
// x-kubernetes extensions go (kubeconform does not read them), an object
// listing its properties admits no others, int-or-string and quantities
// take either spelling, and an optional field may be null, as the API
// server accepts. ref is called with each definition referred to.
func strict(s schema, ref func(string)) schema {
	if s == nil {
		return nil
	}
	if r, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(r, "#/definitions/")
		ref(name)
		return schema{"$ref": "#/definitions/" + name}
	}
	if s["format"] == "int-or-string" || s["x-kubernetes-int-or-string"] == true {
		return schema{"oneOf": []any{schema{"type": "string"}, schema{"type": "integer"}}}
	}
	out := schema{}
	for k, v := range s {
		switch {
		case k == "description" || k == "format" || k == "nullable" || strings.HasPrefix(k, "x-"):
		case k == "properties":
			required := map[string]bool{}
			for _, r := range asList(s["required"]) {
				required[r.(string)] = true
			}
			props := schema{}
			for name, p := range v.(schema) {
				ps := strict(p.(schema), ref)
				if !required[name] {
					ps = orNull(ps)
				}
				props[name] = ps
			}
			out[k] = props
		case k == "items" || k == "additionalProperties" || k == "not":
			if sub, ok := v.(schema); ok {
				out[k] = strict(sub, ref)
			} else {
				out[k] = v
			}
		case k == "allOf" || k == "anyOf" || k == "oneOf":
			var subs []any
			for _, sub := range asList(v) {
				subs = append(subs, strict(sub.(schema), ref))
			}
			out[k] = subs
		default:
			out[k] = v
		}
	}
	if _, open := s["additionalProperties"]; !open && s["properties"] != nil && s["x-kubernetes-preserve-unknown-fields"] != true {
		out["additionalProperties"] = false
	}
	return out
}

// orNull lets a typed schema also be null (helm renders an empty value as
// null); references and combinations are left as they are.
func orNull(s schema) schema {
	t, ok := s["type"].(string)
	if !ok {
		return s
	}
	s["type"] = []any{t, "null"}
	return s
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// writeCRD writes one version of a CRD in the layout of the CRDs catalog
// kubeconform documents: {group}/{kind}_{version}.json, with metadata
// checked as strictly as a Kubernetes kind's (a CRD leaves it open).
func writeCRD(out string, defs map[string]schema, file, version string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var c struct {
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema schema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return err
	}
	for _, v := range c.Spec.Versions {
		if v.Name != version {
			continue
		}
		crdSchema := v.Schema.OpenAPIV3Schema
		if props, ok := crdSchema["properties"].(schema); ok {
			props["metadata"] = schema{"$ref": "#/definitions/" + objectMeta}
		}
		root := strict(crdSchema, func(string) {})
		meta := strictRef(defs, objectMeta)
		metaDefs, _ := meta["definitions"].(schema)
		delete(meta, "definitions")
		d := schema{objectMeta: meta}
		for n, s := range metaDefs {
			d[n] = s
		}
		root["definitions"] = d
		return writeJSON(filepath.Join(out, "crds", c.Spec.Group, strings.ToLower(c.Spec.Names.Kind)+"_"+version+".json"), root)
	}
	return fmt.Errorf("no version %s", version)
}

func writeJSON(file string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return writeFile(file, buf.Bytes())
}

func writeFile(file string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}
