package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// committed is the schema folder chartcheck validates against.
const committed = "../../schemas"

// The committed Kubernetes and Gateway API schemas are what generate writes
// from the module versions in go.mod. A test downloads nothing: the versions
// are always compared; the contents only where the module cache holds
// k8s.io/kubernetes already (make chart-schemas puts it there).
func TestSchemasAreCurrent(t *testing.T) {
	want, err := moduleVersions()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(committed, versionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("schemas were generated from %v, go.mod has %v: run make chart-schemas", got, want)
	}

	t.Setenv("GOPROXY", "off")
	dir := t.TempDir()
	if err := generate(dir, "", "", ""); err != nil {
		if strings.Contains(err.Error(), "GOPROXY=off") {
			t.Skipf("contents not compared, the module cache lacks a source: %v", err)
		}
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fresh, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		old, err := os.ReadFile(filepath.Join(committed, rel))
		switch {
		case err != nil:
			t.Errorf("make chart-schemas writes schemas/%s: %v", rel, err)
		case !bytes.Equal(old, fresh):
			t.Errorf("schemas/%s is not what make chart-schemas writes", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fresh, old := names(t, filepath.Join(dir, "kubernetes")), names(t, filepath.Join(committed, "kubernetes")); !slices.Equal(fresh, old) {
		t.Errorf("schemas/kubernetes has %v, make chart-schemas writes %v", old, fresh)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range entries {
		n = append(n, e.Name())
	}
	return n
}
