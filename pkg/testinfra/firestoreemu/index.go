package firestoreemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// IndexConfig is one database's composite indexes in the Firebase CLI's
// firestore.indexes.json format.
type IndexConfig struct {
	Indexes []Index `json:"indexes"`
}

// Index is a composite index.
type Index struct {
	CollectionGroup string       `json:"collectionGroup"`
	QueryScope      string       `json:"queryScope,omitempty"` // COLLECTION (default) or COLLECTION_GROUP
	Fields          []IndexField `json:"fields"`
}

// IndexField is one field of a composite index: ordered, or indexed for
// array-contains filters.
type IndexField struct {
	FieldPath   string `json:"fieldPath"`
	Order       string `json:"order,omitempty"`       // ASCENDING or DESCENDING
	ArrayConfig string `json:"arrayConfig,omitempty"` // CONTAINS
}

const (
	scopeCollection      = "COLLECTION"
	scopeCollectionGroup = "COLLECTION_GROUP"
)

// indexFile accepts the empty fieldOverrides list that the Firebase CLI
// writes by default: it declares nothing the emulator would ignore.
type indexFile struct {
	IndexConfig
	FieldOverrides []json.RawMessage `json:"fieldOverrides"`
}

// ParseIndexConfig reads a firestore.indexes.json file. Anything the
// emulator would not act on is an error rather than silently ignored, so
// that a checked database never accepts a query Firestore would refuse
// because of a setting the emulator skipped.
func ParseIndexConfig(data []byte) (*IndexConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f indexFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse index configuration: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse index configuration: data after the JSON object")
	}
	if len(f.FieldOverrides) > 0 {
		return nil, errors.New("parse index configuration: fieldOverrides (single-field index settings) is not read by the emulator; declare composite indexes under \"indexes\"")
	}
	if _, err := f.IndexConfig.compile(); err != nil {
		return nil, err
	}
	return &f.IndexConfig, nil
}

// indexedField is an index field, or what a query needs of one, with its
// path in canonical form.
type indexedField struct {
	path     string
	contains bool // array-contains entry rather than an ordered one
	desc     bool
}

func (f indexedField) String() string {
	switch {
	case f.contains:
		return f.path + " CONTAINS"
	case f.desc:
		return f.path + " DESCENDING"
	}
	return f.path + " ASCENDING"
}

type compiledIndex struct {
	collection string
	group      bool
	fields     []indexedField // without a trailing __name__
}

// compile validates the configuration; a nil one declares no index.
func (c *IndexConfig) compile() ([]compiledIndex, error) {
	if c == nil {
		return nil, nil
	}
	out := make([]compiledIndex, 0, len(c.Indexes))
	for i, ix := range c.Indexes {
		ci, err := compileIndex(ix)
		if err != nil {
			return nil, fmt.Errorf("index %d (collection group %q): %w", i+1, ix.CollectionGroup, err)
		}
		out = append(out, ci)
	}
	return out, nil
}

func compileIndex(ix Index) (compiledIndex, error) {
	ci := compiledIndex{collection: ix.CollectionGroup}
	if ix.CollectionGroup == "" {
		return ci, errors.New("collectionGroup is required")
	}
	switch ix.QueryScope {
	case "", scopeCollection:
	case scopeCollectionGroup:
		ci.group = true
	default:
		return ci, fmt.Errorf("queryScope %q: want COLLECTION or COLLECTION_GROUP", ix.QueryScope)
	}
	for j, f := range ix.Fields {
		p, err := parseFieldPath(f.FieldPath)
		if err != nil {
			return ci, fmt.Errorf("field %d: %w", j+1, err)
		}
		fld := indexedField{path: formatFieldPath(p)}
		switch {
		case f.Order != "" && f.ArrayConfig != "":
			return ci, fmt.Errorf("field %d (%s): order and arrayConfig exclude each other", j+1, fld.path)
		case f.Order == "DESCENDING":
			fld.desc = true
		case f.Order == "ASCENDING":
		case f.Order != "":
			return ci, fmt.Errorf("field %d (%s): order %q: want ASCENDING or DESCENDING", j+1, fld.path, f.Order)
		case f.ArrayConfig == "CONTAINS":
			fld.contains = true
		case f.ArrayConfig != "":
			return ci, fmt.Errorf("field %d (%s): arrayConfig %q: want CONTAINS", j+1, fld.path, f.ArrayConfig)
		default:
			return ci, fmt.Errorf("field %d (%s): needs an order or an arrayConfig", j+1, fld.path)
		}
		ci.fields = append(ci.fields, fld)
	}
	if n := len(ci.fields); n > 0 && ci.fields[n-1].path == nameField {
		ci.fields = ci.fields[:n-1]
	}
	if len(ci.fields) < 2 {
		return ci, fmt.Errorf("fields: %d besides a trailing __name__, where a composite index has at least 2", len(ci.fields))
	}
	return ci, nil
}

