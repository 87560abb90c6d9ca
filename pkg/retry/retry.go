// Package retry is the one shape of waiting between tries in wadispatch:
// exponential, doubling up to a cap, with jitter so that writers racing for
// one document, or senders retrying one number, spread out instead of
// colliding again (github.com/cenkalti/backoff/v5).
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Backoff starts at initial and doubles up to max, each wait drawn within
// ±50% of its step.
func Backoff(initial, max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: max}
}

// Pause waits bo's next interval, or until ctx ends.
func Pause(ctx context.Context, bo backoff.BackOff) error {
	t := time.NewTimer(bo.NextBackOff())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
