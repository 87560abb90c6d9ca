package firestoreemu_test

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/type/latlng"
)

func ids(t *testing.T, q firestore.Query) []string {
	t.Helper()
	docs, err := q.Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	out := []string{}
	for _, d := range docs {
		out = append(out, d.Ref.ID)
	}
	return out
}

func seed(t *testing.T, c *firestore.Client, docs map[string]map[string]any) {
	t.Helper()
	b := c.BulkWriter(context.Background())
	for path, data := range docs {
		if _, err := b.Set(c.Doc(path), data); err != nil {
			t.Fatalf("seed %s: %v", path, err)
		}
	}
	b.End()
}

func TestQueryFilters(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	seed(t, c, map[string]map[string]any{
		"p/a": {"n": 1, "s": "x", "tags": []any{"red", "blue"}, "opt": nil},
		"p/b": {"n": 2.5, "s": "y", "tags": []any{"green"}},
		"p/c": {"n": 3, "s": "z", "tags": []any{}, "opt": "set"},
		"p/d": {"n": "three", "s": "x"},
		"p/e": {"n": math.NaN()},
		"p/f": {"other": true},
	})
	col := c.Collection("p")
	cases := []struct {
		name string
		q    firestore.Query
		want []string
	}{
		{"eq", col.Where("s", "==", "x"), []string{"a", "d"}},
		{"eq int matches double", col.Where("n", "==", 1.0), []string{"a"}},
		{"neq excludes missing", col.Where("s", "!=", "x"), []string{"b", "c"}},
		{"lt type-restricted", col.Where("n", "<", 3), []string{"e", "a", "b"}},
		{"lte", col.Where("n", "<=", 3), []string{"e", "a", "b", "c"}},
		{"gt", col.Where("n", ">", 1), []string{"b", "c"}},
		{"gte string", col.Where("n", ">=", "a"), []string{"d"}},
		{"in", col.Where("s", "in", []any{"y", "z"}), []string{"b", "c"}},
		{"not-in", col.Where("s", "not-in", []any{"y", "z"}), []string{"a", "d"}},
		{"array-contains", col.Where("tags", "array-contains", "blue"), []string{"a"}},
		{"array-contains-any", col.Where("tags", "array-contains-any", []any{"green", "red"}), []string{"a", "b"}},
		{"is null", col.Where("opt", "==", nil), []string{"a"}},
		{"is not null", col.Where("opt", "!=", nil), []string{"c"}},
		{"neq matches null", col.Where("opt", "!=", "set"), []string{"a"}},
		{"not-in matches null", col.Where("opt", "not-in", []any{"set"}), []string{"a"}},
		{"not-in with null matches nothing", col.Where("s", "not-in", []any{nil, "x"}), []string{}},
		{"is not nan", col.Where("n", "!=", math.NaN()), []string{"a", "b", "c", "d"}},
		{"is nan", col.Where("n", "==", math.NaN()), []string{"e"}},
		{"or", col.WhereEntity(firestore.OrFilter{Filters: []firestore.EntityFilter{
			firestore.PropertyFilter{Path: "s", Operator: "==", Value: "z"},
			firestore.PropertyFilter{Path: "other", Operator: "==", Value: true},
		}}), []string{"c", "f"}},
		{"and of or", col.WhereEntity(firestore.AndFilter{Filters: []firestore.EntityFilter{
			firestore.PropertyFilter{Path: "s", Operator: "==", Value: "x"},
			firestore.OrFilter{Filters: []firestore.EntityFilter{
				firestore.PropertyFilter{Path: "n", Operator: "==", Value: 1},
				firestore.PropertyFilter{Path: "n", Operator: "==", Value: 2},
			}},
		}}), []string{"a"}},
		{"name filter", col.Where(firestore.DocumentID, ">", c.Doc("p/d")), []string{"e", "f"}},
	}
	for _, tc := range cases {
		if got := ids(t, tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestQueryOrderingAcrossTypes(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// Firestore's documented order: null < bool < NaN < numbers < timestamp
	// < string < bytes < reference < geopoint < array < map.
	values := []any{
		nil, false, true, math.NaN(), math.Inf(-1), -5, 1.5, 2, ts, "", "a", "b",
		[]byte{0}, []byte{1}, c.Doc("a/b"), c.Doc("a/b/c/d"), c.Doc("b/a"),
		&latlng.LatLng{Latitude: 1, Longitude: 9}, &latlng.LatLng{Latitude: 2, Longitude: 0},
		[]any{1}, []any{1, 2}, []any{2}, map[string]any{"a": 1}, map[string]any{"a": 2}, map[string]any{"b": 0},
	}
	docs := map[string]map[string]any{}
	var want []string
	for i, v := range values {
		id := string(rune('z' - i))
		docs["o/"+id] = map[string]any{"v": v}
		want = append(want, id)
	}
	docs["o/nov"] = map[string]any{"w": 1}
	seed(t, c, docs)
	if got := ids(t, c.Collection("o").OrderBy("v", firestore.Asc)); !reflect.DeepEqual(got, want) {
		t.Errorf("ascending:\n got %v\nwant %v", got, want)
	}
	got := ids(t, c.Collection("o").OrderBy("v", firestore.Desc))
	for i := range got {
		if got[i] != want[len(want)-1-i] {
			t.Fatalf("descending:\n got %v\nwant reverse of %v", got, want)
		}
	}
}

func TestQueryOrderLimitOffsetCursors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	docs := map[string]map[string]any{}
	for i, id := range []string{"a", "b", "c", "d", "e", "f"} {
		docs["r/"+id] = map[string]any{"n": i / 2, "k": 10 - i}
	}
	seed(t, c, docs)
	col := c.Collection("r")
	// n: a0 b0 c1 d1 e2 f2; k: a10 b9 c8 d7 e6 f5
	check := func(name string, q firestore.Query, want ...string) {
		t.Helper()
		if got := ids(t, q); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	check("implicit order by inequality field then name", col.Where("k", "<", 9), "f", "e", "d", "c")
	check("desc then implicit name desc", col.OrderBy("n", firestore.Desc), "f", "e", "d", "c", "b", "a")
	check("limit offset", col.OrderBy("k", firestore.Asc).Offset(1).Limit(2), "e", "d")
	check("limit to last", col.OrderBy("k", firestore.Asc).LimitToLast(2), "b", "a")
	check("start at", col.OrderBy("n", firestore.Asc).StartAt(1), "c", "d", "e", "f")
	check("start after", col.OrderBy("n", firestore.Asc).StartAfter(1), "e", "f")
	check("end at", col.OrderBy("n", firestore.Asc).EndAt(1), "a", "b", "c", "d")
	check("end before", col.OrderBy("n", firestore.Asc).EndBefore(1), "a", "b")
	check("two-field cursor", col.OrderBy("n", firestore.Asc).OrderBy("k", firestore.Asc).StartAfter(1, 7), "c", "f", "e")
	snap, err := c.Doc("r/c").Get(ctx)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	check("snapshot cursor breaks ties by name", col.OrderBy("n", firestore.Asc).StartAfter(snap), "d", "e", "f")
	check("page by name", col.OrderBy(firestore.DocumentID, firestore.Asc).StartAfter("d").Limit(1), "e")

	// Limits that keep a small part of many matches (selected, not sorted).
	many := map[string]map[string]any{}
	for i := range 40 {
		many[fmt.Sprintf("big/%02d", i)] = map[string]any{"v": (i * 17) % 40, "odd": i % 2}
	}
	seed(t, c, many)
	big := c.Collection("big")
	check("top of many", big.OrderBy("v", firestore.Desc).Offset(2).Limit(3), "21", "28", "35")
	check("top of many with filter and cursor", big.Where("odd", "==", 1).OrderBy("v", firestore.Asc).StartAfter(3).Limit(2), "05", "31")
	check("last of many", big.OrderBy("v", firestore.Asc).LimitToLast(2), "14", "07")

	proj, err := col.Select("k").Where("n", "==", 2).Documents(ctx).GetAll()
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	if len(proj) != 2 || !reflect.DeepEqual(proj[0].Data(), map[string]any{"k": int64(6)}) {
		t.Errorf("projection: %v", proj[0].Data())
	}
}

func TestCollectionGroupAndListing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	seed(t, c, map[string]map[string]any{
		"leasecompany/L1/enquiries/E1/whatsapp/messages/chatMessages/m1": {"status": "queued"},
		"leasecompany/L1/enquiries/E2/whatsapp/messages/chatMessages/m2": {"status": "sent"},
		"leasecompany/L2/enquiries/E3/whatsapp/messages/chatMessages/m3": {"status": "queued"},
		"chatMessages/top":     {"status": "queued"},
		"leasecompany/L1":      {"name": "one"},
		"leasecompany/L1/x/y":  {"a": 1},
		"leasecompany/L3/z/zz": {"a": 1},
	})
	got := ids(t, c.CollectionGroup("chatMessages").Where("status", "==", "queued"))
	if want := []string{"top", "m1", "m3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("collection group: got %v, want %v", got, want)
	}
	refs, err := c.Collection("leasecompany").DocumentRefs(ctx).GetAll()
	if err != nil {
		t.Fatalf("document refs: %v", err)
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.ID)
	}
	if want := []string{"L1", "L2", "L3"}; !reflect.DeepEqual(names, want) {
		t.Errorf("document refs (with missing parents): %v, want %v", names, want)
	}
	collIDs := func(it *firestore.CollectionIterator) []string {
		var out []string
		for {
			cr, err := it.Next()
			if err == iterator.Done {
				return out
			}
			if err != nil {
				t.Fatalf("collections: %v", err)
			}
			out = append(out, cr.ID)
		}
	}
	if got, want := collIDs(c.Collections(ctx)), []string{"chatMessages", "leasecompany"}; !reflect.DeepEqual(got, want) {
		t.Errorf("root collections %v, want %v", got, want)
	}
	if got, want := collIDs(c.Doc("leasecompany/L1").Collections(ctx)), []string{"enquiries", "x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("L1 collections %v, want %v", got, want)
	}
}

func TestAggregations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	seed(t, c, map[string]map[string]any{
		"g/a": {"n": 1, "cat": "x"},
		"g/b": {"n": 2, "cat": "x"},
		"g/c": {"n": 4.5, "cat": "y"},
		"g/d": {"n": "not a number", "cat": "x"},
		"g/e": {"cat": "x"},
	})
	res, err := c.Collection("g").NewAggregationQuery().WithCount("c").WithSum("n", "s").WithAvg("n", "a").Get(ctx)
	if err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	val := func(k string) *pb.Value { return res[k].(*pb.Value) }
	if val("c").GetIntegerValue() != 5 || val("s").GetDoubleValue() != 7.5 || val("a").GetDoubleValue() != 2.5 {
		t.Errorf("count %v sum %v avg %v, want 5, 7.5, 2.5", val("c"), val("s"), val("a"))
	}
	qx := c.Collection("g").Where("cat", "==", "x")
	res, err = qx.NewAggregationQuery().WithSum("n", "s").WithAvg("missing", "a").WithCount("c").Get(ctx)
	if err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	if val("s").GetIntegerValue() != 3 || val("c").GetIntegerValue() != 4 {
		t.Errorf("integer sum %v count %v, want 3, 4", val("s"), val("c"))
	}
	if _, isNull := val("a").GetValueType().(*pb.Value_NullValue); !isNull {
		t.Errorf("avg over no numbers = %v, want null", val("a"))
	}
	ql := c.Collection("g").OrderBy("n", firestore.Asc).Limit(2)
	res, err = ql.NewAggregationQuery().WithCount("c").WithSum("n", "s").Get(ctx)
	if err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	if val("c").GetIntegerValue() != 2 || val("s").GetIntegerValue() != 3 {
		t.Errorf("limited: count %v sum %v, want 2, 3", val("c"), val("s"))
	}
}