// indexNeed is what an index must provide to serve a query.
type indexNeed struct {
	collection string
	group      bool
	filtered   []indexedField // equality and array-contains fields, in filter order
	order      []indexedField
}

// needOf derives a query's index needs from its filters and its compiled
// ordering.
func needOf(q *pb.StructuredQuery, cq *compiledQuery) (*indexNeed, error) {
	sel := q.GetFrom()[0]
	n := &indexNeed{collection: sel.GetCollectionId(), group: sel.GetAllDescendants()}
	if q.GetWhere() != nil {
		if err := n.addFilters(q.GetWhere()); err != nil {
			return nil, err
		}
	}
	for _, k := range cq.order {
		if k.path == nil {
			continue
		}
		f := indexedField{path: formatFieldPath(k.path), desc: k.desc}
		if !slices.Contains(n.filtered, indexedField{path: f.path}) {
			n.order = append(n.order, f)
		}
	}
	return n, nil
}

// addFilters counts the filters under an OR like those under an AND, which
// can only ask for a larger index than Firestore, which serves each
// disjunction separately.
func (n *indexNeed) addFilters(f *pb.StructuredQuery_Filter) error {
	var ref *pb.StructuredQuery_FieldReference
	contains := false
	switch ft := f.GetFilterType().(type) {
	case *pb.StructuredQuery_Filter_CompositeFilter:
		for _, sub := range ft.CompositeFilter.GetFilters() {
			if err := n.addFilters(sub); err != nil {
				return err
			}
		}
		return nil
	case *pb.StructuredQuery_Filter_FieldFilter:
		switch ft.FieldFilter.GetOp() {
		case pb.StructuredQuery_FieldFilter_EQUAL, pb.StructuredQuery_FieldFilter_IN:
		case pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS, pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY:
			contains = true
		default:
			return nil
		}
		ref = ft.FieldFilter.GetField()
	case *pb.StructuredQuery_Filter_UnaryFilter:
		switch ft.UnaryFilter.GetOp() {
		case pb.StructuredQuery_UnaryFilter_IS_NULL, pb.StructuredQuery_UnaryFilter_IS_NAN:
		default:
			return nil
		}
		ref = ft.UnaryFilter.GetField()
	default:
		return nil
	}
	p, err := refPath(ref)
	if err != nil || p == nil {
		return err
	}
	if f := (indexedField{path: formatFieldPath(p), contains: contains}); !slices.Contains(n.filtered, f) {
		n.filtered = append(n.filtered, f)
	}
	return nil
}

// automatic reports whether Firestore's automatic single-field indexes
// serve the query: in collection scope, it merges them for equality and
// array-contains filters, and orders by one field with them; in
// collection-group scope it keeps none but the one on __name__.
func (n *indexNeed) automatic() bool {
	if n.group {
		return len(n.filtered) == 0 && len(n.order) == 0
	}
	return len(n.order) == 0 || (len(n.order) == 1 && len(n.filtered) == 0)
}

