package stack_test

import (
	"os"
	"testing"

	"github.com/visn/wadispatch/tools/stack"
)

func TestMain(m *testing.M) { os.Exit(stack.RunTests(m)) }
