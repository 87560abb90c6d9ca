package app

import (
	"context"
	"sync"
	"time"
)

// dedupe makes concurrent or repeated deliveries of one event id share the
// first delivery's outcome, so an event delivered twice while the first is in
// flight, or again shortly after it was published, publishes one task.
//
// It is in memory and per pod: a duplicate reaching another pod, or arriving
// after the TTL, publishes a second task. That is harmless: the sender claims
// each message through the recorder (a precondition-guarded create of
// {messagePath}/dispatch/state) before calling WhatsApp, so the send itself
// happens once; this only saves the duplicate work.
//
// A duplicate waits for the first delivery instead of answering at once:
// Eventarc's deliveries are Pub/Sub push deliveries of one message, and a 2xx
// to the duplicate would acknowledge the message even if the first delivery
// then failed and answered 5xx, losing the event.
type dedupe struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	flights   map[string]*flight
	lastSweep time.Time
}

type flight struct {
	done chan struct{}
	res  Result
	// expires is zero while the flight is in progress.
	expires time.Time
}

func newDedupe(ttl time.Duration) *dedupe {
	return &dedupe{ttl: ttl, now: time.Now, flights: map[string]*flight{}}
}

// do runs fn for id unless a delivery of id is in flight or was published
// within the TTL; then it returns that delivery's result (waiting for it, or
// for ctx) with dup set. Only published results are remembered: a rejection
// is cheap to repeat and a failure must be retried.
func (d *dedupe) do(ctx context.Context, id string, fn func() Result) (res Result, dup bool) {
	d.mu.Lock()
	now := d.now()
	if f, ok := d.flights[id]; ok && (f.expires.IsZero() || now.Before(f.expires)) {
		d.mu.Unlock()
		select {
		case <-f.done:
			return f.res, true
		case <-ctx.Done():
			return Result{Outcome: OutcomeRetry, Err: ctx.Err()}, true
		}
	}
	f := &flight{done: make(chan struct{})}
	d.flights[id] = f
	d.sweepLocked(now)
	d.mu.Unlock()

	// Runs even if fn panics, so waiters are released and the id is freed.
	defer func() {
		if res.Outcome == "" {
			res.Outcome = OutcomeRetry
		}
		d.mu.Lock()
		f.res = res
		if res.Outcome == OutcomePublished {
			f.expires = d.now().Add(d.ttl)
		} else if d.flights[id] == f {
			delete(d.flights, id)
		}
		d.mu.Unlock()
		close(f.done)
	}()
	return fn(), false
}

// sweepLocked drops expired entries, at most twice per TTL, so memory stays
// proportional to the events of one TTL.
func (d *dedupe) sweepLocked(now time.Time) {
	if now.Sub(d.lastSweep) < d.ttl/2 {
		return
	}
	d.lastSweep = now
	for id, f := range d.flights {
		if !f.expires.IsZero() && !now.Before(f.expires) {
			delete(d.flights, id)
		}
	}
}
