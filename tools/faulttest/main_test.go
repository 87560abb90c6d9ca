// Package faulttest proves wadispatch's delivery guarantees over the real
// processes of the local stack (tools/stack) while faults are injected, and
// that bad input at its trust boundaries ends in a clear reason or a
// dead-letter topic rather than a retry loop.
package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
		dir, err := os.MkdirTemp("", "wadispatch-faulttest-bin-")
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

// startStack starts the local stack for one test and stops it after; when
// the test failed, the ends of the programs' logs are printed.
func startStack(t *testing.T, opts stack.Options) *stack.Stack {
	t.Helper()
	opts.BinDir = binDir
	opts.LogDir = t.TempDir()
	if dir := os.Getenv("FAULTTEST_LOG_DIR"); dir != "" {
		// Kept after the test, for reading what the services did.
		opts.LogDir = filepath.Join(dir, t.Name())
	}
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
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("---- %s log (end) ----\n%s", name, b)
			}
		}
	})
	return s
}

// simAdmin calls the WhatsApp simulator's admin API.
func simAdmin(ctx context.Context, s *stack.Stack, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.SimulatorURL+path, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("simulator %s %s: %s: %s", method, path, resp.Status, b)
	}
	return nil
}
