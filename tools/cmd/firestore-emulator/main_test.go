package main_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestProgramReadyLineSignalAndExport runs the built program as a user
// would: ready line, a write through FIRESTORE_EMULATOR_HOST, queries
// checked against an index file, SIGTERM, and the export reloaded by a
// second run.
func TestProgramReadyLineSignalAndExport(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "firestore-emulator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	badIndexes := filepath.Join(dir, "bad.indexes.json")
	writeFile(t, badIndexes, `{"indexes": [{"collectionGroup": "seed", "fields": [{"fieldPath": "n", "order": "ASCENDING"}]}]}`)
	ctx := context.Background()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(tctx, bin, "--host-port", "127.0.0.1:0", "--indexes", badIndexes).CombinedOutput()
	if err == nil || !strings.Contains(string(out), badIndexes) {
		t.Fatalf("start with a bad index file: %v, output %s", err, out)
	}
	indexes := filepath.Join(dir, "firestore.indexes.json")
	writeFile(t, indexes, `{"indexes": [{"collectionGroup": "seed", "fields": [
		{"fieldPath": "hello", "order": "ASCENDING"}, {"fieldPath": "n", "order": "DESCENDING"}]}]}`)
	export := filepath.Join(dir, "data.json")
	start := func() (*exec.Cmd, string) {
		t.Helper()
		cmd := exec.Command(bin, "--host-port", "127.0.0.1:0", "--import", export, "--export-on-exit", export, "--indexes", "ancillary="+indexes)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			t.Fatalf("no ready line")
		}
		addr, ok := strings.CutPrefix(sc.Text(), "firestore-emulator ready on ")
		if !ok {
			t.Fatalf("ready line %q", sc.Text())
		}
		if !sc.Scan() || sc.Text() != "export FIRESTORE_EMULATOR_HOST="+addr {
			t.Fatalf("second line %q", sc.Text())
		}
		return cmd, addr
	}
	stop := func(cmd *exec.Cmd) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no exit after SIGTERM")
		}
	}
	cmd, addr := start()
	t.Setenv("FIRESTORE_EMULATOR_HOST", addr)
	c, err := firestore.NewClientWithDatabase(ctx, "demo", "ancillary")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Doc("seed/1").Set(ctx, map[string]any{"hello": "world", "n": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	docs, err := c.Collection("seed").Where("hello", "==", "world").OrderBy("n", firestore.Asc).Documents(ctx).GetAll()
	if err != nil || len(docs) != 1 {
		t.Fatalf("indexed query: %d documents, %v", len(docs), err)
	}
	_, err = c.Collection("seed").Where("hello", "==", "world").OrderBy("m", firestore.Asc).Documents(ctx).GetAll()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "on hello ASCENDING, m ASCENDING") {
		t.Fatalf("unindexed query: got %v, want FailedPrecondition naming the index", err)
	}
	c.Close()
	stop(cmd)
	if _, err := os.Stat(export); err != nil {
		t.Fatalf("export file: %v", err)
	}

	cmd, addr = start()
	t.Setenv("FIRESTORE_EMULATOR_HOST", addr)
	c, err = firestore.NewClientWithDatabase(ctx, "demo", "ancillary")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	snap, err := c.Doc("seed/1").Get(ctx)
	if err != nil || snap.Data()["hello"] != "world" {
		t.Fatalf("imported document: %v %v", snap, err)
	}
	stop(cmd)
}
