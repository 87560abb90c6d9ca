package chartcheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// What the checks below read of skaffold.yaml, decoded after
// validateSkaffold has checked its shape against skaffold's published
// v4beta14 schema (schemas/skaffold): skaffold's own module is far too heavy
// to build for a check.
type skaffoldConfig struct {
	APIVersion  string                `json:"apiVersion"`
	Kind        string                `json:"kind"`
	Build       skaffoldBuild         `json:"build"`
	Deploy      skaffoldDeploy        `json:"deploy"`
	PortForward []skaffoldPortForward `json:"portForward"`
	Profiles    []skaffoldProfile     `json:"profiles"`
}

// skaffoldProfile replaces build, deploy or portForward when activated.
type skaffoldProfile struct {
	Name        string                `json:"name"`
	Build       *skaffoldBuild        `json:"build,omitempty"`
	Deploy      *skaffoldDeploy       `json:"deploy,omitempty"`
	PortForward []skaffoldPortForward `json:"portForward,omitempty"`
}

type skaffoldBuild struct {
	Platforms []string `json:"platforms,omitempty"`
	Artifacts []struct {
		Image   string `json:"image"`
		Context string `json:"context"`
		Ko      struct {
			Dir  string `json:"dir,omitempty"`
			Main string `json:"main"`
		} `json:"ko"`
	} `json:"artifacts"`
}

type skaffoldDeploy struct {
	Helm struct {
		Releases []struct {
			Name              string            `json:"name"`
			ChartPath         string            `json:"chartPath"`
			Namespace         string            `json:"namespace"`
			ValuesFiles       []string          `json:"valuesFiles"`
			SetValueTemplates map[string]string `json:"setValueTemplates"`
		} `json:"releases"`
	} `json:"helm"`
}

type skaffoldPortForward struct {
	ResourceType string `json:"resourceType"`
	ResourceName string `json:"resourceName"`
	Namespace    string `json:"namespace"`
	Port         int32  `json:"port"`
	LocalPort    int32  `json:"localPort"`
}

func readSkaffold(t *testing.T) *skaffoldConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validateSkaffold(b); err != nil {
		t.Fatalf("skaffold.yaml: %v", err)
	}
	var c skaffoldConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("skaffold.yaml: %v", err)
	}
	return &c
}

// valueAt reports whether values.yaml has the dotted key (a setValueTemplates
// key must name an existing value, or helm sets a value nothing reads).
func valueAt(values map[string]any, key string) bool {
	var cur any = values
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

var imageTemplate = regexp.MustCompile(`^\{\{\.IMAGE_(REPO|TAG|DIGEST)_([A-Za-z0-9_]+)\}\}(@\{\{\.IMAGE_DIGEST_([A-Za-z0-9_]+)\}\})?$`)

func TestSkaffoldConfigMatchesChart(t *testing.T) {
	c := readSkaffold(t)
	if c.APIVersion != "skaffold/v4beta14" || c.Kind != "Config" {
		t.Errorf("apiVersion %q kind %q", c.APIVersion, c.Kind)
	}
	var values map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	type variant struct {
		name    string
		build   skaffoldBuild
		deploy  skaffoldDeploy
		forward []skaffoldPortForward
	}
	variants := []variant{{"default", c.Build, c.Deploy, c.PortForward}}
	for _, p := range c.Profiles {
		v := variant{"profile " + p.Name, c.Build, c.Deploy, c.PortForward}
		if p.Build != nil {
			v.build = *p.Build
		}
		if p.Deploy != nil {
			v.deploy = *p.Deploy
		}
		if p.PortForward != nil {
			v.forward = p.PortForward
		}
		variants = append(variants, v)
	}
	if !slices.ContainsFunc(c.Profiles, func(p skaffoldProfile) bool { return p.Name == "dev" }) {
		t.Error("no dev profile")
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) { checkSkaffoldVariant(t, values, v.build, v.deploy, v.forward) })
	}
}

