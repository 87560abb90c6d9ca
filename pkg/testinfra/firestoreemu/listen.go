package firestoreemu

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// listenStream queues the responses of one Listen call. Commits append to
// it while holding the database lock, so it never blocks; the RPC goroutine
// drains it into the gRPC stream.
type listenStream struct {
	mu    sync.Mutex
	queue []*pb.ListenResponse
	wake  chan struct{}
}

func (ls *listenStream) push(rs ...*pb.ListenResponse) {
	ls.mu.Lock()
	ls.queue = append(ls.queue, rs...)
	ls.mu.Unlock()
	select {
	case ls.wake <- struct{}{}:
	default:
	}
}

func (ls *listenStream) take() []*pb.ListenResponse {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	q := ls.queue
	ls.queue = nil
	return q
}

// listenTarget is a document or query target. It keeps the names and
// update times of the documents it currently reports, and after each commit
// that may affect it recomputes its result and sends the difference.
type listenTarget struct {
	stream *listenStream
	id     int32
	docs   map[string]bool // documents target
	parent string          // query target
	q      *pb.StructuredQuery
	paths  [][]string
	shown  map[string]time.Time
}

func resumeToken(at time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(at.UnixMicro()))
}

func globalNoChange(at time.Time) *pb.ListenResponse {
	return &pb.ListenResponse{ResponseType: &pb.ListenResponse_TargetChange{TargetChange: &pb.TargetChange{
		TargetChangeType: pb.TargetChange_NO_CHANGE,
		ReadTime:         timestamppb.New(at),
		ResumeToken:      resumeToken(at),
	}}}
}

func targetChange(kind pb.TargetChange_TargetChangeType, id int32, cause error) *pb.ListenResponse {
	tc := &pb.TargetChange{TargetChangeType: kind, TargetIds: []int32{id}}
	if cause != nil {
		tc.Cause = status.Convert(cause).Proto()
	}
	return &pb.ListenResponse{ResponseType: &pb.ListenResponse_TargetChange{TargetChange: tc}}
}

// affectedBy reports whether a change can alter the target's result.
func (t *listenTarget) affectedBy(name string) bool {
	if t.docs != nil {
		return t.docs[name]
	}
	if _, ok := t.shown[name]; ok {
		return true
	}
	sel := t.q.GetFrom()[0]
	coll, id := collectionOf(name)
	if !sel.GetAllDescendants() {
		return coll == t.parent+"/"+sel.GetCollectionId()
	}
	return strings.HasPrefix(name, t.parent+"/") && (sel.GetCollectionId() == "" || id == sel.GetCollectionId())
}

// refresh sends what changed in the target's result since the last refresh
// and reports whether anything did. db.mu must be held.
func (t *listenTarget) refresh(s *Server, db *database, at time.Time) (bool, error) {
	var docs []*pb.Document
	if t.docs != nil {
		for name := range t.docs {
			if d := db.get(name, time.Time{}); d != nil {
				docs = append(docs, d)
			}
		}
	} else {
		var err error
		if docs, err = s.execQuery(db, t.parent, t.q, time.Time{}); err != nil {
			return false, err
		}
	}
	var out []*pb.ListenResponse
	next := make(map[string]time.Time, len(docs))
	for _, d := range docs {
		ut := d.GetUpdateTime().AsTime()
		next[d.Name] = ut
		if prev, ok := t.shown[d.Name]; ok && prev.Equal(ut) {
			continue
		}
		out = append(out, &pb.ListenResponse{ResponseType: &pb.ListenResponse_DocumentChange{DocumentChange: &pb.DocumentChange{
			Document:  applyMask(d, t.paths),
			TargetIds: []int32{t.id},
		}}})
	}
	ts := timestamppb.New(at)
	for name := range t.shown {
		if _, ok := next[name]; ok {
			continue
		}
		if db.get(name, time.Time{}) == nil {
			out = append(out, &pb.ListenResponse{ResponseType: &pb.ListenResponse_DocumentDelete{DocumentDelete: &pb.DocumentDelete{
				Document: name, RemovedTargetIds: []int32{t.id}, ReadTime: ts,
			}}})
		} else {
			out = append(out, &pb.ListenResponse{ResponseType: &pb.ListenResponse_DocumentRemove{DocumentRemove: &pb.DocumentRemove{
				Document: name, RemovedTargetIds: []int32{t.id}, ReadTime: ts,
			}}})
		}
	}
	t.shown = next
	t.stream.push(out...)
	return len(out) > 0, nil
}

