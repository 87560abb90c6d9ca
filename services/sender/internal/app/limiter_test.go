package app

import (
	"testing"
	"time"
)

func TestLimitersPacePerNumber(t *testing.T) {
	l := NewLimiters(10, 2, 5*time.Second)
	now := time.Now()
	var waits []time.Duration
	for range 4 {
		w, ok := l.Reserve("n1", now, time.Hour)
		if !ok {
			t.Fatal("no slot")
		}
		waits = append(waits, w)
	}
	// Burst of 2, then one slot per 100 ms.
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if w, ok := l.Reserve("n2", now, time.Hour); !ok || w != 0 {
		t.Errorf("another number waits %s; numbers must not share a limiter", w)
	}
	if w, ok := l.Reserve("n1", now, 250*time.Millisecond); ok {
		t.Errorf("reserved a slot %s away with a 250 ms limit", w)
	}
	// The refused reservation was given back: the next slot is still 300 ms away.
	if w, _ := l.Reserve("n1", now, time.Hour); w != 300*time.Millisecond {
		t.Errorf("next slot in %s, want 300ms", w)
	}
}

func TestLimitersSlowDownAndRecover(t *testing.T) {
	l := NewLimiters(8, 1, 5*time.Second)
	now := time.Now()
	// The calls of one burst all answer 130429 at once: one halving.
	for range 10 {
		l.SlowDown("n1", now)
	}
	if got := l.Rate("n1", now); got != 4 {
		t.Errorf("rate after one burst of slow-downs %v, want 4", got)
	}
	for i := range 5 {
		now = now.Add(time.Second)
		l.SlowDown("n1", now)
		if want := max(4/float64(int(2)<<i), 1); l.Rate("n1", now) != want {
			t.Errorf("rate after %d more seconds of 130429 = %v, want %v", i+1, l.Rate("n1", now), want)
		}
	}
	if got := l.Rate("n1", now.Add(4*time.Second)); got != 1 {
		t.Errorf("rate %v before the cool-down ended, want 1", got)
	}
	if got := l.Rate("n1", now.Add(5*time.Second)); got != 8 {
		t.Errorf("rate after the cool-down %v, want 8", got)
	}
	slow := NewLimiters(0.5, 1, time.Second)
	slow.SlowDown("n1", now)
	if got := slow.Rate("n1", now); got != 0.5 {
		t.Errorf("a rate below the floor changed to %v on slow-down", got)
	}
}
