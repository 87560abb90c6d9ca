package firestoreemu_test

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
)

func TestSetGetMergeUpdateDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	doc := c.Doc("users/alice")

	born := time.Date(1990, 5, 17, 8, 30, 0, 123456789, time.UTC)
	wr, err := doc.Set(ctx, map[string]any{"name": "Alice", "age": 30, "born": born, "address": map[string]any{"city": "Paris", "zip": "75001"}})
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !snap.UpdateTime.Equal(wr.UpdateTime) || !snap.CreateTime.Equal(wr.UpdateTime) {
		t.Errorf("times: create %v update %v, want both %v", snap.CreateTime, snap.UpdateTime, wr.UpdateTime)
	}
	if got := snap.Data()["name"]; got != "Alice" {
		t.Errorf("name = %v", got)
	}
	// Firestore keeps timestamps to the microsecond.
	if got := snap.Data()["born"]; got != born.Truncate(time.Microsecond) {
		t.Errorf("born = %v, want %v", got, born.Truncate(time.Microsecond))
	}

	if _, err := doc.Set(ctx, map[string]any{"address": map[string]any{"city": "Lyon"}, "vip": true}, firestore.MergeAll); err != nil {
		t.Fatalf("merge all: %v", err)
	}
	if _, err := doc.Set(ctx, map[string]any{"age": 31, "name": "ignored"}, firestore.Merge([]string{"age"})); err != nil {
		t.Fatalf("merge fields: %v", err)
	}
	if _, err := doc.Update(ctx, []firestore.Update{{Path: "address.zip", Value: firestore.Delete}, {Path: "tags", Value: []string{"a"}}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	snap, err = doc.Get(ctx)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	want := map[string]any{"name": "Alice", "age": int64(31), "vip": true, "born": born.Truncate(time.Microsecond), "address": map[string]any{"city": "Lyon"}, "tags": []any{"a"}}
	if !reflect.DeepEqual(snap.Data(), want) {
		t.Errorf("data = %v, want %v", snap.Data(), want)
	}
	if !snap.CreateTime.Equal(wr.UpdateTime) || !snap.UpdateTime.After(wr.UpdateTime) {
		t.Errorf("after updates: create %v update %v (first write %v)", snap.CreateTime, snap.UpdateTime, wr.UpdateTime)
	}

	if _, err := doc.Delete(ctx); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = doc.Get(ctx)
	wantCode(t, err, codes.NotFound)
	// Deleting a missing document succeeds, as in Firestore.
	if _, err := doc.Delete(ctx); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestPreconditionsAndAtomicCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	a, b := c.Doc("c/a"), c.Doc("c/b")
	wr, err := a.Create(ctx, map[string]any{"n": 1})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	_, err = a.Create(ctx, map[string]any{"n": 2})
	wantCode(t, err, codes.AlreadyExists)
	_, err = b.Update(ctx, []firestore.Update{{Path: "n", Value: 1}})
	wantCode(t, err, codes.NotFound)
	_, err = a.Update(ctx, []firestore.Update{{Path: "n", Value: 3}}, firestore.LastUpdateTime(wr.UpdateTime.Add(-time.Microsecond)))
	wantCode(t, err, codes.FailedPrecondition)
	_, err = a.Delete(ctx, firestore.LastUpdateTime(wr.UpdateTime.Add(time.Second)))
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := a.Update(ctx, []firestore.Update{{Path: "n", Value: 4}}, firestore.LastUpdateTime(wr.UpdateTime)); err != nil {
		t.Fatalf("update with matching update time: %v", err)
	}

	// The batch's last write fails its precondition: none of it applies.
	//lint:ignore SA1019 a WriteBatch is the client's only non-transactional multi-write Commit, whose atomicity is under test.
	batch := c.Batch()
	batch.Set(b, map[string]any{"n": 10})
	batch.Update(a, []firestore.Update{{Path: "n", Value: 11}})
	batch.Create(a, map[string]any{"n": 12})
	_, err = batch.Commit(ctx)
	wantCode(t, err, codes.AlreadyExists)
	if _, err := b.Get(ctx); err == nil {
		t.Errorf("c/b exists after a failed commit")
	}
	snap, err := a.Get(ctx)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if n := snap.Data()["n"]; n != int64(4) {
		t.Errorf("c/a n = %v after failed commit, want 4", n)
	}
}

func TestFieldTransforms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	doc := c.Doc("t/1")
	if _, err := doc.Set(ctx, map[string]any{"i": 5, "f": 1.5, "s": "text", "arr": []any{1, "x", 2.0}, "max": 3, "min": 3}); err != nil {
		t.Fatalf("set: %v", err)
	}
	wr, err := doc.Update(ctx, []firestore.Update{
		{Path: "i", Value: firestore.Increment(2)},
		{Path: "f", Value: firestore.Increment(1)},
		{Path: "s", Value: firestore.Increment(7)},
		{Path: "new", Value: firestore.Increment(1.25)},
		{Path: "arr", Value: firestore.ArrayUnion(2, "y", "y", 1.0)},
		{Path: "max", Value: firestore.FieldTransformMaximum(2.5)},
		{Path: "min", Value: firestore.FieldTransformMinimum(2.5)},
		{Path: "at", Value: firestore.ServerTimestamp},
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	d := snap.Data()
	checks := map[string]any{
		"i": int64(7), "f": 2.5, "s": int64(7), "new": 1.25,
		"arr": []any{int64(1), "x", 2.0, "y"}, "max": int64(3), "min": 2.5,
	}
	for k, want := range checks {
		if !reflect.DeepEqual(d[k], want) {
			t.Errorf("%s = %#v, want %#v", k, d[k], want)
		}
	}
	if at, _ := d["at"].(time.Time); !at.Equal(wr.UpdateTime) {
		t.Errorf("server timestamp %v, want commit time %v", d["at"], wr.UpdateTime)
	}
	if _, err := doc.Update(ctx, []firestore.Update{{Path: "arr", Value: firestore.ArrayRemove(1.0, "x", "absent")}, {Path: "s", Value: firestore.ArrayRemove("z")}}); err != nil {
		t.Fatalf("array remove: %v", err)
	}
	snap, err = doc.Get(ctx)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got := snap.Data()["arr"]; !reflect.DeepEqual(got, []any{2.0, "y"}) {
		t.Errorf("arr after remove = %#v", got)
	}
	if got := snap.Data()["s"]; !reflect.DeepEqual(got, []any{}) {
		t.Errorf("array remove on a non-array = %#v, want empty array", got)
	}
}

func TestTransformResultsAndIntegerSaturation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	raw := newRawClient(t, srv)
	name := docPath("(default)", "t/raw")
	commit := func(writes ...*pb.Write) *pb.CommitResponse {
		t.Helper()
		resp, err := raw.Commit(ctx, &pb.CommitRequest{Database: dbPath("(default)"), Writes: writes})
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
		return resp
	}
	upd := &pb.Write{Operation: &pb.Write_Update{Update: &pb.Document{Name: name, Fields: map[string]*pb.Value{
		"big": {ValueType: &pb.Value_IntegerValue{IntegerValue: math.MaxInt64 - 1}},
	}}}}
	first := commit(upd)
	resp := commit(&pb.Write{
		Operation:  &pb.Write_Update{Update: &pb.Document{Name: name}},
		UpdateMask: &pb.DocumentMask{},
		UpdateTransforms: []*pb.DocumentTransform_FieldTransform{
			{FieldPath: "big", TransformType: &pb.DocumentTransform_FieldTransform_Increment{Increment: &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: 10}}}},
			{FieldPath: "ts", TransformType: &pb.DocumentTransform_FieldTransform_SetToServerValue{SetToServerValue: pb.DocumentTransform_FieldTransform_REQUEST_TIME}},
		},
	})
	res := resp.WriteResults[0].TransformResults
	if len(res) != 2 || res[0].GetIntegerValue() != math.MaxInt64 {
		t.Fatalf("transform results %v, want saturated MaxInt64 first", res)
	}
	if !res[1].GetTimestampValue().AsTime().Equal(resp.CommitTime.AsTime()) {
		t.Errorf("server timestamp result %v, want commit time %v", res[1], resp.CommitTime)
	}
	// Rewriting identical content keeps the previous update time.
	again := commit(&pb.Write{Operation: &pb.Write_Update{Update: &pb.Document{Name: name, Fields: map[string]*pb.Value{
		"big": {ValueType: &pb.Value_IntegerValue{IntegerValue: math.MaxInt64}},
		"ts":  res[1],
	}}}})
	if !again.WriteResults[0].UpdateTime.AsTime().Equal(resp.CommitTime.AsTime()) {
		t.Errorf("no-op write update time %v, want previous %v", again.WriteResults[0].UpdateTime.AsTime(), resp.CommitTime.AsTime())
	}
	if !first.CommitTime.AsTime().Before(resp.CommitTime.AsTime()) {
		t.Errorf("commit times not increasing")
	}
}

