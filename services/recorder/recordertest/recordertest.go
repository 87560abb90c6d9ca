// Package recordertest helps tests of the recorder and its callers: the
// Recorder served over real gRPC, and the Firestore indexes it is deployed
// with, for the emulator to enforce.
package recordertest

import (
	"context"
	"net"
	"testing"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	recorderfs "github.com/visn/wadispatch/services/recorder/internal/adapters/firestore"
	"github.com/visn/wadispatch/services/recorder/internal/app"
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

// Recorder is a recorder Start serves.
type Recorder struct {
	Client wadispatchv1.RecorderClient
	Addr   string
	svc    *app.Service
	repub  *sendtask.Publisher
}

// Sweep marks the claims expired without an outcome UNKNOWN now, as the
// recorder's sweeper does on its schedule, and says how many it marked.
func (r *Recorder) Sweep(ctx context.Context) (int, error) { return r.svc.Sweep(ctx) }

// StopPublishing flushes the resends published so far; the tb's cleanup
// calls it too, for tests that close the Pub/Sub client themselves first.
func (r *Recorder) StopPublishing() { r.repub.Stop() }

// Start builds the recorder with its default settings over the two
// databases, resending to the tasks topic of ps, and serves it as Serve does.
func Start(tb testing.TB, db, ancillary *firestore.Client, ps *pubsub.Client, log *logrus.Entry) *Recorder {
	tb.Helper()
	repub := sendtask.NewPublisher(ps, topology.TasksTopic, 0)
	metrics := app.NewMetrics(prometheus.NewRegistry())
	store := recorderfs.NewStore(db, recorderfs.Options{Retried: metrics.CommitRetried})
	svc, err := app.NewService(app.Config{Metrics: metrics}, store, recorderfs.NewAncillary(ancillary), repub, log)
	if err != nil {
		tb.Fatal(err)
	}
	r := &Recorder{svc: svc, repub: repub}
	r.Client, r.Addr = Serve(tb, svc)
	return r
}
