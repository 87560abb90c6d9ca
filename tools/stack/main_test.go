package stack_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/visn/wadispatch/tools/stack"
)

// binDir holds the programs, built once for the package's tests.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "wadispatch-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		root, _ := filepath.Abs("../..")
		if err := stack.Build(ctx, root, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binDir = dir
		return m.Run()
	}())
}

// startStack starts the whole local stack for one test and stops it after,
// failing the test if a program did not stop cleanly.
func startStack(t *testing.T, opts stack.Options) *stack.Stack {
	t.Helper()
	opts.BinDir = binDir
	opts.LogDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the stack: %v", err)
		}
		if t.Failed() {
			for _, name := range []string{stack.Ingest, stack.Sender, stack.Recorder, stack.WhatsAppSimulator, stack.FirestoreEmulator} {
				b, _ := os.ReadFile(s.LogPath(name))
				t.Logf("---- %s log (last 4 KiB) ----\n%s", name, lastBytes(b, 4096))
			}
		}
	})
	return s
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
