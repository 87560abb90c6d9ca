package retry_test

import (
	"context"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/retry"
)

func TestBackoffDoublesWithJitterUpToTheCap(t *testing.T) {
	bo := retry.Backoff(10*time.Millisecond, 80*time.Millisecond)
	step := 10 * time.Millisecond
	for i := range 8 {
		d := bo.NextBackOff()
		if d < step/2 || d > step*3/2 {
			t.Fatalf("wait %d: %s, want within ±50%% of %s", i, d, step)
		}
		step = min(2*step, 80*time.Millisecond)
	}
}

func TestPauseEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := retry.Pause(ctx, retry.Backoff(time.Hour, time.Hour)); err != context.Canceled {
		t.Fatalf("Pause = %v, want context.Canceled at once", err)
	}
}
