package firestoreemu

import (
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
)

type listenTarget struct{}

func (t *listenTarget) reset() {}

func (s *Server) notifyListeners(db *database, changes []change, at time.Time) {}

var _ = pb.Document{}
