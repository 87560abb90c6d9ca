package firestoreemu_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// declaredIndexes serves the refused queries of TestIndexRefusal that
// TestIndexDeclared expects to pass; the dispatch ones are the recorder's.
const declaredIndexes = `{
  "indexes": [
    {"collectionGroup": "p", "fields": [
      {"fieldPath": "status", "order": "ASCENDING"},
      {"fieldPath": "at", "order": "DESCENDING"},
      {"fieldPath": "__name__", "order": "DESCENDING"}]},
    {"collectionGroup": "p", "queryScope": "COLLECTION", "fields": [
      {"fieldPath": "a", "order": "ASCENDING"},
      {"fieldPath": "b", "order": "DESCENDING"}]},
    {"collectionGroup": "p", "fields": [
      {"fieldPath": "tags", "arrayConfig": "CONTAINS"},
      {"fieldPath": "n", "order": "ASCENDING"}]},
    {"collectionGroup": "dispatch", "queryScope": "COLLECTION_GROUP", "fields": [
      {"fieldPath": "status", "order": "ASCENDING"},
      {"fieldPath": "leaseExpiresAt", "order": "ASCENDING"}]},
    {"collectionGroup": "dispatch", "queryScope": "COLLECTION_GROUP", "fields": [
      {"fieldPath": "driverMobileNumber", "order": "ASCENDING"},
      {"fieldPath": "enquiryId", "order": "ASCENDING"}]}
  ],
  "fieldOverrides": []
}`

func seedIndexed(t *testing.T, c *firestore.Client) {
	t.Helper()
	seed(t, c, map[string]map[string]any{
		"p/a":             {"status": "x", "at": 1, "n": 1, "a": 1, "b": 1, "tags": []any{"red"}, "opt": nil},
		"p/b":             {"status": "x", "at": 2, "n": 2, "a": 1, "b": 2, "tags": []any{"red", "blue"}},
		"p/c":             {"status": "y", "at": 3, "n": 3, "a": 2, "b": 1, "tags": []any{"blue"}},
		"m/1/dispatch/s1": {"status": "SENDING", "leaseExpiresAt": 5, "driverMobileNumber": "+1", "enquiryId": "E1"},
		"m/2/dispatch/s2": {"status": "SENT", "leaseExpiresAt": 1, "driverMobileNumber": "+1", "enquiryId": "E2"},
	})
}

func runIDs(q firestore.Query) ([]string, error) {
	docs, err := q.Documents(context.Background()).GetAll()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, d := range docs {
		out = append(out, d.Ref.ID)
	}
	return out, nil
}

// wantIndexRefusal checks Firestore's answer to a query without an index.
func wantIndexRefusal(t *testing.T, err error, msg string) {
	t.Helper()
	if status.Code(err) != codes.FailedPrecondition || !strings.HasPrefix(status.Convert(err).Message(), "The query requires an index") ||
		!strings.Contains(err.Error(), msg) {
		t.Fatalf("got error %v, want FailedPrecondition requiring an index, with %q", err, msg)
	}
}

