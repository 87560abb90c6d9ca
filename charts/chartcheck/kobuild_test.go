package chartcheck

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// koConfig is what the checks need of .ko.yaml, decoded strictly: a
// misspelt key would be ignored by ko, and its setting silently lost.
type koConfig struct {
	DefaultBaseImage string   `json:"defaultBaseImage"`
	DefaultPlatforms []string `json:"defaultPlatforms"`
	DefaultEnv       []string `json:"defaultEnv"`
	DefaultFlags     []string `json:"defaultFlags"`
	DefaultLdflags   []string `json:"defaultLdflags"`
}

func readKoConfig(t *testing.T) koConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".ko.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c koConfig
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatalf(".ko.yaml: %v", err)
	}
	return c
}

var distrolessByDigest = regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}$`)

// binaries are the programs that have an image: their main package, the
// directory the go tool runs in (the tools module has its own), and the
// name ko gives the binary (the package's last element).
var binaries = []struct{ dir, main, name string }{
	{".", "./services/ingest", "ingest"},
	{".", "./services/sender", "sender"},
	{".", "./services/recorder", "recorder"},
	{".", "./cmd/wadispatchctl", "wadispatchctl"},
	{"tools", "./cmd/firestore-emulator", "firestore-emulator"},
	{"tools", "./cmd/pubsub-emulator", "pubsub-emulator"},
	{"tools", "./cmd/whatsapp-simulator", "whatsapp-simulator"},
}

func TestKoConfigFollowsTheRules(t *testing.T) {
	c := readKoConfig(t)
	if !distrolessByDigest.MatchString(c.DefaultBaseImage) {
		t.Errorf(".ko.yaml: defaultBaseImage %q is not distroless static nonroot pinned by digest", c.DefaultBaseImage)
	}
	if !slices.Equal(c.DefaultPlatforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf(".ko.yaml: defaultPlatforms %q, want linux/amd64 and linux/arm64", c.DefaultPlatforms)
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOTOOLCHAIN=local"} {
		if !slices.Contains(c.DefaultEnv, want) {
			t.Errorf(".ko.yaml: defaultEnv lacks %s", want)
		}
	}
	// Without -buildvcs=false every binary would record the commit, and
	// every image would change on every commit.
	for _, want := range []string{"-trimpath", "-buildvcs=false"} {
		if !slices.Contains(c.DefaultFlags, want) {
			t.Errorf(".ko.yaml: defaultFlags lacks %s", want)
		}
	}
	if !slices.Equal(c.DefaultLdflags, []string{"-s", "-w"}) {
		t.Errorf(".ko.yaml: defaultLdflags %q, want -s -w", c.DefaultLdflags)
	}
	// ko reads .ko.yaml where the go tool runs: the tools module's must be
	// the same file, or the dev images would be built on ko's own default
	// base image.
	for _, b := range binaries {
		root, err := os.Stat(filepath.Join(repoRoot, ".ko.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		here, err := os.Stat(filepath.Join(repoRoot, b.dir, ".ko.yaml"))
		if err != nil || !os.SameFile(root, here) {
			t.Errorf("%s: %s/.ko.yaml is not the repository's .ko.yaml (%v)", b.main, b.dir, err)
		}
	}
}

// buildLikeKo builds one binary on this machine with the environment,
// flags and linker flags .ko.yaml gives ko, for this machine's platform.
func buildLikeKo(c koConfig, dir, main, out string) ([]byte, error) {
	args := append([]string{"build"}, c.DefaultFlags...)
	args = append(args, "-ldflags="+strings.Join(c.DefaultLdflags, " "), "-o", out, main)
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join(repoRoot, dir)
	cmd.Env = append(os.Environ(), c.DefaultEnv...)
	return cmd.CombinedOutput()
}

var (
	builtOnce sync.Once
	builtDir  string
	builtErr  string
)

// built builds every program that has an image as ko does, once per run,
// into one directory, each under its name.
func built(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chartcheck-bin")
		if err != nil {
			builtErr = err.Error()
			return
		}
		builtDir = dir
		c := readKoConfig(t)
		for _, b := range binaries {
			if out, err := buildLikeKo(c, b.dir, b.main, filepath.Join(dir, b.name)); err != nil {
				builtErr += b.main + ": " + err.Error() + "\n" + string(out)
			}
		}
	})
	if builtErr != "" {
		t.Fatal(builtErr)
	}
	return builtDir
}

// The binaries built as ko builds them are static (they run on distroless
// static, which has no libc), stripped, and carry no path of this machine.
func TestImageBinariesAreStatic(t *testing.T) {
	dir := built(t)
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range binaries {
		checkStaticELF(t, filepath.Join(dir, b.name), abs)
	}
}

func checkStaticELF(t *testing.T, path, repoPath string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: dynamically linked (%s)", path, p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s: needs shared libraries %v", path, libs)
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") {
			t.Errorf("%s: not stripped (section %s): -ldflags \"-s -w\" missing", path, s.Name)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(repoPath+"/")) {
		t.Errorf("%s: contains the build path %s: -trimpath missing", path, repoPath)
	}
}

// Every variable the chart sets on a service is one the service reads
// (`<service> -help-env`, from its envconfig struct), apart from the
// emulator variables the Google clients read themselves and the OTEL_*
// variables the OpenTelemetry SDK reads (pkg/tracing).
func TestChartEnvMatchesServices(t *testing.T) {
	dir := built(t)
	clientVars := map[string]bool{"FIRESTORE_EMULATOR_HOST": true, "PUBSUB_EMULATOR_HOST": true,
		"OTEL_EXPORTER_OTLP_ENDPOINT": true, "OTEL_EXPORTER_OTLP_PROTOCOL": true}
	renders := map[string]*Manifests{"default": render(t, nil)}
	for _, f := range ciValues(t) {
		renders[filepath.Base(f)] = render(t, []string{f})
	}
	for _, s := range services {
		out, err := exec.Command(filepath.Join(dir, s), "-help-env").Output()
		if err != nil {
			t.Errorf("%s -help-env: %v", s, err)
			continue
		}
		reads := map[string]bool{}
		for i, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); i > 0 && len(f) > 0 {
				reads[f[0]] = true
			}
		}
		if len(reads) == 0 {
			t.Errorf("%s -help-env lists no variable", s)
		}
		for name, m := range renders {
			d := m.deployment(release + "-" + s)
			if d == nil {
				t.Fatalf("%s: no Deployment %s", name, s)
			}
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				if !reads[e.Name] && !clientVars[e.Name] {
					t.Errorf("values %s: the chart sets %s on %s, which does not read it", name, e.Name, s)
				}
			}
		}
	}
}

// Each dev emulator runs its own image, ko's image of the tools program of
// its name, through the image's entrypoint (ko's /ko-app/PROGRAM).
func TestDevEmulatorsRunTheirOwnImages(t *testing.T) {
	dir := built(t)
	values := map[string]string{"firestore-emulator": "firestoreEmulator", "pubsub-emulator": "pubsubEmulator", "whatsapp-simulator": "whatsappSimulator"}
	var sets []string
	for component, key := range values {
		sets = append(sets, "devEmulators."+key+".image.repository=image-of-"+component, "devEmulators."+key+".image.tag=t")
	}
	m := render(t, []string{filepath.Join(chartDir, "ci", "dev-values.yaml")}, sets...)
	n := 0
	for _, d := range m.Deployments {
		component := d.Spec.Template.Labels["app.kubernetes.io/component"]
		if _, ok := values[component]; !ok {
			continue
		}
		n++
		c := d.Spec.Template.Spec.Containers[0]
		if want := "image-of-" + component + ":t"; c.Image != want {
			t.Errorf("%s: image %q, want %q (devEmulators.%s.image)", d.Name, c.Image, want, values[component])
		}
		if len(c.Command) > 0 {
			t.Errorf("%s: command %q replaces the image's entrypoint, its program", d.Name, c.Command)
		}
		if _, err := os.Stat(filepath.Join(dir, component)); err != nil {
			t.Errorf("%s: no tools program %s has an image", d.Name, component)
		}
	}
	if n != 3 {
		t.Errorf("%d emulator Deployments, want 3 (Firestore, Pub/Sub, WhatsApp)", n)
	}
}

// The dev cluster's Firestore emulator enforces the deployed indexes: its
// --indexes flag names the ConfigMap copy of firestore.indexes.json, and the
// emulator's program starts with those very arguments.
func TestDevFirestoreEmulatorLoadsTheDeployedIndexes(t *testing.T) {
	dir := built(t)
	m := render(t, []string{filepath.Join(chartDir, "ci", "dev-values.yaml")})
	i := slices.IndexFunc(m.Deployments, func(d *appsv1.Deployment) bool { return strings.HasSuffix(d.Name, "-firestore-emulator") })
	if i < 0 {
		t.Fatal("no firestore-emulator Deployment")
	}
	pod := m.Deployments[i].Spec.Template.Spec
	args := slices.Clone(pod.Containers[0].Args)
	flag := slices.Index(args, "--indexes")
	if flag < 0 || flag+1 == len(args) {
		t.Fatalf("firestore-emulator args %q lack --indexes", args)
	}
	database, path, _ := strings.Cut(args[flag+1], "=")
	if database != "(default)" {
		t.Errorf("--indexes for database %q, want the messages database (default)", database)
	}
	var configMap string
	for _, vm := range pod.Containers[0].VolumeMounts {
		if filepath.Dir(path) == vm.MountPath {
			for _, v := range pod.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil {
					configMap = v.ConfigMap.Name
				}
			}
		}
	}
	j := slices.IndexFunc(m.ConfigMaps, func(c *corev1.ConfigMap) bool { return c.Name == configMap })
	if j < 0 {
		t.Fatalf("%s is not in a mounted ConfigMap", path)
	}
	want, err := os.ReadFile(filepath.Join(chartDir, "firestore.indexes.json"))
	if err != nil {
		t.Fatal(err)
	}
	got := m.ConfigMaps[j].Data[filepath.Base(path)]
	if got != string(want) {
		t.Fatalf("ConfigMap %s holds %q, not firestore.indexes.json", configMap, got)
	}

	local := filepath.Join(t.TempDir(), "firestore.indexes.json")
	if err := os.WriteFile(local, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	args[flag+1] = database + "=" + local
	args[slices.Index(args, "--host-port")+1] = "127.0.0.1:0"
	cmd := exec.Command(filepath.Join(dir, "firestore-emulator"), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); !strings.Contains(line, "ready on") {
		t.Fatalf("emulator with the chart's arguments: %q %v; stderr: %s", line, err, stderr.String())
	}
}
