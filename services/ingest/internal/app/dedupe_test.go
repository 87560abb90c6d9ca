package app

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestDedupe() (*dedupe, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	d := newDedupe(time.Minute)
	d.now = clock.now
	return d, clock
}

func TestDedupeDuplicateWaitsForTheFirstDelivery(t *testing.T) {
	d, clock := newTestDedupe()
	// do reads the clock under its lock, before it looks for a flight: once
	// the duplicate has read it, it waits on the first delivery, however
	// late its goroutine ran.
	var clockReads atomic.Int32
	d.now = func() time.Time { clockReads.Add(1); return clock.now() }
	release := make(chan struct{})
	started := make(chan struct{})
	first := make(chan Result)
	go func() {
		res, _ := d.do(context.Background(), "ev", func() Result {
			close(started)
			<-release
			return Result{Outcome: OutcomeRetry, Err: errors.New("pubsub down")}
		})
		first <- res
	}()
	<-started
	second := make(chan Result)
	go func() {
		res, dup := d.do(context.Background(), "ev", func() Result {
			t.Error("the duplicate ran while the first was in flight")
			return Result{}
		})
		if !dup {
			t.Error("not reported as a duplicate")
		}
		second <- res
	}()
	for deadline := time.Now().Add(10 * time.Second); clockReads.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the duplicate never called do")
		}
	}
	select {
	case <-second:
		t.Fatal("the duplicate answered before the first delivery finished")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	// The duplicate shares the failure, so Eventarc retries rather than
	// seeing an acknowledgement while the event was not handled.
	if r := <-second; r.Outcome != OutcomeRetry {
		t.Fatalf("duplicate outcome %q, want retry", r.Outcome)
	}
	<-first
	// A failure is not remembered: the retry runs.
	ran := false
	d.do(context.Background(), "ev", func() Result { ran = true; return Result{Outcome: OutcomePublished} })
	if !ran {
		t.Fatal("retry after a failure did not run")
	}
}

func TestDedupeRemembersPublishedForTTL(t *testing.T) {
	d, clock := newTestDedupe()
	runs := 0
	fn := func() Result { runs++; return Result{Outcome: OutcomePublished, PubsubID: "p1"} }
	d.do(context.Background(), "ev", fn)
	res, dup := d.do(context.Background(), "ev", fn)
	if runs != 1 || !dup || res.PubsubID != "p1" {
		t.Fatalf("runs %d dup %v res %+v", runs, dup, res)
	}
	clock.advance(time.Minute)
	if _, dup := d.do(context.Background(), "ev", fn); dup || runs != 2 {
		t.Fatalf("after the TTL: dup %v runs %d", dup, runs)
	}
}

func TestDedupeForgetsRejections(t *testing.T) {
	d, _ := newTestDedupe()
	runs := 0
	fn := func() Result { runs++; return Result{Outcome: OutcomeRejected, Reason: "from_driver"} }
	d.do(context.Background(), "ev", fn)
	d.do(context.Background(), "ev", fn)
	if runs != 2 {
		t.Fatalf("runs %d", runs)
	}
}

func TestDedupeWaiterGivesUpWithItsContext(t *testing.T) {
	d, _ := newTestDedupe()
	release := make(chan struct{})
	started := make(chan struct{})
	go d.do(context.Background(), "ev", func() Result { close(started); <-release; return Result{Outcome: OutcomePublished} })
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	res, dup := d.do(ctx, "ev", func() Result { return Result{} })
	if !dup || res.Outcome != OutcomeRetry {
		t.Fatalf("dup %v res %+v", dup, res)
	}
	close(release)
}

func TestDedupeReleasesWaitersWhenTheHandlerPanics(t *testing.T) {
	d, _ := newTestDedupe()
	func() {
		defer func() { _ = recover() }()
		d.do(context.Background(), "ev", func() Result { panic("boom") })
	}()
	ran := false
	if _, dup := d.do(context.Background(), "ev", func() Result { ran = true; return Result{Outcome: OutcomePublished} }); dup || !ran {
		t.Fatalf("after a panic: dup %v ran %v", dup, ran)
	}
}

func TestDedupeSweepsExpiredEntries(t *testing.T) {
	d, clock := newTestDedupe()
	d.do(context.Background(), "a", func() Result { return Result{Outcome: OutcomePublished} })
	clock.advance(2 * time.Minute)
	d.do(context.Background(), "b", func() Result { return Result{Outcome: OutcomePublished} })
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.flights["a"]; ok || len(d.flights) != 1 {
		t.Fatalf("flights after sweep: %d", len(d.flights))
	}
}
