// Package recordtest serves a Recorder implementation over real gRPC for
// tests of the recorder's callers.
package recordtest

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

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