// serves reports whether the index starts with the equality and
// array-contains fields, in any order, and continues with exactly the
// ordering, scanned forwards or backwards.
func (ix *compiledIndex) serves(n *indexNeed) bool {
	if ix.collection != n.collection || ix.group != n.group || len(ix.fields) != len(n.filtered)+len(n.order) {
		return false
	}
	// n.filtered has no duplicates, so finding each of them in a head of
	// the same length makes the head a permutation of them.
	head, tail := ix.fields[:len(n.filtered)], ix.fields[len(n.filtered):]
	for _, want := range n.filtered {
		if !slices.ContainsFunc(head, func(f indexedField) bool { return f.path == want.path && f.contains == want.contains }) {
			return false
		}
	}
	reversed := len(tail) > 0 && tail[0].desc != n.order[0].desc
	for i, want := range n.order {
		if tail[i].contains || tail[i].path != want.path || (tail[i].desc != want.desc) != reversed {
			return false
		}
	}
	return true
}

// refusal is Firestore's answer to a query without an index, naming the
// index to declare.
func (n *indexNeed) refusal(database string) error {
	scope := scopeCollection
	if n.group {
		scope = scopeCollectionGroup
	}
	fields := make([]string, 0, len(n.filtered)+len(n.order))
	for _, f := range n.filtered {
		fields = append(fields, f.String())
	}
	for _, f := range n.order {
		fields = append(fields, f.String())
	}
	msg := fmt.Sprintf("The query requires an index: collection group %q (%s scope) on %s", n.collection, scope, strings.Join(fields, ", "))
	// Only collection-group queries get here with one field: collection
	// scope has automatic single-field indexes.
	if len(fields) == 1 {
		return status.Error(codes.FailedPrecondition, msg+"; a single-field collection-group index (fieldOverrides) is not read by the emulator: make the query one that a composite index serves")
	}
	return status.Errorf(codes.FailedPrecondition, "%s; declare it in the index configuration of database %q", msg, database)
}

// checkIndex refuses, in a database with an index configuration, a query
// that no index would serve, as Firestore does. It is the emulator's
// approximation of Firestore's index selection:
//
//   - A query needs its equality fields (==, in, is null, is NaN), its
//     array-contains fields (array-contains, array-contains-any) and its
//     ordering: the explicit order by, then the implicit inequality fields,
//     without __name__ and without the fields that have an equality
//     filter. Filters on __name__ need nothing.
//   - Automatic single-field indexes serve a collection query without
//     ordering, or with one ordering field and no equality or
//     array-contains filter, and a collection-group query without filters
//     or ordering.
//   - Otherwise a declared index must match: the same collection group and
//     scope, and its fields (without a trailing __name__) the equality and
//     array-contains fields in any order, then exactly the ordering fields,
//     with all directions as the query's or all reversed.
//
// Firestore may also serve a query by merging composite indexes; the
// emulator asks for the one index that serves it alone.
func (s *Server) checkIndex(db *database, q *pb.StructuredQuery, cq *compiledQuery) error {
	id := db.name[strings.LastIndexByte(db.name, '/')+1:]
	indexes, checked := s.indexes[id]
	if !checked {
		return nil
	}
	n, err := needOf(q, cq)
	if err != nil {
		return err
	}
	if n.automatic() {
		return nil
	}
	for i := range indexes {
		if indexes[i].serves(n) {
			return nil
		}
	}
	return n.refusal(id)
}

// compileIndexes validates Options.Indexes.
func compileIndexes(configs map[string]*IndexConfig) (map[string][]compiledIndex, error) {
	out := make(map[string][]compiledIndex, len(configs))
	for id, c := range configs {
		if id == "" || strings.Contains(id, "/") {
			return nil, fmt.Errorf("indexes of database %q: want a database id such as (default)", id)
		}
		ixs, err := c.compile()
		if err != nil {
			return nil, fmt.Errorf("indexes of database %q: %w", id, err)
		}
		out[id] = ixs
	}
	return out, nil
}
