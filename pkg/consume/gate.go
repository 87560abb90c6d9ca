package consume

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/visn/wadispatch/pkg/retry"
)

// Gate stops a service from working on messages while a dependency they
// all need is down. The first Unavailable verdict closes it; from then on
// one message at a time is let through as a probe, after a backoff that
// grows with each failed probe, and the first verdict that is not
// Unavailable opens it again for everyone. Messages that wait at a closed
// gate are held, not nacked: a nack spends one of the subscription's
// delivery attempts, and an outage longer than they last would move every
// queued message to the dead-letter topic.
type Gate struct {
	mu      sync.Mutex
	down    bool
	since   time.Time
	reason  string
	probing bool
	until   time.Time
	bo      *backoff.ExponentialBackOff
	// initial and max space the probes, and each held message's calls.
	initial, max time.Duration
	// changed is closed, and replaced, whenever the gate opens or a probe
	// ends, to wake the messages waiting.
	changed chan struct{}
	held    int
	// unavailable counts the calls answered Unavailable.
	unavailable prometheus.Counter
}

// NewGate returns an open gate whose probes of a dependency that stays
// down are spaced from initial up to max apart.
func NewGate(initial, max time.Duration) *Gate {
	return &Gate{bo: retry.Backoff(initial, max), initial: initial, max: max, changed: make(chan struct{}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})}
}

// backoff spaces one held message's calls.
func (g *Gate) backoff() *backoff.ExponentialBackOff { return retry.Backoff(g.initial, g.max) }

// enter waits until the gate lets the caller through: at once while it is
// open, as the probe when it is down and the backoff has passed. held, when
// not nil, is called (under the gate's lock, having counted the message
// held) the first time the caller has to wait. It fails only when ctx ends.
func (g *Gate) enter(ctx context.Context, held func()) (probe bool, _ error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if !g.down {
			return false, nil
		}
		now := time.Now()
		if !g.probing && !now.Before(g.until) {
			g.probing = true
			return true, nil
		}
		if held != nil {
			g.held++
			held()
			held = nil
		}
		changed, wait, probing := g.changed, g.until.Sub(now), g.probing
		g.mu.Unlock()
		t := time.NewTimer(max(wait, 0))
		if probing {
			// Only the probe's end can let anyone through.
			t.Stop()
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		g.mu.Lock()
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
	}
}

// hold counts a message as held, from its first Unavailable verdict or
// wait at the closed gate until release.
func (g *Gate) hold() {
	g.mu.Lock()
	g.held++
	g.mu.Unlock()
}

func (g *Gate) release() {
	g.mu.Lock()
	g.held--
	g.mu.Unlock()
}

// leave reports how the call let through by enter (as the probe or not)
// went.
func (g *Gate) leave(probe, unavailable bool, reason string) {
	if unavailable {
		g.unavailable.Inc()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !unavailable:
		if !g.down {
			return
		}
		g.down, g.probing, g.reason = false, false, ""
		g.bo.Reset()
	case !g.down:
		g.down, g.since, g.reason = true, time.Now(), reason
		g.until = time.Now().Add(g.bo.NextBackOff())
	case probe:
		g.probing, g.reason = false, reason
		g.until = time.Now().Add(g.bo.NextBackOff())
	default:
		// A call that started before the gate closed: the probe schedule
		// stands.
		return
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// Ready is a readiness check: it fails while the gate is down, so that
// Kubernetes and operators see a service that cannot work.
func (g *Gate) Ready(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down {
		return fmt.Errorf("a dependency is unavailable since %s (%s); %d messages held", g.since.UTC().Format(time.RFC3339), g.reason, g.held)
	}
	return nil
}

// GateMetricNames name a gate's gauges, spelled out whole where a service
// registers them.
type GateMetricNames struct {
	// Down is 1 while the gate is closed.
	Down string
	// Held counts the messages held: answered Unavailable and not
	// handled since.
	Held string
	// Unavailable counts the handler calls answered Unavailable: while a
	// dependency is down, each is a delivery attempt a nack would have
	// spent.
	Unavailable string
}

// Collectors are the gate's metrics, for a service's registry; call it once,
// before the gate is used.
func (g *Gate) Collectors(names GateMetricNames) []prometheus.Collector {
	g.unavailable = prometheus.NewCounter(prometheus.CounterOpts{Name: names.Unavailable,
		Help: "Handler calls answered Unavailable (a dependency down): each held its message instead of nacking it."})
	read := func(f func() float64) func() float64 {
		return func() float64 {
			g.mu.Lock()
			defer g.mu.Unlock()
			return f()
		}
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: names.Down, Help: "1 while a dependency is unavailable and messages are held instead of handled."},
			read(func() float64 {
				if g.down {
					return 1
				}
				return 0
			})),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: names.Held, Help: "Messages held while a dependency is unavailable, their ack deadlines extended instead of nacked."},
			read(func() float64 { return float64(g.held) })),
		g.unavailable,
	}
}
