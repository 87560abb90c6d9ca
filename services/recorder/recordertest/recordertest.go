// Package recordertest helps tests of the recorder and its callers: the
// Recorder served over real gRPC (as the service serves it, with its
// authentication, or bare for tests of the Service itself), and the Firestore indexes it is deployed
// with, for the emulator to enforce.
package recordertest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/testinfra/localissuer"
	"github.com/visn/wadispatch/services/recorder/internal/adapters/grpcapi"
	"golang.org/x/oauth2"

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
	recorderps "github.com/visn/wadispatch/services/recorder/internal/adapters/pubsub"
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

// The callers a recorder Start serves knows.
const (
	SenderIdentity   = "sender@wadispatch.test"
	OperatorIdentity = "operator@wadispatch.test"
	// Audience is the audience of the tokens it takes.
	Audience = "wadispatch-recorder"
)

// Recorder is a recorder Start serves through its real gRPC adapter, with
// authentication: callers present ID tokens of a local issuer only it
// trusts.
type Recorder struct {
	Addr   string
	svc    *app.Service
	repub  *sendtask.Publisher
	issuer *localissuer.Issuer
}

// Sweep marks the claims expired without an outcome UNKNOWN now, as the
// recorder's sweeper does on its schedule, and says how many it marked.
func (r *Recorder) Sweep(ctx context.Context) (int, error) { return r.svc.Sweep(ctx) }

// Record records a result as the recorder does for one from Pub/Sub, the
// only way results reach it.
func (r *Recorder) Record(ctx context.Context, result *wadispatchv1.SendResult) error {
	_, err := r.svc.RecordResult(ctx, &wadispatchv1.RecordResultRequest{Result: result})
	return err
}

// Refuse records ingest's refusal of a message as the recorder does for
// one from Pub/Sub, and returns the outcome (app.Refusal*).
func (r *Recorder) Refuse(ctx context.Context, refusal *wadispatchv1.Refusal) (string, error) {
	return r.svc.RecordRefusal(ctx, refusal)
}

// Inbound records a driver's message as if from the status events topic,
// and returns the outcome.
func (r *Recorder) Inbound(ctx context.Context, in *wadispatchv1.InboundMessage) (string, error) {
	outcome, _, err := r.svc.RecordInbound(ctx, in)
	return outcome, err
}

// Preference records a driver's stop or resume as if from the status
// events topic; it reports whether any lease's record changed.
func (r *Recorder) Preference(ctx context.Context, p *wadispatchv1.DriverPreference) (bool, error) {
	return r.svc.RecordPreference(ctx, p)
}

// Status applies a status event as the recorder does for one from
// Pub/Sub, the only way statuses reach it.
func (r *Recorder) Status(ctx context.Context, ev *wadispatchv1.StatusEvent) (*wadispatchv1.ApplyStatusResponse, error) {
	return r.svc.ApplyStatus(ctx, &wadispatchv1.ApplyStatusRequest{Event: ev})
}

// Fold folds the ledgers into their counters, as the recorder's folder
// does every interval; it returns how many entries it folded.
func (r *Recorder) Fold(ctx context.Context) (int, error) { return r.svc.FoldLedgers(ctx) }

// StopPublishing flushes the resends published so far; the tb's cleanup
// calls it too, for tests that close the Pub/Sub client themselves first.
func (r *Recorder) StopPublishing() { r.repub.Stop() }

// Token is an ID token naming who, for the recorder.
func (r *Recorder) Token(tb testing.TB, who string) string {
	tb.Helper()
	tok, err := r.issuer.Mint(who, Audience, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// TokenFile is a file holding Token(who), as the local stack writes one.
func (r *Recorder) TokenFile(tb testing.TB, who string) string {
	tb.Helper()
	file := filepath.Join(tb.TempDir(), "id.token")
	if err := os.WriteFile(file, []byte(r.Token(tb, who)), 0o600); err != nil {
		tb.Fatal(err)
	}
	return file
}

// ClientAs is a client of the recorder calling as who.
func (r *Recorder) ClientAs(tb testing.TB, who string) wadispatchv1.RecorderClient {
	tb.Helper()
	conn, err := grpc.NewClient(r.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.PerRPC(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: r.Token(tb, who)}))))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return wadispatchv1.NewRecorderClient(conn)
}

// Start builds the recorder with its default settings over the two
// databases, resending to the tasks topic of ps, and serves it until tb
// ends.
func Start(tb testing.TB, db, ancillary *firestore.Client, ps *pubsub.Client, log *logrus.Entry) *Recorder {
	tb.Helper()
	repub := sendtask.NewPublisher(ps, topology.TasksTopic, 0)
	metrics := app.NewMetrics(prometheus.NewRegistry())
	store := recorderfs.NewStore(db, recorderfs.Options{Retried: metrics.CommitRetried})
	media := recorderps.NewMediaFetches(ps, topology.MediaTopic)
	tb.Cleanup(media.Stop)
	svc, err := app.NewService(app.Config{Metrics: metrics}, app.Ports{
		Store: store, Replies: store, Drivers: store, Templates: store, Ancillary: recorderfs.NewAncillary(ancillary), Republisher: repub, Media: media,
	}, log)
	if err != nil {
		tb.Fatal(err)
	}
	iss, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = iss.Close() })
	trust, err := auth.ParseIssuers(iss.Trust())
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := auth.NewVerifier(context.Background(), Audience, trust)
	if err != nil {
		tb.Fatal(err)
	}
	api, err := grpcapi.New("127.0.0.1:0", svc, grpcapi.Access{
		Verifier: verifier, Senders: []string{SenderIdentity}, Operators: []string{OperatorIdentity}, Log: log,
	}, grpcapi.Connections{MinPingTime: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Run(ctx, time.Second) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("recorder gRPC server: %v", err)
		}
	})
	return &Recorder{Addr: api.Addr(), svc: svc, repub: repub, issuer: iss}
}
