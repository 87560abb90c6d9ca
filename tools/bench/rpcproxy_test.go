package bench

import (
	"context"
	"testing"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
)

// The counter is transparent to the official client (unary and streaming
// calls, transactions, error codes) and counts each call once by method.
func TestRPCCounterPassesCallsThroughAndCountsThem(t *testing.T) {
	emu := firestoreemu.StartForTest(t)
	p, err := StartRPCCounter()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	// Calls made before the backend is known wait for it.
	fs, err := firestore.NewClient(ctx, "p", option.WithEndpoint(p.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	done := make(chan error, 1)
	go func() {
		_, err := fs.Doc("c/a").Set(ctx, map[string]any{"n": 1})
		done <- err
	}()
	if err := p.SetBackend(emu.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if err := fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(fs.Doc("c/a"))
		if err != nil {
			return err
		}
		return tx.Update(fs.Doc("c/a"), []firestore.Update{{Path: "n", Value: snap.Data()["n"].(int64) + 1}})
	}); err != nil {
		t.Fatal(err)
	}
	docs, err := fs.Collection("c").Where("n", "==", 2).Documents(ctx).GetAll()
	if err != nil || len(docs) != 1 {
		t.Fatalf("query through the counter: %d documents, %v", len(docs), err)
	}
	if _, err := fs.Doc("c/missing").Get(ctx); status.Code(err) != codes.NotFound {
		t.Fatalf("missing document: %v, want NotFound", err)
	}

	want := map[string]int64{
		"/google.firestore.v1.Firestore/Commit":            2,
		"/google.firestore.v1.Firestore/BeginTransaction":  1,
		"/google.firestore.v1.Firestore/BatchGetDocuments": 2,
		"/google.firestore.v1.Firestore/RunQuery":          1,
	}
	got := p.Counts()
	for m, n := range want {
		if got[m] != n {
			t.Errorf("%s counted %d times, want %d (all: %v)", m, got[m], n, got)
		}
	}
	if p.Total() != 6 {
		t.Errorf("total %d, want 6 (%v)", p.Total(), got)
	}
}
