package firestoreemu

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/status"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
)

// docLimits holds a token bucket per document name (project and database
// included), so
// that writes to one document are held to Options.DocumentWriteRate while
// writes to others pass.
type docLimits struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newDocLimits(perSecond float64, burst int) *docLimits {
	if perSecond <= 0 {
		return nil
	}
	return &docLimits{rate: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*rate.Limiter{}}
}

// wait holds a commit until every document it writes has a token: a
// commit is as slow as its hottest document. Tokens are taken when the
// commit arrives, in arrival order, so a queue on one document drains at
// the rate however many commits wait on it.
func (l *docLimits) wait(ctx context.Context, writes []*pb.Write) error {
	if l == nil || len(writes) == 0 {
		return nil
	}
	now := time.Now()
	var delay time.Duration
	seen := make(map[string]bool, len(writes))
	l.mu.Lock()
	for _, w := range writes {
		name, err := writeTarget(w)
		if err != nil || seen[name] {
			continue // a bad write is refused once the commit runs
		}
		seen[name] = true
		b := l.buckets[name]
		if b == nil {
			b = rate.NewLimiter(l.rate, l.burst)
			l.buckets[name] = b
		}
		delay = max(delay, b.ReserveN(now, 1).DelayFrom(now))
	}
	l.mu.Unlock()
	if delay == 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}
