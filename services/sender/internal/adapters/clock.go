package adapters

import (
	"context"
	"time"
)

// Clock is the wall clock, the sender's app.Clock.
type Clock struct{}

// Now implements app.Clock.
func (Clock) Now() time.Time { return time.Now() }

// Sleep implements app.Clock.
func (Clock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
