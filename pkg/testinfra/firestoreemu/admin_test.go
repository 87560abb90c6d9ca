package firestoreemu_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
)

func TestAdminClearDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newServer(t)
	def := newClient(t, srv, "(default)")
	anc := newClient(t, srv, "ancillary")
	if _, err := def.Doc("a/1").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := anc.Doc("a/1").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatalf("set: %v", err)
	}
	req, err := http.NewRequest(http.MethodDelete, "http://"+srv.Addr()+"/emulator/v1/projects/"+project+"/databases/(default)/documents", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE status %d", resp.StatusCode)
	}
	_, err = def.Doc("a/1").Get(ctx)
	wantCode(t, err, codes.NotFound)
	if _, err := anc.Doc("a/1").Get(ctx); err != nil {
		t.Errorf("ancillary document cleared too: %v", err)
	}
	// gRPC still works on the shared port after HTTP traffic.
	if _, err := def.Doc("a/2").Set(ctx, map[string]any{"x": 2}); err != nil {
		t.Fatalf("set after clear: %v", err)
	}
	srv.Reset()
	_, err = anc.Doc("a/1").Get(ctx)
	wantCode(t, err, codes.NotFound)
}

func TestExportImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newServer(t)
	c := newClient(t, src, "ancillary")
	wr, err := c.Doc("s/1").Set(ctx, map[string]any{"x": 1, "m": map[string]any{"y": "z"}})
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	if _, err := newClient(t, src, "(default)").Doc("s/2").Set(ctx, map[string]any{"x": 2}); err != nil {
		t.Fatalf("set: %v", err)
	}
	var buf bytes.Buffer
	if err := src.Export(&buf); err != nil {
		t.Fatalf("export: %v", err)
	}
	dst := newServer(t)
	if err := dst.Import(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("import: %v", err)
	}
	snap, err := newClient(t, dst, "ancillary").Doc("s/1").Get(ctx)
	if err != nil {
		t.Fatalf("get imported: %v", err)
	}
	if snap.Data()["x"] != int64(1) || !snap.UpdateTime.Equal(wr.UpdateTime) {
		t.Errorf("imported %v updated %v, want x=1 updated %v", snap.Data(), snap.UpdateTime, wr.UpdateTime)
	}
	if _, err := newClient(t, dst, "(default)").Doc("s/2").Get(ctx); err != nil {
		t.Errorf("default database not imported: %v", err)
	}
	// Commits after an import are later than imported versions.
	wr2, err := newClient(t, dst, "ancillary").Doc("s/1").Set(ctx, map[string]any{"x": 3})
	if err != nil || !wr2.UpdateTime.After(wr.UpdateTime) {
		t.Errorf("write after import: %v %v", wr2, err)
	}
}
