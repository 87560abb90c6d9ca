package firestoreemu

import (
	"container/heap"
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const nameField = "__name__"

type orderKey struct {
	path []string // nil for __name__
	desc bool
}

// compiledQuery holds a query's effective ordering: the explicit order by,
// then the implicit inequality fields and __name__.
type compiledQuery struct {
	order []orderKey
}

func fieldOf(d *pb.Document, path []string) (*pb.Value, bool) {
	if path == nil {
		return &pb.Value{ValueType: &pb.Value_ReferenceValue{ReferenceValue: d.Name}}, true
	}
	return getField(d.Fields, path)
}

func refPath(ref *pb.StructuredQuery_FieldReference) ([]string, error) {
	if ref.GetFieldPath() == nameField {
		return nil, nil
	}
	p, err := parseFieldPath(ref.GetFieldPath())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "field reference: %v", err)
	}
	return p, nil
}

// inequalityFields lists the fields with inequality filters, which Firestore
// orders by implicitly.
func inequalityFields(f *pb.StructuredQuery_Filter, out map[string]bool) {
	switch ft := f.GetFilterType().(type) {
	case *pb.StructuredQuery_Filter_CompositeFilter:
		for _, sub := range ft.CompositeFilter.GetFilters() {
			inequalityFields(sub, out)
		}
	case *pb.StructuredQuery_Filter_FieldFilter:
		switch ft.FieldFilter.GetOp() {
		case pb.StructuredQuery_FieldFilter_LESS_THAN, pb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL,
			pb.StructuredQuery_FieldFilter_GREATER_THAN, pb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL,
			pb.StructuredQuery_FieldFilter_NOT_EQUAL, pb.StructuredQuery_FieldFilter_NOT_IN:
			out[ft.FieldFilter.GetField().GetFieldPath()] = true
		}
	case *pb.StructuredQuery_Filter_UnaryFilter:
		switch ft.UnaryFilter.GetOp() {
		case pb.StructuredQuery_UnaryFilter_IS_NOT_NAN, pb.StructuredQuery_UnaryFilter_IS_NOT_NULL:
			out[ft.UnaryFilter.GetField().GetFieldPath()] = true
		}
	}
}

func compileQuery(q *pb.StructuredQuery) (*compiledQuery, error) {
	if len(q.GetFrom()) != 1 {
		return nil, status.Error(codes.InvalidArgument, "a query must select exactly one collection")
	}
	if q.GetFindNearest() != nil {
		return nil, status.Error(codes.Unimplemented, "vector search (find_nearest) is not emulated")
	}
	cq := &compiledQuery{}
	seen := map[string]bool{}
	desc := false
	for _, o := range q.GetOrderBy() {
		p, err := refPath(o.GetField())
		if err != nil {
			return nil, err
		}
		desc = o.GetDirection() == pb.StructuredQuery_DESCENDING
		cq.order = append(cq.order, orderKey{path: p, desc: desc})
		seen[o.GetField().GetFieldPath()] = true
	}
	ineq := map[string]bool{}
	if q.GetWhere() != nil {
		inequalityFields(q.GetWhere(), ineq)
	}
	var extra []string
	for f := range ineq {
		if !seen[f] && f != nameField {
			extra = append(extra, f)
		}
	}
	sort.Strings(extra)
	for _, f := range extra {
		p, err := parseFieldPath(f)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "filter: %v", err)
		}
		cq.order = append(cq.order, orderKey{path: p, desc: desc})
	}
	if !seen[nameField] {
		cq.order = append(cq.order, orderKey{desc: desc})
	}
	return cq, nil
}

