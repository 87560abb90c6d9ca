package firestoreemu

import (
	"context"
	"sort"
	"strings"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// readView is the consistency a read runs at: inside a read-write
// transaction (locking what it reads), at a fixed time (read_time or a
// read-only transaction), or at the latest state.
type readView struct {
	t      *txn
	at     time.Time
	newTxn []byte
}

// openRead resolves a request's consistency selector. db.mu must be held.
func (s *Server) openRead(db *database, txnID []byte, newTxn *pb.TransactionOptions, readTime *timestamppb.Timestamp) (*readView, error) {
	rv := &readView{}
	var t *txn
	var err error
	switch {
	case len(txnID) > 0:
		t, err = db.lookupTxn(txnID)
	case newTxn != nil:
		t, err = s.beginTxn(db, newTxn)
		if err == nil {
			rv.newTxn = []byte(t.id)
		}
	case readTime != nil:
		rv.at, err = s.checkReadTime(readTime)
	}
	if err != nil {
		return nil, err
	}
	if t != nil {
		if t.readOnly {
			rv.at = t.readTime
		} else {
			rv.t = t
		}
	}
	return rv, nil
}

// timestamp is the read_time to report for this view.
func (s *Server) timestamp(rv *readView) *timestamppb.Timestamp {
	if rv.at.IsZero() {
		return timestamppb.New(s.readTime())
	}
	return timestamppb.New(rv.at)
}

// readDoc reads one document through rv; db.mu must be held.
func (s *Server) readDoc(ctx context.Context, db *database, rv *readView, name string) (*pb.Document, error) {
	if rv.t != nil {
		if err := s.lockDoc(ctx, db, rv.t, name); err != nil {
			return nil, err
		}
		d := db.get(name, time.Time{})
		rv.t.reads[name] = updateTimeOf(d)
		return d, nil
	}
	return db.get(name, rv.at), nil
}

func maskPaths(m *pb.DocumentMask) ([][]string, error) {
	if m == nil {
		return nil, nil
	}
	paths := make([][]string, 0, len(m.GetFieldPaths()))
	for _, p := range m.GetFieldPaths() {
		segs, err := parseFieldPath(p)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "mask: %v", err)
		}
		paths = append(paths, segs)
	}
	return paths, nil
}

// applyMask returns d restricted to paths (nil paths = whole document)
// without modifying the stored document.
func applyMask(d *pb.Document, paths [][]string) *pb.Document {
	if paths == nil || d == nil {
		return d
	}
	return &pb.Document{Name: d.Name, Fields: projectFields(d.Fields, paths), CreateTime: d.CreateTime, UpdateTime: d.UpdateTime}
}

// GetDocument implements the Firestore RPC.
func (s *Server) GetDocument(ctx context.Context, req *pb.GetDocumentRequest) (*pb.Document, error) {
	db, err := s.database(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := checkDocName(db, req.GetName()); err != nil {
		return nil, err
	}
	paths, err := maskPaths(req.GetMask())
	if err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	rv, err := s.openRead(db, req.GetTransaction(), nil, req.GetReadTime())
	if err != nil {
		return nil, err
	}
	d, err := s.readDoc(ctx, db, rv, req.GetName())
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, status.Errorf(codes.NotFound, "document not found: %s", req.GetName())
	}
	return applyMask(d, paths), nil
}

// BatchGetDocuments implements the Firestore RPC, reporting missing
// documents as Firestore does.
func (s *Server) BatchGetDocuments(req *pb.BatchGetDocumentsRequest, stream pb.Firestore_BatchGetDocumentsServer) error {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return err
	}
	paths, err := maskPaths(req.GetMask())
	if err != nil {
		return err
	}
	for _, name := range req.GetDocuments() {
		if err := checkDocName(db, name); err != nil {
			return err
		}
	}
	ctx := stream.Context()
	db.mu.Lock()
	rv, err := s.openRead(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		db.mu.Unlock()
		return err
	}
	resps := make([]*pb.BatchGetDocumentsResponse, 0, len(req.GetDocuments()))
	for _, name := range req.GetDocuments() {
		d, err := s.readDoc(ctx, db, rv, name)
		if err != nil {
			db.mu.Unlock()
			return err
		}
		r := &pb.BatchGetDocumentsResponse{}
		if d == nil {
			r.Result = &pb.BatchGetDocumentsResponse_Missing{Missing: name}
		} else {
			r.Result = &pb.BatchGetDocumentsResponse_Found{Found: applyMask(d, paths)}
		}
		resps = append(resps, r)
	}
	// The read time is taken before unlocking: no commit can then be
	// stamped at or before it without being visible to this read.
	rt := s.timestamp(rv)
	db.mu.Unlock()
	if len(resps) == 0 && rv.newTxn != nil {
		resps = append(resps, &pb.BatchGetDocumentsResponse{})
	}
	for i, r := range resps {
		r.ReadTime = rt
		if i == 0 {
			r.Transaction = rv.newTxn
		}
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	return nil
}