// notifyListeners brings every target affected by a commit up to date and
// closes each touched stream's batch with a global NO_CHANGE at the commit
// time, which is when the client library emits a snapshot. db.mu must be
// held.
func (s *Server) notifyListeners(db *database, changes []change, at time.Time) {
	if len(db.targets) == 0 || len(changes) == 0 {
		return
	}
	touched := map[*listenStream]bool{}
	for t := range db.targets {
		affected := false
		for _, ch := range changes {
			if t.affectedBy(ch.name) {
				affected = true
				break
			}
		}
		if !affected {
			continue
		}
		changed, err := t.refresh(s, db, at)
		if err != nil {
			delete(db.targets, t)
			t.stream.push(targetChange(pb.TargetChange_REMOVE, t.id, err))
			continue
		}
		if changed {
			touched[t.stream] = true
		}
	}
	for ls := range touched {
		ls.push(globalNoChange(at))
	}
}

// Listen implements the Firestore RPC for document and query targets.
func (s *Server) Listen(stream pb.Firestore_ListenServer) error {
	ls := &listenStream{wake: make(chan struct{}, 1)}
	var mu sync.Mutex
	targets := map[int32]*listenTarget{}
	var db *database
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if db == nil {
			return
		}
		db.mu.Lock()
		for _, t := range targets {
			delete(db.targets, t)
		}
		db.mu.Unlock()
	}()
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			mu.Lock()
			if db == nil {
				if db, err = s.database(req.GetDatabase()); err != nil {
					mu.Unlock()
					recvErr <- err
					return
				}
			}
			switch tc := req.GetTargetChange().(type) {
			case *pb.ListenRequest_AddTarget:
				if t := s.addTarget(db, ls, tc.AddTarget); t != nil {
					targets[t.id] = t
				}
			case *pb.ListenRequest_RemoveTarget:
				if t := targets[tc.RemoveTarget]; t != nil {
					db.mu.Lock()
					delete(db.targets, t)
					db.mu.Unlock()
					delete(targets, tc.RemoveTarget)
					ls.push(targetChange(pb.TargetChange_REMOVE, tc.RemoveTarget, nil))
				}
			}
			mu.Unlock()
		}
	}()
	for {
		select {
		case <-ls.wake:
			for _, r := range ls.take() {
				if err := stream.Send(r); err != nil {
					return err
				}
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

// addTarget registers a target and queues its initial state: ADD, RESET when
// the client resumes (so it drops what it held and takes the fresh state),
// the matching documents, CURRENT and a global NO_CHANGE.
func (s *Server) addTarget(db *database, ls *listenStream, target *pb.Target) *listenTarget {
	t := &listenTarget{stream: ls, id: target.GetTargetId(), shown: map[string]time.Time{}}
	fail := func(err error) *listenTarget {
		ls.push(targetChange(pb.TargetChange_REMOVE, t.id, err))
		return nil
	}
	switch tt := target.GetTargetType().(type) {
	case *pb.Target_Documents:
		t.docs = map[string]bool{}
		for _, name := range tt.Documents.GetDocuments() {
			if err := checkDocName(db, name); err != nil {
				return fail(err)
			}
			t.docs[name] = true
		}
	case *pb.Target_Query:
		t.parent = tt.Query.GetParent()
		t.q = tt.Query.GetStructuredQuery()
		if t.q == nil {
			return fail(status.Error(codes.InvalidArgument, "query target without structured_query"))
		}
		if _, err := compileQuery(t.q); err != nil {
			return fail(err)
		}
		if err := checkParent(db, t.parent); err != nil {
			return fail(err)
		}
		var err error
		if t.paths, err = projection(t.q); err != nil {
			return fail(err)
		}
	default:
		return fail(status.Error(codes.InvalidArgument, "target has no documents or query"))
	}
	ls.push(targetChange(pb.TargetChange_ADD, t.id, nil))
	if target.GetResumeToken() != nil || target.GetReadTime() != nil {
		ls.push(targetChange(pb.TargetChange_RESET, t.id, nil))
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	at := s.readTime()
	if _, err := t.refresh(s, db, at); err != nil {
		return fail(err)
	}
	current := targetChange(pb.TargetChange_CURRENT, t.id, nil)
	current.GetTargetChange().ResumeToken = resumeToken(at)
	ls.push(current, globalNoChange(at))
	if target.GetOnce() {
		ls.push(targetChange(pb.TargetChange_REMOVE, t.id, nil))
		return nil
	}
	db.targets[t] = struct{}{}
	return t
}
