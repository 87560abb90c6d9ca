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
)

// dockerfile is what the checks need of a Dockerfile.
type dockerfile struct {
	env      []string // ENV of the build stage, as KEY=VALUE
	build    string   // the RUN command that runs `go build`
	runtime  string   // the last FROM: the image the binary runs on
	user     string   // the last USER
	hasEntry bool
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var df dockerfile
	var logical []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, l := range logical {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			df.runtime = strings.Fields(rest)[0]
			df.user = ""
		case "ENV":
			if df.build == "" {
				df.env = append(df.env, strings.Fields(rest)...)
			}
		case "RUN":
			if strings.Contains(rest, "go build") {
				// BuildKit options (--mount=...) are not part of the command.
				fields := strings.Fields(rest)
				for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
					fields = fields[1:]
				}
				df.build = strings.Join(fields, " ")
			}
		case "USER":
			df.user = strings.TrimSpace(rest)
		case "ENTRYPOINT":
			df.hasEntry = true
		}
	}
	return df
}

var distrolessByDigest = regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}$`)

func checkDockerfileRules(t *testing.T, path string, df dockerfile) {
	t.Helper()
	if !distrolessByDigest.MatchString(df.runtime) {
		t.Errorf("%s: runtime base %q is not distroless static nonroot pinned by digest", path, df.runtime)
	}
	if !regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).MatchString(df.user) {
		t.Errorf("%s: USER %q is not a numeric non-root uid:gid", path, df.user)
	}
	for _, flag := range []string{"CGO_ENABLED=0 go build", "-trimpath", `-ldflags="-s -w"`} {
		if !strings.Contains(df.build, flag) {
			t.Errorf("%s: build command %q lacks %s", path, df.build, flag)
		}
	}
	if !slices.Contains(df.env, "GOFLAGS=-buildvcs=false") {
		t.Errorf("%s: build stage does not set GOFLAGS=-buildvcs=false (reproducible builds)", path)
	}
}

// buildLikeDockerfile runs the Dockerfile's own build command on this
// machine, in the repository, with the build stage's ENV and args, writing
// to out instead of /out.
func buildLikeDockerfile(df dockerfile, out string, args ...string) ([]byte, error) {
	cmdline := strings.ReplaceAll(df.build, "/out/", out+"/")
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = repoRoot
	cmd.Env = append(append(os.Environ(), df.env...), args...)
	return cmd.CombinedOutput()
}

var (
	builtOnce sync.Once
	builtDir  string
	builtErr  string
)

// built builds every service and tool as the Dockerfiles do, once per run.
func built(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chartcheck-bin")
		if err != nil {
			builtErr = err.Error()
			return
		}
		builtDir = dir
		svc := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
		for _, s := range services {
			if err := os.MkdirAll(filepath.Join(dir, s), 0o755); err != nil {
				builtErr = err.Error()
				return
			}
			if out, err := buildLikeDockerfile(svc, filepath.Join(dir, s), "SERVICE="+s); err != nil {
				builtErr += "service " + s + ": " + err.Error() + "\n" + string(out)
			}
		}
		tools := parseDockerfile(t, filepath.Join(repoRoot, "build/tools.Dockerfile"))
		if out, err := buildLikeDockerfile(tools, filepath.Join(dir, "tools")); err != nil {
			builtErr += "tools: " + err.Error() + "\n" + string(out)
		}
	})
	if builtErr != "" {
		t.Fatal(builtErr)
	}
	return builtDir
}

func TestDockerfilesFollowTheRules(t *testing.T) {
	for _, path := range []string{"Dockerfile", "build/tools.Dockerfile"} {
		full := filepath.Join(repoRoot, path)
		df := parseDockerfile(t, full)
		checkDockerfileRules(t, path, df)
		if path == "Dockerfile" {
			if !df.hasEntry {
				t.Errorf("%s: no ENTRYPOINT", path)
			}
			if !strings.Contains(df.build, `"./services/$SERVICE"`) {
				t.Errorf("%s: build command %q does not build ./services/$SERVICE", path, df.build)
			}
		}
		if _, err := os.Stat(full + ".dockerignore"); err != nil {
			t.Errorf("%s: no %s.dockerignore: the build context would carry .git and .tools", path, path)
		}
	}
}

// The binaries the Dockerfiles build are static (they run on distroless
// static, which has no libc), stripped, and carry no path of this machine.
func TestDockerfileBinariesAreStatic(t *testing.T) {
	dir := built(t)
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	var bins []string
	for _, s := range services {
		bins = append(bins, filepath.Join(dir, s, "service"))
	}
	tools, err := filepath.Glob(filepath.Join(dir, "tools", "*"))
	if err != nil || len(tools) == 0 {
		t.Fatalf("the tools image builds no program: %v", err)
	}
	bins = append(bins, tools...)
	for _, bin := range bins {
		checkStaticELF(t, bin, abs)
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
		out, err := exec.Command(filepath.Join(dir, s, "service"), "-help-env").Output()
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

// The dev emulators run programs the tools image contains.
func TestDevEmulatorsRunToolsImagePrograms(t *testing.T) {
	dir := built(t)
	m := render(t, []string{filepath.Join(chartDir, "ci", "dev-values.yaml")})
	n := 0
	for _, d := range m.Deployments {
		c := d.Spec.Template.Spec.Containers[0]
		if len(c.Command) == 0 {
			continue
		}
		n++
		prog, ok := strings.CutPrefix(c.Command[0], "/usr/local/bin/")
		if !ok {
			t.Errorf("%s: command %q is not a tools image program", d.Name, c.Command[0])
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "tools", prog)); err != nil {
			t.Errorf("%s: the tools image has no %s", d.Name, prog)
		}
	}
	if n != 3 {
		t.Errorf("%d emulator Deployments, want 3 (Firestore, Pub/Sub, WhatsApp)", n)
	}
}

// The dev cluster's Firestore emulator enforces the deployed indexes: its
// --indexes flag names the ConfigMap copy of firestore.indexes.json, and the
// tools image's emulator starts with those very arguments.
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
	cmd := exec.Command(filepath.Join(dir, "tools", "firestore-emulator"), args...)
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