// ListDocuments implements the Firestore RPC. Documents are listed in name
// order; show_missing adds documents that do not exist but have
// subcollections, as Firestore does.
func (s *Server) ListDocuments(ctx context.Context, req *pb.ListDocumentsRequest) (*pb.ListDocumentsResponse, error) {
	db, err := s.database(req.GetParent())
	if err != nil {
		return nil, err
	}
	if err := checkParent(db, req.GetParent()); err != nil {
		return nil, err
	}
	paths, err := maskPaths(req.GetMask())
	if err != nil {
		return nil, err
	}
	coll := req.GetParent() + "/" + req.GetCollectionId()
	db.mu.Lock()
	defer db.mu.Unlock()
	rv, err := s.openRead(db, req.GetTransaction(), nil, req.GetReadTime())
	if err != nil {
		return nil, err
	}
	names := map[string]bool{} // name -> exists
	for name, e := range db.colls[coll] {
		if e.at(rv.at) != nil {
			names[name] = true
		}
	}
	if req.GetShowMissing() {
		for c := range db.colls {
			rest, ok := strings.CutPrefix(c, coll+"/")
			if !ok || !db.hasLiveDocs(c, rv.at) {
				continue
			}
			if i := strings.IndexByte(rest, '/'); i > 0 {
				if n := coll + "/" + rest[:i]; !names[n] {
					names[n] = false
				}
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		if req.GetPageToken() == "" || compareNames(n, req.GetPageToken()) > 0 {
			sorted = append(sorted, n)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return compareNames(sorted[i], sorted[j]) < 0 })
	resp := &pb.ListDocumentsResponse{}
	if ps := int(req.GetPageSize()); ps > 0 && len(sorted) > ps {
		sorted = sorted[:ps]
		resp.NextPageToken = sorted[ps-1]
	}
	for _, n := range sorted {
		if !names[n] {
			resp.Documents = append(resp.Documents, &pb.Document{Name: n})
			continue
		}
		d, err := s.readDoc(ctx, db, rv, n)
		if err != nil {
			return nil, err
		}
		if d != nil {
			resp.Documents = append(resp.Documents, applyMask(d, paths))
		}
	}
	return resp, nil
}

// hasLiveDocs reports whether collection c or any collection below it has a
// document at time at.
func (db *database) hasLiveDocs(c string, at time.Time) bool {
	for k, docs := range db.colls {
		if k != c && !strings.HasPrefix(k, c+"/") {
			continue
		}
		for _, e := range docs {
			if e.at(at) != nil {
				return true
			}
		}
	}
	return false
}

// ListCollectionIds implements the Firestore RPC: the ids of collections
// directly under parent that hold documents at any depth.
func (s *Server) ListCollectionIds(ctx context.Context, req *pb.ListCollectionIdsRequest) (*pb.ListCollectionIdsResponse, error) {
	db, err := s.database(req.GetParent())
	if err != nil {
		return nil, err
	}
	if err := checkParent(db, req.GetParent()); err != nil {
		return nil, err
	}
	var at time.Time
	if rt := req.GetReadTime(); rt != nil {
		if at, err = s.checkReadTime(rt); err != nil {
			return nil, err
		}
	}
	db.mu.Lock()
	ids := map[string]bool{}
	for c := range db.colls {
		rest, ok := strings.CutPrefix(c, req.GetParent()+"/")
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(rest, "/")
		if !ids[id] && db.hasLiveDocs(req.GetParent()+"/"+id, at) {
			ids[id] = true
		}
	}
	db.mu.Unlock()
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		if id > req.GetPageToken() {
			sorted = append(sorted, id)
		}
	}
	sort.Strings(sorted)
	resp := &pb.ListCollectionIdsResponse{}
	if ps := int(req.GetPageSize()); ps > 0 && len(sorted) > ps {
		sorted = sorted[:ps]
		resp.NextPageToken = sorted[ps-1]
	}
	resp.CollectionIds = sorted
	return resp, nil
}
