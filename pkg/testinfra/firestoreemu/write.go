package firestoreemu

import (
	"context"
	"math"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const maxDocumentSize = 1 << 20

// change is one document state transition made by a commit; old or new is
// nil for a creation or a deletion.
type change struct {
	name     string
	old, new *pb.Document
}

// Commit implements the Firestore RPC: all writes apply or none do.
func (s *Server) Commit(ctx context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	// Before the database lock: a commit held back by a hot document keeps
	// its transaction's locks, as in Firestore, but delays no other commit.
	if err := s.limits.wait(ctx, req.GetWrites()); err != nil {
		return nil, err
	}
	db.mu.Lock()
	var t *txn
	if len(req.GetTransaction()) > 0 {
		if t, err = db.lookupTxn(req.GetTransaction()); err != nil {
			db.mu.Unlock()
			return nil, err
		}
		if t.readOnly && len(req.GetWrites()) > 0 {
			db.mu.Unlock()
			return nil, grpcstatus.Error(codes.InvalidArgument, "cannot write in a read-only transaction")
		}
		if err := s.validateTxn(db, t); err != nil {
			db.endTxn(t)
			db.mu.Unlock()
			return nil, err
		}
	}
	at := s.commitTime()
	results, changes, err := s.applyWrites(db, req.GetWrites(), at)
	if t != nil {
		db.endTxn(t)
	}
	if err == nil {
		s.notifyListeners(db, changes, at)
	}
	db.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.fireTriggers(db.name, changes, at)
	return &pb.CommitResponse{WriteResults: results, CommitTime: timestamppb.New(at)}, nil
}

// BatchWrite implements the Firestore RPC: each write applies on its own.
func (s *Server) BatchWrite(ctx context.Context, req *pb.BatchWriteRequest) (*pb.BatchWriteResponse, error) {
	db, err := s.database(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	if err := s.limits.wait(ctx, req.GetWrites()); err != nil {
		return nil, err
	}
	resp := &pb.BatchWriteResponse{}
	var all []change
	db.mu.Lock()
	at := s.commitTime()
	for _, w := range req.GetWrites() {
		results, changes, err := s.applyWrites(db, []*pb.Write{w}, at)
		if err != nil {
			resp.WriteResults = append(resp.WriteResults, &pb.WriteResult{})
			resp.Status = append(resp.Status, grpcstatus.Convert(err).Proto())
			continue
		}
		resp.WriteResults = append(resp.WriteResults, results[0])
		resp.Status = append(resp.Status, &status.Status{Code: int32(codes.OK)})
		all = append(all, changes...)
	}
	s.notifyListeners(db, all, at)
	db.mu.Unlock()
	s.fireTriggers(db.name, all, at)
	return resp, nil
}

// UpdateDocument implements the single-document REST-style RPC.
func (s *Server) UpdateDocument(ctx context.Context, req *pb.UpdateDocumentRequest) (*pb.Document, error) {
	w := &pb.Write{
		Operation:       &pb.Write_Update{Update: req.GetDocument()},
		UpdateMask:      req.GetUpdateMask(),
		CurrentDocument: req.GetCurrentDocument(),
	}
	if _, err := s.Commit(ctx, &pb.CommitRequest{Database: dbPrefix(req.GetDocument().GetName()), Writes: []*pb.Write{w}}); err != nil {
		return nil, err
	}
	return s.GetDocument(ctx, &pb.GetDocumentRequest{Name: req.GetDocument().GetName(), Mask: req.GetMask()})
}

// DeleteDocument implements the single-document REST-style RPC.
func (s *Server) DeleteDocument(ctx context.Context, req *pb.DeleteDocumentRequest) (*emptypb.Empty, error) {
	w := &pb.Write{Operation: &pb.Write_Delete{Delete: req.GetName()}, CurrentDocument: req.GetCurrentDocument()}
	if _, err := s.Commit(ctx, &pb.CommitRequest{Database: dbPrefix(req.GetName()), Writes: []*pb.Write{w}}); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func dbPrefix(name string) string {
	db, err := databaseOf(name)
	if err != nil {
		return name
	}
	return db
}

// applyWrites stages every write, then installs them only if all succeeded.
// db.mu must be held.
func (s *Server) applyWrites(db *database, writes []*pb.Write, at time.Time) ([]*pb.WriteResult, []change, error) {
	type staged struct {
		old, new *pb.Document
	}
	stage := map[string]*staged{}
	var order []string
	results := make([]*pb.WriteResult, 0, len(writes))
	ts := timestamppb.New(at)
	for _, w := range writes {
		name, err := writeTarget(w)
		if err != nil {
			return nil, nil, err
		}
		if err := checkDocName(db, name); err != nil {
			return nil, nil, err
		}
		st := stage[name]
		if st == nil {
			cur := db.get(name, time.Time{})
			st = &staged{old: cur, new: cur}
			stage[name] = st
			order = append(order, name)
		}
		prev := st.new
		if err := checkPrecondition(name, prev, w.GetCurrentDocument()); err != nil {
			return nil, nil, err
		}
		var next *pb.Document
		var transforms []*pb.DocumentTransform_FieldTransform
		switch op := w.GetOperation().(type) {
		case *pb.Write_Update:
			next = &pb.Document{Name: name}
			if w.GetUpdateMask() == nil {
				next.Fields = cloneFields(op.Update.GetFields())
				for _, v := range next.Fields {
					if err := normalizeValue(v); err != nil {
						return nil, nil, err
					}
				}
			} else {
				next.Fields = cloneFields(prev.GetFields())
				for _, p := range w.GetUpdateMask().GetFieldPaths() {
					segs, err := parseFieldPath(p)
					if err != nil {
						return nil, nil, grpcstatus.Errorf(codes.InvalidArgument, "update_mask: %v", err)
					}
					if v, ok := getField(op.Update.GetFields(), segs); ok {
						v = proto.Clone(v).(*pb.Value)
						if err := normalizeValue(v); err != nil {
							return nil, nil, err
						}
						setField(next.Fields, segs, v)
					} else {
						deleteField(next.Fields, segs)
					}
				}
			}
			transforms = w.GetUpdateTransforms()
		case *pb.Write_Delete:
			next = nil
		case *pb.Write_Transform:
			next = &pb.Document{Name: name, Fields: cloneFields(prev.GetFields())}
			transforms = op.Transform.GetFieldTransforms()
		}
		wr := &pb.WriteResult{UpdateTime: ts}
		for _, ft := range transforms {
			res, err := applyTransform(next.Fields, ft, ts)
			if err != nil {
				return nil, nil, err
			}
			wr.TransformResults = append(wr.TransformResults, res)
		}
		if next != nil {
			if prev != nil && fieldsEqual(prev.Fields, next.Fields) {
				next = prev
				wr.UpdateTime = prev.UpdateTime
			} else {
				next.UpdateTime = ts
				next.CreateTime = ts
				if prev != nil {
					next.CreateTime = prev.CreateTime
				}
				if proto.Size(next) > maxDocumentSize {
					return nil, nil, grpcstatus.Errorf(codes.InvalidArgument, "document %q exceeds the maximum size of 1 MiB", name)
				}
			}
		}
		st.new = next
		results = append(results, wr)
	}
	var changes []change
	for _, name := range order {
		st := stage[name]
		if st.old == st.new {
			continue
		}
		db.put(name, st.new, at, s.opts.VersionRetention)
		changes = append(changes, change{name: name, old: st.old, new: st.new})
	}
	return results, changes, nil
}

func writeTarget(w *pb.Write) (string, error) {
	switch op := w.GetOperation().(type) {
	case *pb.Write_Update:
		return op.Update.GetName(), nil
	case *pb.Write_Delete:
		return op.Delete, nil
	case *pb.Write_Transform:
		return op.Transform.GetDocument(), nil
	}
	return "", grpcstatus.Error(codes.InvalidArgument, "write has no operation")
}

func checkPrecondition(name string, cur *pb.Document, pre *pb.Precondition) error {
	switch c := pre.GetConditionType().(type) {
	case *pb.Precondition_Exists:
		if c.Exists && cur == nil {
			return grpcstatus.Errorf(codes.NotFound, "no document to update: %s", name)
		}
		if !c.Exists && cur != nil {
			return grpcstatus.Errorf(codes.AlreadyExists, "document already exists: %s", name)
		}
	case *pb.Precondition_UpdateTime:
		if cur == nil || !proto.Equal(cur.GetUpdateTime(), c.UpdateTime) {
			return grpcstatus.Errorf(codes.FailedPrecondition, "the update_time precondition of %s does not match", name)
		}
	}
	return nil
}

func cloneFields(f map[string]*pb.Value) map[string]*pb.Value {
	out := make(map[string]*pb.Value, len(f))
	for k, v := range f {
		out[k] = proto.Clone(v).(*pb.Value)
	}
	return out
}

// normalizeValue rounds timestamp values down to microseconds, the
// precision Firestore stores, and rejects value types that are expressions
// rather than data.
func normalizeValue(v *pb.Value) error {
	switch x := v.GetValueType().(type) {
	case *pb.Value_TimestampValue:
		x.TimestampValue.Nanos -= x.TimestampValue.GetNanos() % 1000
	case *pb.Value_ArrayValue:
		for _, e := range x.ArrayValue.GetValues() {
			if _, nested := e.GetValueType().(*pb.Value_ArrayValue); nested {
				return grpcstatus.Error(codes.InvalidArgument, "an array cannot directly contain another array")
			}
			if err := normalizeValue(e); err != nil {
				return err
			}
		}
	case *pb.Value_MapValue:
		for _, e := range x.MapValue.GetFields() {
			if err := normalizeValue(e); err != nil {
				return err
			}
		}
	case *pb.Value_FieldReferenceValue, *pb.Value_VariableReferenceValue, *pb.Value_FunctionValue, *pb.Value_PipelineValue:
		return grpcstatus.Errorf(codes.InvalidArgument, "%T cannot be stored in a document", x)
	}
	return nil
}

func fieldsEqual(a, b map[string]*pb.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !proto.Equal(v, w) {
			return false
		}
	}
	return true
}

// applyTransform applies one field transform in place and returns its
// transform result.
func applyTransform(fields map[string]*pb.Value, ft *pb.DocumentTransform_FieldTransform, now *timestamppb.Timestamp) (*pb.Value, error) {
	path, err := parseFieldPath(ft.GetFieldPath())
	if err != nil {
		return nil, grpcstatus.Errorf(codes.InvalidArgument, "field transform: %v", err)
	}
	cur, _ := getField(fields, path)
	var next *pb.Value
	switch tt := ft.GetTransformType().(type) {
	case *pb.DocumentTransform_FieldTransform_SetToServerValue:
		if tt.SetToServerValue != pb.DocumentTransform_FieldTransform_REQUEST_TIME {
			return nil, grpcstatus.Errorf(codes.InvalidArgument, "unsupported server value %v", tt.SetToServerValue)
		}
		next = &pb.Value{ValueType: &pb.Value_TimestampValue{TimestampValue: now}}
	case *pb.DocumentTransform_FieldTransform_Increment:
		if !isNumber(tt.Increment) {
			return nil, grpcstatus.Error(codes.InvalidArgument, "increment operand must be a number")
		}
		next = increment(cur, tt.Increment)
	case *pb.DocumentTransform_FieldTransform_Maximum:
		if !isNumber(tt.Maximum) {
			return nil, grpcstatus.Error(codes.InvalidArgument, "maximum operand must be a number")
		}
		next = extremum(cur, tt.Maximum, 1)
	case *pb.DocumentTransform_FieldTransform_Minimum:
		if !isNumber(tt.Minimum) {
			return nil, grpcstatus.Error(codes.InvalidArgument, "minimum operand must be a number")
		}
		next = extremum(cur, tt.Minimum, -1)
	case *pb.DocumentTransform_FieldTransform_AppendMissingElements:
		var elems []*pb.Value
		if a, ok := cur.GetValueType().(*pb.Value_ArrayValue); ok {
			elems = append(elems, a.ArrayValue.GetValues()...)
		}
	outer:
		for _, e := range tt.AppendMissingElements.GetValues() {
			for _, have := range elems {
				if valuesEqual(have, e) {
					continue outer
				}
			}
			elems = append(elems, proto.Clone(e).(*pb.Value))
		}
		next = &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: elems}}}
	case *pb.DocumentTransform_FieldTransform_RemoveAllFromArray:
		var elems []*pb.Value
		if a, ok := cur.GetValueType().(*pb.Value_ArrayValue); ok {
		next:
			for _, have := range a.ArrayValue.GetValues() {
				for _, r := range tt.RemoveAllFromArray.GetValues() {
					if valuesEqual(have, r) {
						continue next
					}
				}
				elems = append(elems, have)
			}
		}
		next = &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: elems}}}
	default:
		return nil, grpcstatus.Error(codes.InvalidArgument, "field transform has no transform type")
	}
	setField(fields, path, next)
	switch ft.GetTransformType().(type) {
	case *pb.DocumentTransform_FieldTransform_AppendMissingElements, *pb.DocumentTransform_FieldTransform_RemoveAllFromArray:
		return nullValue(), nil
	}
	return proto.Clone(next).(*pb.Value), nil
}

