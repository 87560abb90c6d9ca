package dispatch_test

import (
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/dispatch"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a longer value", 8, "a longer…"},
		{"ééé", 3, "é…"}, // é is 2 bytes: no half character
		{strings.Repeat("x", 1<<20), 4, "xxxx…"},
	} {
		if got := dispatch.Clip(tc.in, tc.n); got != tc.want {
			t.Errorf("Clip(%.20q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
