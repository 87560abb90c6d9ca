package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// testBinDir holds the programs RunTests built for this test binary.
var testBinDir string

// RunTests is a TestMain for packages whose tests run the stack: it builds
// the programs once into a temporary folder, runs the tests and removes the
// folder. Use it as `func TestMain(m *testing.M) { os.Exit(stack.RunTests(m)) }`.
func RunTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wadispatch-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Build(ctx, repoRoot(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testBinDir = dir
	return m.Run()
}

// TestBinary is the path of a program RunTests built.
func TestBinary(name string) string { return filepath.Join(testBinDir, name) }

// StartForTest starts the stack with the programs RunTests built and stops
// it when t ends, failing t if a program does not stop cleanly; when t
// failed, the end of each program's log is printed. Logs go to a temporary
// folder, or under $WADISPATCH_TEST_LOG_DIR to be kept.
func StartForTest(t testing.TB, opts Options) *Stack {
	t.Helper()
	if testBinDir == "" {
		t.Fatal("stack.StartForTest needs the package's TestMain to call stack.RunTests")
	}
	opts.BinDir = testBinDir
	opts.LogDir = t.TempDir()
	if dir := os.Getenv("WADISPATCH_TEST_LOG_DIR"); dir != "" {
		opts.LogDir = filepath.Join(dir, t.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the stack: %v", err)
		}
		if t.Failed() {
			names := []string{Ingest, Sender, WhatsAppSimulator, FirestoreEmulator}
			for i := range s.RecorderAddrs {
				names = append(names, RecorderName(i))
			}
			for _, name := range names {
				b, _ := os.ReadFile(s.LogPath(name))
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("---- %s log (end) ----\n%s", name, b)
			}
		}
	})
	return s
}

// repoRoot is the repository root, two folders above this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
