// Package recordtest helps tests of the recorder and its callers: the
// Recorder served over real gRPC, and the Firestore indexes it is deployed
// with, for the emulator to enforce.
package recordtest

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/tools/firestoreemu"
)

// DeployedIndexes is the emulator's index configuration as deployed: the
// chart's firestore.indexes.json in the messages database, automatic
// indexes only in the ancillary one. Queries they do not serve fail, as on
// Firestore.
func DeployedIndexes(tb testing.TB) map[string]*firestoreemu.IndexConfig {
	tb.Helper()
	indexes := firestoreemu.IndexesForTest(tb, "(default)", chart.FirestoreIndexes)
	indexes["ancillary"] = nil
	return indexes
}

// Serve runs srv on a gRPC server on a free local port until tb ends, and
// returns a client dialled to it and its address.
func Serve(tb testing.TB, srv wadispatchv1.RecorderServer) (wadispatchv1.RecorderClient, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer()
	wadispatchv1.RegisterRecorderServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	tb.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return wadispatchv1.NewRecorderClient(conn), ln.Addr().String()
}
