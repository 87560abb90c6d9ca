// Package faulttest proves wadispatch's delivery guarantees over the real
// processes of the local stack (tools/stack) while faults are injected, and
// that bad input at its trust boundaries ends in a clear reason or a
// dead-letter topic rather than a retry loop.
package faulttest

import (
	"os"
	"testing"

	"github.com/visn/wadispatch/tools/stack"
)

func TestMain(m *testing.M) { os.Exit(stack.RunTests(m)) }