// increment follows Firestore: a non-numeric or missing field takes the
// operand; int+int stays an integer and saturates on overflow; anything
// involving a double is a double.
func increment(cur, by *pb.Value) *pb.Value {
	if !isNumber(cur) {
		return proto.Clone(by).(*pb.Value)
	}
	ci, cInt := cur.ValueType.(*pb.Value_IntegerValue)
	bi, bInt := by.ValueType.(*pb.Value_IntegerValue)
	if cInt && bInt {
		a, b := ci.IntegerValue, bi.IntegerValue
		sum := a + b
		switch {
		case a > 0 && b > 0 && sum < 0:
			sum = math.MaxInt64
		case a < 0 && b < 0 && sum >= 0:
			sum = math.MinInt64
		}
		return intValue(sum)
	}
	return doubleValue(asFloat(cur) + asFloat(by))
}

// extremum implements maximum (sign 1) and minimum (sign -1): a non-numeric
// field takes the operand, NaN wins, and equal values keep the stored one.
func extremum(cur, operand *pb.Value, sign int) *pb.Value {
	if !isNumber(cur) {
		return proto.Clone(operand).(*pb.Value)
	}
	if typeRank(cur) == rankNaN {
		return cur
	}
	if typeRank(operand) == rankNaN {
		return proto.Clone(operand).(*pb.Value)
	}
	if compareNumbers(operand, cur)*sign > 0 {
		return proto.Clone(operand).(*pb.Value)
	}
	return cur
}
