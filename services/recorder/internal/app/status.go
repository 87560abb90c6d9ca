package app

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// readIndex reads the wamid's index entry, waiting up to Config.IndexWait
// while it does not exist: WhatsApp's first webhooks often arrive before
// the send's result is recorded, and waiting here costs less than a nack
// (each redelivery uses one of the subscription's delivery attempts).
func (s *Service) readIndex(ctx context.Context, wamid string) (IndexedMessage, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.IndexWait)
	defer cancel()
	bo := exponential(20*time.Millisecond, 500*time.Millisecond)
	for {
		e, found, err := s.store.IndexedMessage(ctx, wamid)
		if err != nil || found {
			return e, found, err
		}
		if pause(ctx, bo) != nil {
			return IndexedMessage{}, false, nil
		}
	}
}

// exponential is the wait between tries, doubling up to max, jittered so
// that writers racing for one document spread out instead of colliding
// again.
func exponential(initial, max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: max}
}

// pause waits bo's next interval, or until ctx ends.
func pause(ctx context.Context, bo backoff.BackOff) error {
	t := time.NewTimer(bo.NextBackOff())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
