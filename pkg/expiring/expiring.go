// Package expiring keeps values for as long as their loader says they stay
// good: a lease's configuration, an enquiry, a Secret Manager token, a
// verified ID token. Concurrent misses of one key share one load.
package expiring

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Cache keeps loaded values until they expire, so that a burst of calls
// for one key costs one load.
type Cache[V any] struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[string]cached[V]
	loads   singleflight.Group
}

type cached[V any] struct {
	v       V
	expires time.Time
}

// New returns an empty cache telling time with now.
func New[V any](now func() time.Time) *Cache[V] {
	return &Cache[V]{now: now, entries: map[string]cached[V]{}}
}

// Get returns key's value, loading it when missing or expired; load says
// how long the value it read may be kept. Errors are not kept.
func (c *Cache[V]) Get(ctx context.Context, key string, load func(ctx context.Context, key string) (V, time.Duration, error)) (V, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		return e.v, nil
	}
	v, err, _ := c.loads.Do(key, func() (any, error) {
		v, ttl, err := load(ctx, key)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.entries[key] = cached[V]{v: v, expires: c.now().Add(ttl)}
		c.sweepLocked()
		c.mu.Unlock()
		return v, nil
	})
	if err != nil {
		var zero V
		return zero, err
	}
	return v.(V), nil
}

// sweepEvery is the size above which expired entries are dropped on
// insert: the keys of each use are few (leases, open enquiries, callers),
// so this only bounds memory against odd inputs.
const sweepEvery = 1024

func (c *Cache[V]) sweepLocked() {
	if len(c.entries) < sweepEvery {
		return
	}
	now := c.now()
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
}
