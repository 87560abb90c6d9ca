package app

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiters paces calls per business phone number ID, below WhatsApp's
// throughput limit (80 messages/s by default), so that code 130429 is rare.
// When WhatsApp answers 130429 anyway (a number with a lower limit, or other
// senders sharing it), the number is slowed down for a while.
//
// Reservations take the time from the caller's clock, so tests drive them
// without sleeping.
type Limiters struct {
	rate  rate.Limit
	burst int
	// cooldown is how long a slowed-down number stays slow after its last
	// 130429.
	cooldown time.Duration

	mu      sync.Mutex
	numbers map[string]*numberLimiter
}

type numberLimiter struct {
	limiter *rate.Limiter
	// slowUntil is when the number returns to the configured rate.
	slowUntil time.Time
	// slowedAt is the last halving.
	slowedAt time.Time
}

// minSlowRate is the floor of repeated slow-downs; one message per second
// still makes progress.
const minSlowRate rate.Limit = 1

// slowDownEvery spaces halvings: the calls in flight when a number hits its
// limit all come back with 130429 at once, and they report one excess, not
// one each. WhatsApp counts throughput per second.
const slowDownEvery = time.Second

// NewLimiters paces each phone number at perSecond with the given burst;
// after a 130429 the number runs at half its current rate for cooldown.
func NewLimiters(perSecond float64, burst int, cooldown time.Duration) *Limiters {
	if burst < 1 {
		burst = 1
	}
	return &Limiters{
		rate:     rate.Limit(perSecond),
		burst:    burst,
		cooldown: cooldown,
		numbers:  map[string]*numberLimiter{},
	}
}

// number returns the limiter of a phone number, restoring its rate when its
// cool-down is over. l.mu must be held.
func (l *Limiters) number(phoneNumberID string, now time.Time) *numberLimiter {
	n, ok := l.numbers[phoneNumberID]
	if !ok {
		n = &numberLimiter{limiter: rate.NewLimiter(l.rate, l.burst)}
		l.numbers[phoneNumberID] = n
	}
	if !n.slowUntil.IsZero() && !now.Before(n.slowUntil) {
		n.limiter.SetLimitAt(now, l.rate)
		n.slowUntil, n.slowedAt = time.Time{}, time.Time{}
	}
	return n
}

// Reserve takes the next slot for phoneNumberID and returns how long to wait
// before using it. When the wait would be longer than maxWait, nothing is
// taken and ok is false.
func (l *Limiters) Reserve(phoneNumberID string, now time.Time, maxWait time.Duration) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.number(phoneNumberID, now).limiter.ReserveN(now, 1)
	if !r.OK() {
		return 0, false
	}
	wait = r.DelayFrom(now)
	if wait > maxWait {
		r.CancelAt(now)
		return wait, false
	}
	return wait, true
}

// SlowDown halves the rate of phoneNumberID (down to one message per second,
// at most once a second) for the cool-down, after WhatsApp said its
// throughput was reached.
func (l *Limiters) SlowDown(phoneNumberID string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.number(phoneNumberID, now)
	n.slowUntil = now.Add(l.cooldown)
	if !n.slowedAt.IsZero() && now.Sub(n.slowedAt) < slowDownEvery {
		return
	}
	n.slowedAt = now
	cur := n.limiter.Limit()
	n.limiter.SetLimitAt(now, max(cur/2, min(minSlowRate, cur)))
}

// Rate is the current rate of phoneNumberID, for logs and tests.
func (l *Limiters) Rate(phoneNumberID string, now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(l.number(phoneNumberID, now).limiter.Limit())
}
