package app

import (
	"context"
	"time"

	"github.com/visn/wadispatch/pkg/retry"
)

// readIndex reads the wamid's index entry, waiting up to Config.IndexWait
// while it does not exist: WhatsApp's first webhooks often arrive before
// the send's result is recorded, and waiting here costs less than a nack
// (each redelivery uses one of the subscription's delivery attempts).
func (s *Service) readIndex(ctx context.Context, wamid string) (IndexedMessage, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.IndexWait)
	defer cancel()
	bo := retry.Backoff(20*time.Millisecond, 500*time.Millisecond)
	for {
		e, found, err := s.store.IndexedMessage(ctx, wamid)
		if err != nil || found {
			return e, found, err
		}
		if retry.Pause(ctx, bo) != nil {
			return IndexedMessage{}, false, nil
		}
	}
}
