package firestoreemu_test

import (
	"context"
	"testing"

	"cloud.google.com/go/firestore"
	vkit "cloud.google.com/go/firestore/apiv1"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const project = "test-project"

func newServer(t testing.TB, opts ...firestoreemu.Options) *firestoreemu.Server {
	t.Helper()
	return firestoreemu.StartForTest(t, opts...)
}

// newClient connects the official client to srv's database db.
func newClient(t testing.TB, srv *firestoreemu.Server, db string) *firestore.Client {
	t.Helper()
	c, err := firestore.NewClientWithDatabase(context.Background(), project, db, srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("new firestore client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newRawClient is the generated gRPC client, for behaviour the high-level
// client hides.
func newRawClient(t testing.TB, srv *firestoreemu.Server) *vkit.Client {
	t.Helper()
	c, err := vkit.NewClient(context.Background(), srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("new raw firestore client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func dbPath(db string) string { return "projects/" + project + "/databases/" + db }

func docPath(db, rel string) string { return dbPath(db) + "/documents/" + rel }

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got error %v, want code %v", err, code)
	}
}
