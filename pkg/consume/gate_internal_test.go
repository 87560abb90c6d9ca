package consume

import (
	"context"
	"errors"
	"testing"
	"time"
)

// While one probe runs nobody else gets through, even when a call that
// began before the gate closed fails meanwhile; the probe's success opens
// the gate for everyone.
func TestOneProbeAtATime(t *testing.T) {
	g := NewGate(time.Millisecond, time.Millisecond)
	ctx := context.Background()
	first, _ := g.enter(ctx, nil)
	second, _ := g.enter(ctx, nil)
	if first || second {
		t.Fatal("an open gate let a call through as a probe")
	}
	g.leave(first, true, "down") // the gate closes

	var probe bool
	for !probe {
		var err error
		if probe, err = g.enter(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	g.leave(second, true, "down") // began before the gate closed

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	held := 0
	if _, err := g.enter(short, func() { held++ }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second call got through while the probe ran: %v", err)
	}
	if held != 1 || g.held != 1 {
		t.Errorf("held callback %d times, %d counted; want 1", held, g.held)
	}
	g.release()
	if g.Ready(ctx) == nil {
		t.Error("ready while down")
	}

	g.leave(probe, false, "")
	if p, err := g.enter(ctx, nil); p || err != nil {
		t.Errorf("after the probe succeeded: probe=%v err=%v, want through at once", p, err)
	}
	if err := g.Ready(ctx); err != nil {
		t.Errorf("not ready after the probe succeeded: %v", err)
	}
}