func TestIndexAutomaticQueriesNeedNoConfig(t *testing.T) {
	t.Parallel()
	// A nil configuration still checks, against the automatic indexes.
	srv := newServer(t, firestoreemu.Options{Indexes: map[string]*firestoreemu.IndexConfig{"(default)": nil}})
	c := newClient(t, srv, "(default)")
	seedIndexed(t, c)
	p := c.Collection("p")
	cases := []struct {
		name string
		q    firestore.Query
		want []string
	}{
		{"equalities merged", p.Where("status", "==", "x").Where("n", "==", 2), []string{"b"}},
		{"equality and array-contains", p.Where("tags", "array-contains", "blue").Where("status", "==", "x"), []string{"b"}},
		{"in and is null", p.Where("status", "in", []any{"x", "y"}).Where("opt", "==", nil), []string{"a"}},
		{"order by one field", p.OrderBy("at", firestore.Desc), []string{"c", "b", "a"}},
		{"inequality", p.Where("at", ">", 1), []string{"b", "c"}},
		{"inequality and its order by", p.Where("at", ">", 1).OrderBy("at", firestore.Desc), []string{"c", "b"}},
		{"order by an equality field", p.Where("status", "==", "x").OrderBy("status", firestore.Asc), []string{"a", "b"}},
		{"equality and name order", p.Where("status", "==", "x").OrderBy(firestore.DocumentID, firestore.Desc), []string{"b", "a"}},
		{"equality and name range", p.Where("status", "==", "x").Where(firestore.DocumentID, ">", c.Doc("p/a")), []string{"b"}},
		{"collection group", c.CollectionGroup("dispatch").Query, []string{"s1", "s2"}},
		{"collection group by name", c.CollectionGroup("dispatch").OrderBy(firestore.DocumentID, firestore.Desc), []string{"s2", "s1"}},
	}
	for _, tc := range cases {
		got, err := runIDs(tc.q)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIndexRefusal(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := newServer(t, firestoreemu.Options{Indexes: map[string]*firestoreemu.IndexConfig{"(default)": {}}})
	c := newClient(t, srv, "(default)")
	unchecked := newClient(t, srv, "ancillary")
	seedIndexed(t, c)
	seedIndexed(t, unchecked)
	const declare = `; declare it in the index configuration of database "(default)"`
	for _, cl := range []*firestore.Client{c, unchecked} {
		p, dispatch := cl.Collection("p"), cl.CollectionGroup("dispatch")
		cases := []struct {
			name string
			q    firestore.Query
			msg  string
		}{
			{"equality and order", p.Where("status", "==", "x").OrderBy("at", firestore.Desc),
				`collection group "p" (COLLECTION scope) on status ASCENDING, at DESCENDING` + declare},
			{"equality and inequality", p.Where("status", "==", "x").Where("at", ">", 0),
				`on status ASCENDING, at ASCENDING` + declare},
			{"two orders", p.OrderBy("a", firestore.Asc).OrderBy("b", firestore.Desc), `on a ASCENDING, b DESCENDING`},
			{"two inequalities", p.Where("b", "<", 9).Where("a", ">", 0), `on a ASCENDING, b ASCENDING`},
			{"array-contains and order", p.Where("tags", "array-contains-any", []any{"red"}).OrderBy("n", firestore.Asc), `on tags CONTAINS, n ASCENDING`},
			{"or", p.WhereEntity(firestore.OrFilter{Filters: []firestore.EntityFilter{
				firestore.PropertyFilter{Path: "status", Operator: "==", Value: "y"},
				firestore.PropertyFilter{Path: "n", Operator: "==", Value: 1},
			}}).OrderBy("at", firestore.Asc), `on status ASCENDING, n ASCENDING, at ASCENDING`},
			{"collection group equality", dispatch.Where("status", "==", "SENDING"),
				`collection group "dispatch" (COLLECTION_GROUP scope) on status ASCENDING; a single-field collection-group index (fieldOverrides) is not read`},
			{"collection group order", dispatch.OrderBy("leaseExpiresAt", firestore.Asc), `on leaseExpiresAt ASCENDING; a single-field`},
			{"collection group equalities", dispatch.Where("driverMobileNumber", "==", "+1").Where("enquiryId", "==", "E1"),
				`(COLLECTION_GROUP scope) on driverMobileNumber ASCENDING, enquiryId ASCENDING` + declare},
		}
		for _, tc := range cases {
			_, err := runIDs(tc.q)
			if cl == unchecked {
				if err != nil {
					t.Errorf("%s in an unchecked database: %v", tc.name, err)
				}
				continue
			}
			wantIndexRefusal(t, err, tc.msg)
		}
	}

	q := c.Collection("p").Where("status", "==", "x").OrderBy("at", firestore.Desc)
	_, err := q.NewAggregationQuery().WithCount("c").Get(ctx)
	wantIndexRefusal(t, err, "on status ASCENDING, at DESCENDING")
	err = c.RunTransaction(ctx, func(_ context.Context, tx *firestore.Transaction) error {
		_, err := tx.Documents(q).GetAll()
		return err
	})
	wantIndexRefusal(t, err, "on status ASCENDING, at DESCENDING")
	it := q.Snapshots(ctx)
	defer it.Stop()
	_, err = it.Next()
	wantIndexRefusal(t, err, "on status ASCENDING, at DESCENDING")
}

func TestIndexDeclared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t, firestoreemu.Options{Indexes: firestoreemu.IndexesForTest(t, "(default)", []byte(declaredIndexes))})
	c := newClient(t, srv, "(default)")
	seedIndexed(t, c)
	p, dispatch := c.Collection("p"), c.CollectionGroup("dispatch")
	served := []struct {
		name string
		q    firestore.Query
		want []string
	}{
		{"equality and order", p.Where("status", "==", "x").OrderBy("at", firestore.Desc), []string{"b", "a"}},
		{"reversed", p.Where("status", "==", "x").OrderBy("at", firestore.Asc), []string{"a", "b"}},
		{"equality and inequality, reversed", p.Where("status", "==", "x").Where("at", ">", 1), []string{"b"}},
		{"two orders", p.OrderBy("a", firestore.Asc).OrderBy("b", firestore.Desc), []string{"b", "a", "c"}},
		{"two orders reversed", p.OrderBy("a", firestore.Desc).OrderBy("b", firestore.Asc), []string{"c", "a", "b"}},
		{"array-contains and order", p.Where("tags", "array-contains", "red").OrderBy("n", firestore.Asc), []string{"a", "b"}},
		{"sweep", dispatch.Where("status", "==", "SENDING").Where("leaseExpiresAt", "<=", 10), []string{"s1"}},
		{"collection group equalities", dispatch.Where("driverMobileNumber", "==", "+1").Where("enquiryId", "==", "E2"), []string{"s2"}},
		{"collection group equalities swapped", dispatch.Where("enquiryId", "==", "E1").Where("driverMobileNumber", "==", "+1"), []string{"s1"}},
	}
	for _, tc := range served {
		got, err := runIDs(tc.q)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	counted := p.Where("status", "==", "x").OrderBy("at", firestore.Desc)
	res, err := counted.NewAggregationQuery().WithCount("c").Get(ctx)
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	if n := res["c"].(*pb.Value).GetIntegerValue(); n != 2 {
		t.Errorf("count = %d, want 2", n)
	}

	refused := []struct {
		name string
		q    firestore.Query
	}{
		{"directions mixed differently", p.OrderBy("a", firestore.Asc).OrderBy("b", firestore.Asc)},
		{"fields in another order", p.OrderBy("b", firestore.Desc).OrderBy("a", firestore.Asc)},
		{"an extra equality", p.Where("status", "==", "x").Where("n", "==", 1).OrderBy("at", firestore.Desc)},
		{"equality where the index orders", p.Where("tags", "==", []any{"red"}).OrderBy("n", firestore.Asc)},
		{"collection scope, collection-group index", c.Collection("dispatch").Where("status", "==", "SENDING").OrderBy("leaseExpiresAt", firestore.Asc)},
		{"collection-group scope, collection index", c.CollectionGroup("p").Where("status", "==", "x").OrderBy("at", firestore.Desc)},
	}
	for _, tc := range refused {
		_, err := runIDs(tc.q)
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("%s: got %v, want FailedPrecondition", tc.name, err)
		}
	}
}

