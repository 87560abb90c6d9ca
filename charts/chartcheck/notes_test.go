package chartcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// renderNotes renders templates/NOTES.txt offline: helm template skips it
// and helm install --dry-run needs a cluster, so a copy of the chart wraps
// it in a ConfigMap.
func renderNotes(t *testing.T, sets ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "wadispatch")
	if out, err := exec.Command("cp", "-r", chartDir, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy chart: %v: %s", err, out)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "templates", "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	wrap := "{{- define \"chartcheck.notes\" -}}\n" + string(notes) + "\n{{- end -}}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "_chartcheck_notes.tpl"), []byte(wrap), 0o644); err != nil {
		t.Fatal(err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: chartcheck-notes}\ndata:\n  notes: {{ include \"chartcheck.notes\" . | quote }}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "chartcheck-notes.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	args := templateArgs(nil, sets...)
	args[2] = dir
	args = append(args, "--show-only", "templates/chartcheck-notes.yaml")
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeAll(out)
	if err != nil || len(m.ConfigMaps) != 1 {
		t.Fatalf("NOTES.txt wrapper: %v", err)
	}
	return m.ConfigMaps[0].Data["notes"]
}

// NOTES.txt tells the installer what was deployed and what to do next.
func TestNotesTellWhatWasDeployedAndNextSteps(t *testing.T) {
	notes := renderNotes(t)
	for _, want := range []string{
		release + "-ingest", release + "-sender", release + "-recorder",
		"port-forward svc/" + release + "-recorder 9090:9090",
		"-n " + namespace,
		"wadispatchctl",
		"PodMonitoring", "rules.monitoring.googleapis.com", "globalrules",
		"docs/metrics.md", "docs/deploy.md",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
	off := renderNotes(t, "monitoring.podMonitoring.enabled=false", "monitoring.rules.enabled=false", "recorder.grpcPort=9191")
	if strings.Contains(off, "get rules.monitoring") || !strings.Contains(off, "port-forward svc/"+release+"-recorder "+strconv.Itoa(9191)) {
		t.Errorf("NOTES.txt with monitoring off and grpcPort 9191:\n%s", off)
	}
}