func checkSkaffoldVariant(t *testing.T, values map[string]any, build skaffoldBuild, deploy skaffoldDeploy, forward []skaffoldPortForward) {
	// Artifacts: one ko image per binary that has one (kobuild_test.go),
	// named after it, its main package where the go tool runs.
	artifacts := map[string]bool{}
	for _, a := range build.Artifacts {
		artifacts[strings.ReplaceAll(a.Image, "-", "_")] = true
		i := slices.IndexFunc(binaries, func(b struct{ dir, main, name string }) bool {
			return filepath.Join(a.Context, a.Ko.Dir) == b.dir && a.Ko.Main == b.main
		})
		if i < 0 {
			t.Errorf("%s: ko builds %s in %s, no binary with an image", a.Image, a.Ko.Main, filepath.Join(a.Context, a.Ko.Dir))
			continue
		}
		if name := binaries[i].name; a.Image != name && a.Image != "wadispatch-"+name {
			t.Errorf("%s: builds %s", a.Image, name)
		}
	}
	if !slices.Equal(build.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("build platforms %q, want linux/amd64 and linux/arm64", build.Platforms)
	}
	for _, s := range append(slices.Clone(services), "wadispatchctl") {
		if !artifacts["wadispatch_"+s] && !artifacts[s] {
			t.Errorf("no artifact for %s", s)
		}
	}
	if len(deploy.Helm.Releases) != 1 {
		t.Fatalf("%d helm releases, want 1", len(deploy.Helm.Releases))
	}
	rel := deploy.Helm.Releases[0]
	gotChart, _ := filepath.Abs(filepath.Join(repoRoot, rel.ChartPath))
	wantChart, _ := filepath.Abs(chartDir)
	if gotChart != wantChart {
		t.Errorf("chartPath %q is not charts/wadispatch", rel.ChartPath)
	}
	var localValues []string
	for _, f := range rel.ValuesFiles {
		if strings.Contains(f, "{{") {
			continue // templated from the environment at run time
		}
		if _, err := os.Stat(filepath.Join(repoRoot, f)); err != nil {
			t.Errorf("valuesFiles: %v", err)
		}
		localValues = append(localValues, filepath.Join(repoRoot, f))
	}
	// Every image value the chart has is set from a built artifact, and
	// every template names a built artifact and an existing value.
	images := 0
	for key, tmpl := range rel.SetValueTemplates {
		if !valueAt(values, key) {
			t.Errorf("setValueTemplates %s: no such value in values.yaml", key)
		}
		m := imageTemplate.FindStringSubmatch(tmpl)
		if m == nil {
			t.Errorf("setValueTemplates %s: %q is not an image template", key, tmpl)
			continue
		}
		images++
		for _, name := range []string{m[2], m[4]} {
			if name != "" && !artifacts[name] {
				t.Errorf("setValueTemplates %s: %q names no built artifact", key, tmpl)
			}
		}
		want := "REPO"
		if strings.HasSuffix(key, ".tag") {
			want = "TAG"
		}
		if m[1] != want {
			t.Errorf("setValueTemplates %s: %q sets the image %s from IMAGE_%s", key, tmpl, strings.ToLower(want), m[1])
		}
	}
	if images != 2*len(build.Artifacts) {
		t.Errorf("%d image templates for %d artifacts (want repository and tag of each)", images, len(build.Artifacts))
	}
	// Port-forwards name Services and ports of what this variant renders.
	var sets []string
	for key := range rel.SetValueTemplates {
		sets = append(sets, key+"=x")
	}
	m := render(t, localValues, sets...)
	for _, pf := range forward {
		if pf.ResourceType != "service" || pf.Namespace != rel.Namespace {
			t.Errorf("port-forward %s: type %q namespace %q", pf.ResourceName, pf.ResourceType, pf.Namespace)
		}
		svc := m.service(pf.ResourceName)
		if svc == nil {
			t.Errorf("port-forward %s: no such Service rendered", pf.ResourceName)
			continue
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == pf.Port }) {
			t.Errorf("port-forward %s: Service has no port %d", pf.ResourceName, pf.Port)
		}
	}
	if rel.Namespace != namespace || rel.Name != release {
		t.Errorf("release %s in %s; the chart checks assume %s in %s", rel.Name, rel.Namespace, release, namespace)
	}
}
