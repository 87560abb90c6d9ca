package stack_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/visn/wadispatch/tools/stack"
)

// The README's configuration tables name every variable the services read.
func TestReadmeDocumentsEveryEnvironmentVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{stack.Ingest, stack.Sender, stack.Recorder} {
		out, err := exec.Command(stack.TestBinary(svc), "-help-env").Output()
		if err != nil {
			t.Fatalf("%s -help-env: %v", svc, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) < 2 {
			t.Fatalf("%s -help-env printed no variables", svc)
		}
		for _, line := range lines[1:] {
			name := strings.Fields(line)[0]
			if !strings.Contains(string(readme), "`"+name+"`") {
				t.Errorf("README.md does not document %s's %s", svc, name)
			}
		}
	}
}
