package app

import (
	"context"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/visn/wadispatch/pkg/dispatch"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// readIndex reads the wamid's index entry, waiting up to Config.IndexWait
// while it does not exist: WhatsApp's first webhooks often arrive before
// the send's result is recorded, and waiting here costs less than a nack
// (each redelivery uses one of the subscription's delivery attempts).
func (s *Service) readIndex(ctx context.Context, wamid string) (*firestore.DocumentSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.IndexWait)
	defer cancel()
	bo := exponential(20*time.Millisecond, 500*time.Millisecond)
	for {
		snap, err := s.db.Doc(dispatch.IndexPath(wamid)).Get(ctx)
		if status.Code(err) != codes.NotFound {
			return snap, err
		}
		if pause(ctx, bo) != nil {
			return nil, err
		}
	}
}
