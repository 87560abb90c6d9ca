// Package proto_test checks that the committed generated code is what
// `make proto` produces from the .proto files.
package proto_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	tools, err := filepath.Abs("../.tools/bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tools, "buf")); err != nil {
		t.Fatalf("buf is not installed in %s: run `make proto-tools` (make test does)", tools)
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(tools, "buf"), "generate", "-o", out)
	cmd.Env = append(os.Environ(), "PATH="+tools+string(os.PathListSeparator)+os.Getenv("PATH"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	generated := 0
	err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(rel)
		if err != nil {
			t.Errorf("%s is generated but not committed: run make proto", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what make proto generates: run make proto", rel)
		}
		generated++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if generated == 0 {
		t.Fatal("buf generated nothing")
	}
	committed, _ := filepath.Glob("wadispatch/v1/*.pb.go")
	for _, f := range committed {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil && !strings.HasSuffix(f, "_test.go") {
			t.Errorf("%s is committed but no longer generated: delete it", f)
		}
	}
}