// compareCursor compares a document with a cursor position over the
// cursor's values (a prefix of the ordering).
func (cq *compiledQuery) compareCursor(d *pb.Document, cur *pb.Cursor) int {
	for i, v := range cur.GetValues() {
		k := cq.order[i]
		var c int
		if k.path == nil {
			c = compareValues(&pb.Value{ValueType: &pb.Value_ReferenceValue{ReferenceValue: d.Name}}, v)
		} else {
			dv, _ := getField(d.Fields, k.path)
			c = compareValues(dv, v)
		}
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// candidates returns the entries a query's collection selector can match.
func (db *database) candidates(parent string, sel *pb.StructuredQuery_CollectionSelector) []*docEntry {
	var out []*docEntry
	if !sel.GetAllDescendants() {
		for _, e := range db.colls[parent+"/"+sel.GetCollectionId()] {
			out = append(out, e)
		}
		return out
	}
	prefix := parent + "/"
	if sel.GetCollectionId() == "" {
		for name, e := range db.docs {
			if strings.HasPrefix(name, prefix) {
				out = append(out, e)
			}
		}
		return out
	}
	for name, e := range db.collIDs[sel.GetCollectionId()] {
		if strings.HasPrefix(name, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// execQuery runs a query at time at (zero = latest) and returns whole
// documents in result order. db.mu must be held.
func (s *Server) execQuery(db *database, parent string, q *pb.StructuredQuery, at time.Time) ([]*pb.Document, error) {
	if err := checkParent(db, parent); err != nil {
		return nil, err
	}
	cq, err := compileQuery(q)
	if err != nil {
		return nil, err
	}
	match := func(*pb.Document) bool { return true }
	if q.GetWhere() != nil {
		if match, err = compileFilter(q.GetWhere()); err != nil {
			return nil, err
		}
	}
	if err := s.checkIndex(db, q, cq); err != nil {
		return nil, err
	}
	// Each candidate's ordering values are extracted once; a document lacking
	// an ordered field is not in the result, as in Firestore's indexes.
	var rows []row
	for _, e := range db.candidates(parent, q.GetFrom()[0]) {
		d := e.at(at)
		if d == nil || !match(d) {
			continue
		}
		keys := make([]*pb.Value, len(cq.order))
		hasAll := true
		for i, k := range cq.order {
			if k.path == nil {
				continue
			}
			if keys[i], hasAll = getField(d.Fields, k.path); !hasAll {
				break
			}
		}
		if hasAll {
			rows = append(rows, row{doc: d, keys: keys})
		}
	}
	for _, c := range []*pb.Cursor{q.GetStartAt(), q.GetEndAt()} {
		if len(c.GetValues()) > len(cq.order) {
			return nil, status.Error(codes.InvalidArgument, "cursor has more values than the query has orderings")
		}
	}
	// Cursors are applied before sorting, so that a limit only has to
	// order the rows it keeps. A cursor's before flag means the position
	// sits just before the documents equal to its values, for start and end
	// cursors alike.
	kept := rows[:0]
	for _, r := range rows {
		if c := q.GetStartAt(); c != nil {
			if cmp := cq.compareCursor(r.doc, c); cmp < 0 || (cmp == 0 && !c.GetBefore()) {
				continue
			}
		}
		if c := q.GetEndAt(); c != nil {
			if cmp := cq.compareCursor(r.doc, c); cmp > 0 || (cmp == 0 && c.GetBefore()) {
				continue
			}
		}
		kept = append(kept, r)
	}
	rows = kept
	less := func(a, b *row) bool {
		for n, k := range cq.order {
			var c int
			if k.path == nil {
				c = compareNames(a.doc.Name, b.doc.Name)
			} else {
				c = compareValues(a.keys[n], b.keys[n])
			}
			if c != 0 {
				if k.desc {
					return c > 0
				}
				return c < 0
			}
		}
		return false
	}
	want := len(rows)
	if l := q.GetLimit(); l != nil {
		want = min(want, int(max(q.GetOffset(), 0))+int(max(l.GetValue(), 0)))
	}
	if want < len(rows)/2 {
		rows = smallest(rows, want, less)
	} else {
		sort.Slice(rows, func(i, j int) bool { return less(&rows[i], &rows[j]) })
		rows = rows[:want]
	}
	rows = rows[min(int(max(q.GetOffset(), 0)), len(rows)):]
	docs := make([]*pb.Document, len(rows))
	for i, r := range rows {
		docs[i] = r.doc
	}
	return docs, nil
}

// row is a query candidate with its ordering values.
type row struct {
	doc  *pb.Document
	keys []*pb.Value
}

// smallest returns the k least rows in order, in O(n log k), for queries
// whose limit keeps a small part of their matches.
func smallest(rows []row, k int, less func(a, b *row) bool) []row {
	if k == 0 {
		return nil
	}
	h := &rowHeap{less: less}
	for _, r := range rows {
		switch {
		case len(h.rows) < k:
			heap.Push(h, r)
		case less(&r, &h.rows[0]):
			h.rows[0] = r
			heap.Fix(h, 0)
		}
	}
	out := make([]row, len(h.rows))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(h).(row)
	}
	return out
}

// rowHeap is a max-heap under less: its root is the largest kept row.
type rowHeap struct {
	rows []row
	less func(a, b *row) bool
}

func (h *rowHeap) Len() int           { return len(h.rows) }
func (h *rowHeap) Less(i, j int) bool { return h.less(&h.rows[j], &h.rows[i]) }
func (h *rowHeap) Swap(i, j int)      { h.rows[i], h.rows[j] = h.rows[j], h.rows[i] }
func (h *rowHeap) Push(x any)         { h.rows = append(h.rows, x.(row)) }
func (h *rowHeap) Pop() any {
	r := h.rows[len(h.rows)-1]
	h.rows = h.rows[:len(h.rows)-1]
	return r
}

// predicate is a compiled filter.
type predicate func(d *pb.Document) bool

// compileFilter parses a filter's field paths once so that evaluating it
// over many documents does no parsing.
func compileFilter(f *pb.StructuredQuery_Filter) (predicate, error) {
	switch ft := f.GetFilterType().(type) {
	case *pb.StructuredQuery_Filter_CompositeFilter:
		and := ft.CompositeFilter.GetOp() != pb.StructuredQuery_CompositeFilter_OR
		var subs []predicate
		for _, sub := range ft.CompositeFilter.GetFilters() {
			p, err := compileFilter(sub)
			if err != nil {
				return nil, err
			}
			subs = append(subs, p)
		}
		return func(d *pb.Document) bool {
			for _, p := range subs {
				if p(d) != and {
					return !and
				}
			}
			return and
		}, nil
	case *pb.StructuredQuery_Filter_FieldFilter:
		return compileFieldFilter(ft.FieldFilter)
	case *pb.StructuredQuery_Filter_UnaryFilter:
		p, err := refPath(ft.UnaryFilter.GetField())
		if err != nil {
			return nil, err
		}
		var test func(isNaN, isNull bool) bool
		switch ft.UnaryFilter.GetOp() {
		case pb.StructuredQuery_UnaryFilter_IS_NAN:
			test = func(isNaN, _ bool) bool { return isNaN }
		case pb.StructuredQuery_UnaryFilter_IS_NULL:
			test = func(_, isNull bool) bool { return isNull }
		case pb.StructuredQuery_UnaryFilter_IS_NOT_NAN:
			test = func(isNaN, _ bool) bool { return !isNaN }
		case pb.StructuredQuery_UnaryFilter_IS_NOT_NULL:
			test = func(_, isNull bool) bool { return !isNull }
		default:
			return nil, status.Errorf(codes.InvalidArgument, "unsupported unary operator %v", ft.UnaryFilter.GetOp())
		}
		return func(d *pb.Document) bool {
			v, ok := fieldOf(d, p)
			return ok && test(typeRank(v) == rankNaN, typeRank(v) == rankNull)
		}, nil
	}
	return nil, status.Error(codes.InvalidArgument, "empty filter")
}

// comparisonClass puts NaN with the numbers: range filters only match
// values of the operand's type, and NaN is a number.
func comparisonClass(v *pb.Value) int {
	if r := typeRank(v); r != rankNaN {
		return r
	}
	return rankNumber
}

func containsValue(list []*pb.Value, v *pb.Value) bool {
	for _, e := range list {
		if valuesEqual(v, e) {
			return true
		}
	}
	return false
}

func compileFieldFilter(ff *pb.StructuredQuery_FieldFilter) (predicate, error) {
	p, err := refPath(ff.GetField())
	if err != nil {
		return nil, err
	}
	operand := ff.GetValue()
	op := ff.GetOp()
	var test func(v *pb.Value) bool
	switch op {
	case pb.StructuredQuery_FieldFilter_EQUAL:
		test = func(v *pb.Value) bool { return valuesEqual(v, operand) }
	case pb.StructuredQuery_FieldFilter_NOT_EQUAL:
		// Any other value matches, null and other types included; only a
		// missing field does not (as the Firebase SDKs' local matching does).
		test = func(v *pb.Value) bool { return !valuesEqual(v, operand) }
	case pb.StructuredQuery_FieldFilter_LESS_THAN, pb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL,
		pb.StructuredQuery_FieldFilter_GREATER_THAN, pb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL:
		test = func(v *pb.Value) bool {
			if comparisonClass(v) != comparisonClass(operand) {
				return false
			}
			c := compareValues(v, operand)
			switch op {
			case pb.StructuredQuery_FieldFilter_LESS_THAN:
				return c < 0
			case pb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL:
				return c <= 0
			case pb.StructuredQuery_FieldFilter_GREATER_THAN:
				return c > 0
			}
			return c >= 0
		}
	case pb.StructuredQuery_FieldFilter_IN, pb.StructuredQuery_FieldFilter_NOT_IN, pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY:
		arr, ok := operand.GetValueType().(*pb.Value_ArrayValue)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "%v requires an array value", op)
		}
		list := arr.ArrayValue.GetValues()
		switch op {
		case pb.StructuredQuery_FieldFilter_IN:
			test = func(v *pb.Value) bool { return containsValue(list, v) }
		case pb.StructuredQuery_FieldFilter_NOT_IN:
			// A list holding null matches nothing, as in the Firebase SDKs.
			hasNull := false
			for _, e := range list {
				hasNull = hasNull || typeRank(e) == rankNull
			}
			test = func(v *pb.Value) bool { return !hasNull && !containsValue(list, v) }
		default:
			test = func(v *pb.Value) bool {
				have, ok := v.GetValueType().(*pb.Value_ArrayValue)
				if !ok {
					return false
				}
				for _, e := range have.ArrayValue.GetValues() {
					if containsValue(list, e) {
						return true
					}
				}
				return false
			}
		}
	case pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS:
		test = func(v *pb.Value) bool {
			have, ok := v.GetValueType().(*pb.Value_ArrayValue)
			return ok && containsValue(have.ArrayValue.GetValues(), operand)
		}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unsupported field filter operator %v", op)
	}
	return func(d *pb.Document) bool {
		v, ok := fieldOf(d, p)
		return ok && test(v)
	}, nil
}

// runQuery resolves consistency, runs the query and, inside a read-write
// transaction, locks the result documents and records the query for
// phantom detection at commit. db.mu must be held.
func (s *Server) runQuery(ctx context.Context, db *database, parent string, q *pb.StructuredQuery, rv *readView) ([]*pb.Document, error) {
	if rv.t == nil {
		return s.execQuery(db, parent, q, rv.at)
	}
	for attempt := 0; ; attempt++ {
		docs, err := s.execQuery(db, parent, q, time.Time{})
		if err != nil {
			return nil, err
		}
		before := resultKey(docs)
		for _, d := range docs {
			if err := s.lockDoc(ctx, db, rv.t, d.Name); err != nil {
				return nil, err
			}
		}
		docs, err = s.execQuery(db, parent, q, time.Time{})
		if err != nil {
			return nil, err
		}
		key := resultKey(docs)
		if key == before || attempt == 3 {
			for _, d := range docs {
				rv.t.reads[d.Name] = updateTimeOf(d)
			}
			rv.t.queries = append(rv.t.queries, txnQuery{parent: parent, q: q, result: key})
			return docs, nil
		}
	}
}

func projection(q *pb.StructuredQuery) ([][]string, error) {
	if q.GetSelect() == nil {
		return nil, nil
	}
	paths := [][]string{}
	for _, f := range q.GetSelect().GetFields() {
		if f.GetFieldPath() == nameField {
			continue
		}
		p, err := parseFieldPath(f.GetFieldPath())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "projection: %v", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// RunQuery implements the Firestore RPC.
func (s *Server) RunQuery(req *pb.RunQueryRequest, stream pb.Firestore_RunQueryServer) error {
	db, err := s.database(req.GetParent())
	if err != nil {
		return err
	}
	q := req.GetStructuredQuery()
	if q == nil {
		return status.Error(codes.InvalidArgument, "structured_query is required")
	}
	if req.GetExplainOptions() != nil {
		return status.Error(codes.Unimplemented, "query explain is not emulated")
	}
	paths, err := projection(q)
	if err != nil {
		return err
	}
	db.mu.Lock()
	rv, err := s.openRead(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		db.mu.Unlock()
		return err
	}
	docs, err := s.runQuery(stream.Context(), db, req.GetParent(), q, rv)
	rt := s.timestamp(rv)
	db.mu.Unlock()
	if err != nil {
		return err
	}
	first := true
	send := func(r *pb.RunQueryResponse) error {
		r.ReadTime = rt
		if first {
			r.Transaction = rv.newTxn
			first = false
		}
		return stream.Send(r)
	}
	for _, d := range docs {
		if err := send(&pb.RunQueryResponse{Document: applyMask(d, paths)}); err != nil {
			return err
		}
	}
	return send(&pb.RunQueryResponse{ContinuationSelector: &pb.RunQueryResponse_Done{Done: true}})
}

// RunAggregationQuery implements the Firestore RPC: count, sum and avg over
// the nested query's results (after its limit and offset).
func (s *Server) RunAggregationQuery(req *pb.RunAggregationQueryRequest, stream pb.Firestore_RunAggregationQueryServer) error {
	db, err := s.database(req.GetParent())
	if err != nil {
		return err
	}
	aq := req.GetStructuredAggregationQuery()
	if aq.GetStructuredQuery() == nil {
		return status.Error(codes.InvalidArgument, "structured_aggregation_query.structured_query is required")
	}
	if req.GetExplainOptions() != nil {
		return status.Error(codes.Unimplemented, "query explain is not emulated")
	}
	db.mu.Lock()
	rv, err := s.openRead(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		db.mu.Unlock()
		return err
	}
	docs, err := s.runQuery(stream.Context(), db, req.GetParent(), aq.GetStructuredQuery(), rv)
	rt := s.timestamp(rv)
	db.mu.Unlock()
	if err != nil {
		return err
	}
	fields := map[string]*pb.Value{}
	for i, a := range aq.GetAggregations() {
		alias := a.GetAlias()
		if alias == "" {
			alias = "field_" + strconv.Itoa(i+1)
		}
		v, err := aggregate(docs, a)
		if err != nil {
			return err
		}
		fields[alias] = v
	}
	return stream.Send(&pb.RunAggregationQueryResponse{
		Result:      &pb.AggregationResult{AggregateFields: fields},
		Transaction: rv.newTxn,
		ReadTime:    rt,
	})
}

func aggregate(docs []*pb.Document, a *pb.StructuredAggregationQuery_Aggregation) (*pb.Value, error) {
	switch op := a.GetOperator().(type) {
	case *pb.StructuredAggregationQuery_Aggregation_Count_:
		n := int64(len(docs))
		if up := op.Count.GetUpTo(); up != nil && up.GetValue() < n {
			n = up.GetValue()
		}
		return intValue(n), nil
	case *pb.StructuredAggregationQuery_Aggregation_Sum_, *pb.StructuredAggregationQuery_Aggregation_Avg_:
		ref := a.GetSum().GetField()
		if ref == nil {
			ref = a.GetAvg().GetField()
		}
		p, err := refPath(ref)
		if err != nil {
			return nil, err
		}
		var isum int64
		var fsum float64
		allInt, overflow := true, false
		n := 0
		for _, d := range docs {
			v, ok := fieldOf(d, p)
			if !ok || !isNumber(v) {
				continue
			}
			n++
			fsum += asFloat(v)
			if i, ok := v.ValueType.(*pb.Value_IntegerValue); ok && !overflow {
				next := isum + i.IntegerValue
				if (i.IntegerValue > 0 && next < isum) || (i.IntegerValue < 0 && next > isum) {
					overflow = true
				}
				isum = next
			} else if !ok {
				allInt = false
			}
		}
		if _, isAvg := op.(*pb.StructuredAggregationQuery_Aggregation_Avg_); isAvg {
			if n == 0 {
				return nullValue(), nil
			}
			return doubleValue(fsum / float64(n)), nil
		}
		if allInt && !overflow {
			return intValue(isum), nil
		}
		return doubleValue(fsum), nil
	}
	return nil, status.Error(codes.InvalidArgument, "aggregation has no operator")
}