func TestGetAllReportsMissingAndNamedDatabasesAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	def := newClient(t, srv, "(default)")
	anc := newClient(t, srv, "ancillary")
	if _, err := def.Doc("k/present").Set(ctx, map[string]any{"db": "default"}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := anc.Doc("k/other").Set(ctx, map[string]any{"db": "ancillary"}); err != nil {
		t.Fatalf("set: %v", err)
	}
	snaps, err := def.GetAll(ctx, []*firestore.DocumentRef{def.Doc("k/present"), def.Doc("k/missing"), def.Doc("k/other")})
	if err != nil {
		t.Fatalf("get all: %v", err)
	}
	if !snaps[0].Exists() || snaps[1].Exists() || snaps[2].Exists() {
		t.Errorf("exists = %v %v %v, want true false false", snaps[0].Exists(), snaps[1].Exists(), snaps[2].Exists())
	}
	if snaps[1].ReadTime.IsZero() {
		t.Errorf("missing document has no read time")
	}
	if _, err := anc.Doc("k/present").Get(ctx); err == nil {
		t.Errorf("ancillary sees a document of (default)")
	}
	snap, err := anc.Doc("k/other").Get(ctx)
	if err != nil || snap.Data()["db"] != "ancillary" {
		t.Errorf("ancillary document: %v %v", snap, err)
	}
}

func TestBulkWriterUsesBatchWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	if _, err := c.Doc("bw/exists").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	bw := c.BulkWriter(ctx)
	j1, err := bw.Create(c.Doc("bw/new"), map[string]any{"x": 2})
	if err != nil {
		t.Fatalf("bulk create: %v", err)
	}
	j2, err := bw.Create(c.Doc("bw/exists"), map[string]any{"x": 3})
	if err != nil {
		t.Fatalf("bulk create: %v", err)
	}
	bw.End()
	if _, err := j1.Results(); err != nil {
		t.Errorf("first job: %v", err)
	}
	_, err = j2.Results()
	wantCode(t, err, codes.AlreadyExists)
	if _, err := c.Doc("bw/new").Get(ctx); err != nil {
		t.Errorf("bulk-written document: %v", err)
	}
}

func TestClientThroughEmulatorHostVariable(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	t.Setenv("FIRESTORE_EMULATOR_HOST", srv.Addr())
	c, err := firestore.NewClient(ctx, "env-project")
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	defer c.Close()
	if _, err := c.Doc("a/b").Set(ctx, map[string]any{"ok": true}); err != nil {
		t.Fatalf("set: %v", err)
	}
	snap, err := c.Doc("a/b").Get(ctx)
	if err != nil || snap.Data()["ok"] != true {
		t.Fatalf("get: %v %v", snap, err)
	}
}

func TestInvalidDocumentsRejected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	c := newClient(t, srv, "(default)")
	_, err := c.Doc("big/1").Set(ctx, map[string]any{"s": strings.Repeat("x", 1<<20)})
	wantCode(t, err, codes.InvalidArgument)
	raw := newRawClient(t, srv)
	arr := func(vs ...*pb.Value) *pb.Value {
		return &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: vs}}}
	}
	_, err = raw.Commit(ctx, &pb.CommitRequest{Database: dbPath("(default)"), Writes: []*pb.Write{{
		Operation: &pb.Write_Update{Update: &pb.Document{Name: docPath("(default)", "bad/1"), Fields: map[string]*pb.Value{"a": arr(arr())}}},
	}}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = raw.Commit(ctx, &pb.CommitRequest{Database: dbPath("(default)"), Writes: []*pb.Write{{
		Operation: &pb.Write_Update{Update: &pb.Document{Name: docPath("(default)", "odd")}},
	}}})
	wantCode(t, err, codes.InvalidArgument)
}
