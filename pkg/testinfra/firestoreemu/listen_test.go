package firestoreemu_test

import (
	"context"
	"reflect"
	"sort"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
)

func TestDocumentSnapshots(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	doc := c.Doc("watch/d")
	it := doc.Snapshots(ctx)
	defer it.Stop()
	next := func() *firestore.DocumentSnapshot {
		t.Helper()
		s, err := it.Next()
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		return s
	}
	if s := next(); s.Exists() {
		t.Fatalf("initial snapshot exists: %v", s.Data())
	}
	if _, err := doc.Set(ctx, map[string]any{"v": 1}); err != nil {
		t.Fatal(err)
	}
	if s := next(); !s.Exists() || s.Data()["v"] != int64(1) {
		t.Fatalf("after create: %v", s.Data())
	}
	if _, err := c.Doc("watch/other").Set(ctx, map[string]any{"v": 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.Update(ctx, []firestore.Update{{Path: "v", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if s := next(); s.Data()["v"] != int64(2) {
		t.Fatalf("after update: %v", s.Data())
	}
	if _, err := doc.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if s := next(); s.Exists() {
		t.Fatalf("after delete: exists")
	}
}

type changeSummary struct {
	kind firestore.DocumentChangeKind
	id   string
}

func nextQuerySnapshot(t *testing.T, it *firestore.QuerySnapshotIterator) ([]string, []changeSummary) {
	t.Helper()
	qs, err := it.Next()
	if err != nil {
		t.Fatalf("query snapshot: %v", err)
	}
	docs, err := qs.Documents.GetAll()
	if err != nil {
		t.Fatalf("snapshot documents: %v", err)
	}
	var ids []string
	for _, d := range docs {
		ids = append(ids, d.Ref.ID)
	}
	var changes []changeSummary
	for _, ch := range qs.Changes {
		changes = append(changes, changeSummary{ch.Kind, ch.Doc.Ref.ID})
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].id < changes[j].id })
	return ids, changes
}

func TestQuerySnapshots(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	seed(t, c, map[string]map[string]any{
		"jobs/a": {"state": "open", "p": 1},
		"jobs/b": {"state": "done", "p": 2},
	})
	it := c.Collection("jobs").Where("state", "==", "open").OrderBy("p", firestore.Asc).Snapshots(ctx)
	defer it.Stop()
	ids, changes := nextQuerySnapshot(t, it)
	if !reflect.DeepEqual(ids, []string{"a"}) || !reflect.DeepEqual(changes, []changeSummary{{firestore.DocumentAdded, "a"}}) {
		t.Fatalf("initial: %v %v", ids, changes)
	}
	steps := []struct {
		write   func() error
		ids     []string
		changes []changeSummary
	}{
		{func() error { _, err := c.Doc("jobs/c").Set(ctx, map[string]any{"state": "open", "p": 0}); return err },
			[]string{"c", "a"}, []changeSummary{{firestore.DocumentAdded, "c"}}},
		{func() error {
			_, err := c.Doc("jobs/a").Update(ctx, []firestore.Update{{Path: "p", Value: 5}})
			return err
		}, []string{"c", "a"}, []changeSummary{{firestore.DocumentModified, "a"}}},
		{func() error {
			_, err := c.Doc("jobs/c").Update(ctx, []firestore.Update{{Path: "state", Value: "done"}})
			return err
		}, []string{"a"}, []changeSummary{{firestore.DocumentRemoved, "c"}}},
		{func() error { _, err := c.Doc("jobs/a").Delete(ctx); return err },
			nil, []changeSummary{{firestore.DocumentRemoved, "a"}}},
	}
	for i, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		ids, changes := nextQuerySnapshot(t, it)
		if !reflect.DeepEqual(ids, st.ids) || !reflect.DeepEqual(changes, st.changes) {
			t.Fatalf("step %d: ids %v changes %v, want %v %v", i, ids, changes, st.ids, st.changes)
		}
	}
}

func TestCollectionGroupSnapshotsWithLimit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := newServer(t)
	c := newClient(t, srv, "ancillary")
	seed(t, c, map[string]map[string]any{
		"a/1/msgs/m1": {"seq": 3},
		"b/2/msgs/m2": {"seq": 2},
	})
	it := c.CollectionGroup("msgs").OrderBy("seq", firestore.Asc).Limit(2).Snapshots(ctx)
	defer it.Stop()
	if ids, _ := nextQuerySnapshot(t, it); !reflect.DeepEqual(ids, []string{"m2", "m1"}) {
		t.Fatalf("initial %v", ids)
	}
	// A new first document pushes m1 out of the limit.
	if _, err := c.Doc("c/3/msgs/m3").Set(ctx, map[string]any{"seq": 1}); err != nil {
		t.Fatal(err)
	}
	ids, changes := nextQuerySnapshot(t, it)
	want := []changeSummary{{firestore.DocumentRemoved, "m1"}, {firestore.DocumentAdded, "m3"}}
	if !reflect.DeepEqual(ids, []string{"m3", "m2"}) || !reflect.DeepEqual(changes, want) {
		t.Fatalf("after insert: %v %v", ids, changes)
	}
	// Clearing the database through the admin API empties the view.
	srv.Reset()
	if ids, _ := nextQuerySnapshot(t, it); len(ids) != 0 {
		t.Fatalf("after reset: %v", ids)
	}
}

func TestListenResumeResetsTarget(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := newServer(t)
	raw := newRawClient(t, srv)
	c := newClient(t, srv, "(default)")
	if _, err := c.Doc("r/1").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	stream, err := raw.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&pb.ListenRequest{Database: dbPath("(default)"), TargetChange: &pb.ListenRequest_AddTarget{AddTarget: &pb.Target{
		TargetId:   7,
		TargetType: &pb.Target_Documents{Documents: &pb.Target_DocumentsTarget{Documents: []string{docPath("(default)", "r/1")}}},
		ResumeType: &pb.Target_ResumeToken{ResumeToken: []byte{0, 0, 0, 0, 0, 0, 0, 1}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for len(kinds) < 5 {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		switch x := r.ResponseType.(type) {
		case *pb.ListenResponse_TargetChange:
			kinds = append(kinds, x.TargetChange.TargetChangeType.String())
		case *pb.ListenResponse_DocumentChange:
			kinds = append(kinds, "DOC")
		}
	}
	if want := []string{"ADD", "RESET", "DOC", "CURRENT", "NO_CHANGE"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("responses %v, want %v", kinds, want)
	}
}