func TestParseIndexConfig(t *testing.T) {
	t.Parallel()
	cfg, err := firestoreemu.ParseIndexConfig([]byte(declaredIndexes))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(cfg.Indexes) != 5 || cfg.Indexes[2].Fields[0] != (firestoreemu.IndexField{FieldPath: "tags", ArrayConfig: "CONTAINS"}) {
		t.Errorf("parsed %+v", cfg)
	}
	index := func(fields string) string {
		return `{"indexes": [{"collectionGroup": "p", "fields": [` + fields + `]}]}`
	}
	const a, b = `{"fieldPath": "a", "order": "ASCENDING"}`, `{"fieldPath": "b", "order": "ASCENDING"}`
	for _, tc := range []struct{ name, data, msg string }{
		{"unknown field", `{"indexes": [], "extra": 1}`, `unknown field "extra"`},
		{"unknown index field", `{"indexes": [{"collectionGroup": "p", "density": "SPARSE_ALL", "fields": [` + a + `,` + b + `]}]}`, `unknown field "density"`},
		{"field overrides", `{"indexes": [], "fieldOverrides": [{"collectionGroup": "dispatch", "fieldPath": "status", "indexes": []}]}`, "fieldOverrides"},
		{"trailing data", `{"indexes": []} {}`, "after the JSON object"},
		{"one field", index(a), "at least 2"},
		{"one field and __name__", index(a + `, {"fieldPath": "__name__", "order": "ASCENDING"}`), "at least 2"},
		{"bad order", index(a + `, {"fieldPath": "b", "order": "ASC"}`), `field 2 (b): order "ASC"`},
		{"order and arrayConfig", index(a + `, {"fieldPath": "b", "order": "ASCENDING", "arrayConfig": "CONTAINS"}`), "exclude each other"},
		{"neither", index(a + `, {"fieldPath": "b"}`), "needs an order or an arrayConfig"},
		{"bad arrayConfig", index(a + `, {"fieldPath": "b", "arrayConfig": "ANY"}`), `arrayConfig "ANY"`},
		{"bad field path", index(a + `, {"fieldPath": "b..c", "order": "ASCENDING"}`), "field 2"},
		{"no collection group", `{"indexes": [{"fields": [` + a + `,` + b + `]}]}`, "collectionGroup is required"},
		{"bad scope", `{"indexes": [{"collectionGroup": "p", "queryScope": "DATABASE", "fields": [` + a + `,` + b + `]}]}`, `queryScope "DATABASE"`},
	} {
		_, err := firestoreemu.ParseIndexConfig([]byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got error %v, want one with %q", tc.name, err, tc.msg)
		}
	}
}

func TestStartRejectsInvalidIndexes(t *testing.T) {
	t.Parallel()
	oneField := &firestoreemu.IndexConfig{Indexes: []firestoreemu.Index{{
		CollectionGroup: "p", Fields: []firestoreemu.IndexField{{FieldPath: "a", Order: "ASCENDING"}},
	}}}
	for _, indexes := range []map[string]*firestoreemu.IndexConfig{
		{"(default)": oneField},
		{"projects/p/databases/(default)": {}},
	} {
		if srv, err := firestoreemu.Start(context.Background(), firestoreemu.Options{Indexes: indexes}); err == nil {
			_ = srv.Close()
			t.Errorf("Start with indexes %v: no error", indexes)
		}
	}
}
