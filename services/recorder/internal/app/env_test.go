package app_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	firestorepb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/firestoretest"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	recorderfs "github.com/visn/wadispatch/services/recorder/internal/adapters/firestore"
	recorderps "github.com/visn/wadispatch/services/recorder/internal/adapters/pubsub"
	"github.com/visn/wadispatch/services/recorder/internal/app"
	"github.com/visn/wadispatch/services/recorder/recordertest"
)

const project = pubsubemu.TestProject

// env is a recorder served over real gRPC on the project's Firestore
// emulator (both databases) and pstest.
type env struct {
	fs      *firestoretest.Emulator
	db, anc *firestore.Client
	svc     *app.Service
	rec     wadispatchv1.RecorderClient
	reg     *prometheus.Registry
	pubsub  string // pstest address
}

type envOptions struct {
	cfg app.Config
	// ancillary and defaultDB override the databases' client options (a
	// proxy, an RPC counter).
	ancillary, defaultDB func(fs *firestoretest.Emulator) []option.ClientOption
	// undeployedIndexes runs the default database without the deployed
	// indexes, as a project where they were never created.
	undeployedIndexes bool
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	indexes := recordertest.DeployedIndexes(t)
	if o.undeployedIndexes {
		indexes["(default)"] = nil
	}
	e := &env{fs: firestoretest.Start(t, project, firestoreemu.Options{Indexes: indexes}), reg: prometheus.NewRegistry(), pubsub: pubsubemu.StartForTest(t)}
	dbOpts := e.fs.ClientOptions()
	if o.defaultDB != nil {
		dbOpts = o.defaultDB(e.fs)
	}
	var err error
	e.db, err = firestore.NewClient(ctx, e.fs.Project, dbOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.db.Close() })
	ancOpts := e.fs.ClientOptions()
	if o.ancillary != nil {
		ancOpts = o.ancillary(e.fs)
	}
	e.anc, err = firestore.NewClientWithDatabase(ctx, e.fs.Project, "ancillary", ancOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.anc.Close() })

	ps, err := pubsubemu.NewClient(ctx, e.pubsub, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	repub := sendtask.NewPublisher(ps, topology.TasksTopic, 0)
	t.Cleanup(repub.Stop)

	cfg := o.cfg
	cfg.Metrics = app.NewMetrics(e.reg)
	log := logrus.New()
	log.SetOutput(io.Discard)
	store := recorderfs.NewStore(e.db, recorderfs.Options{Retried: cfg.Metrics.CommitRetried})
	media := recorderps.NewMediaFetches(ps, topology.MediaTopic)
	t.Cleanup(media.Stop)
	e.svc, err = app.NewService(cfg, app.Ports{
		Store: store, Replies: store, Drivers: store, Templates: store, Ancillary: recorderfs.NewAncillary(e.anc), Republisher: repub, Media: media,
	}, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	e.rec, _ = recordertest.Serve(t, e.svc)
	return e
}

func messagePath(id string) string {
	return "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + id
}

const driver = "+447700900123"

// newMessage writes a chatMessages document as the web app does and
// returns the task ingest would publish for it.
func (e *env) newMessage(t testing.TB, id string) *wadispatchv1.SendTask {
	t.Helper()
	_, err := e.db.Doc(messagePath(id)).Set(context.Background(), map[string]any{
		"message": "Your load is ready", "type": "text", "driverMobileNumber": driver, "createdBy": "u1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &wadispatchv1.SendTask{
		LeaseId: "l1", EnquiryId: "e1", MessageId: id, MessageDocId: messagePath(id),
		DriverMobileNumber: driver, Message: "Your load is ready", Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEXT,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{PhoneNumberId: "1055", ApiVersion: "v21.0", TokenRef: "lease-l1"},
		CreatedBy:            "u1", CreatedAt: timestamppb.Now(), EventId: "ev-" + id,
	}
}

// sentMessage writes message id, claims it and records it SENT as wamid.
func (e *env) sentMessage(t testing.TB, id, wamid string) *wadispatchv1.SendTask {
	t.Helper()
	task := e.newMessage(t, id)
	e.record(t, sent(task, e.claim(t, task, 0).GetClaimId(), wamid))
	return task
}

func sent(task *wadispatchv1.SendTask, claimID, wamid string) *wadispatchv1.SendResult {
	return &wadispatchv1.SendResult{
		MessageDocId: task.GetMessageDocId(), LeaseId: task.GetLeaseId(), EnquiryId: task.GetEnquiryId(),
		MessageId: task.GetMessageId(), DriverMobileNumber: task.GetDriverMobileNumber(), CreatedBy: task.GetCreatedBy(),
		ClaimId: claimID, Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: wamid, Attempts: 1,
		CalledAt: timestamppb.Now(), CompletedAt: timestamppb.Now(),
	}
}

// sentUnder is the SENT result the sender publishes for claim c: with the
// state version c was answered with.
func sentUnder(task *wadispatchv1.SendTask, c *wadispatchv1.ClaimSendResponse, wamid string) *wadispatchv1.SendResult {
	r := sent(task, c.GetClaimId(), wamid)
	r.ClaimStateVersion = c.GetStateVersion()
	return r
}

func failed(task *wadispatchv1.SendTask, claimID string) *wadispatchv1.SendResult {
	r := sent(task, claimID, "")
	r.Outcome = wadispatchv1.Outcome_OUTCOME_FAILED
	r.Error = &wadispatchv1.WhatsAppError{Code: 131026, Type: "OAuthException", Message: "Message undeliverable",
		Details: "Unable to deliver message", HttpStatus: 400, Reason: "undeliverable"}
	return r
}

func (e *env) claim(t testing.TB, task *wadispatchv1.SendTask, lease time.Duration) *wadispatchv1.ClaimSendResponse {
	t.Helper()
	req := &wadispatchv1.ClaimSendRequest{Task: task, Claimant: "test"}
	if lease > 0 {
		req.Lease = durationpb.New(lease)
	}
	resp, err := e.rec.ClaimSend(context.Background(), req)
	if err != nil {
		t.Fatalf("ClaimSend: %v", err)
	}
	return resp
}

func (e *env) record(t testing.TB, r *wadispatchv1.SendResult) *wadispatchv1.RecordResultResponse {
	t.Helper()
	resp, err := e.svc.RecordResult(context.Background(), &wadispatchv1.RecordResultRequest{Result: r})
	if err != nil {
		t.Fatalf("RecordResult: %v", err)
	}
	return resp
}

// doc reads a document's data; nil when it does not exist.
// sentCount is u1's numberOfWhatsappMessagesSent once the ledger is
// folded, as the recorder's folder would within its interval.
func (e *env) sentCount(t testing.TB) any {
	t.Helper()
	e.fold(t)
	return doc(t, e.db, "leasecompany/l1/performanceMetrics/u1")["numberOfWhatsappMessagesSent"]
}

// fold folds every pending ledger entry into its counter.
func (e *env) fold(t testing.TB) {
	t.Helper()
	if _, err := e.svc.FoldLedgers(context.Background()); err != nil {
		t.Fatalf("fold the ledgers: %v", err)
	}
}

func doc(t testing.TB, c *firestore.Client, path string) map[string]any {
	t.Helper()
	snap, err := c.Doc(path).Get(context.Background())
	if err != nil {
		if !snap.Exists() {
			return nil
		}
		t.Fatal(err)
	}
	return snap.Data()
}

// metricValue reads a counter's or gauge's value from the registry, summed
// over the series with labels; 0 when absent.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		total := 0.0
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return total
	}
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// proxy is a TCP proxy to the emulator that can be taken down and brought
// back on the same port: the fault a database outage looks like to a client.
type proxy struct {
	target, addr string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	go p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
		go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
	}
}

// down refuses new connections and cuts the open ones.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *proxy) up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

func (p *proxy) clientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(p.addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// contention answers a share of the commits that write a metrics document
// with ABORTED before they reach the emulator, as Firestore answers writes
// to a document beyond the rate it sustains ("too much contention"). The
// emulator does not model that limit; this puts its answer on the wire.
type contention struct {
	every int // abort every n-th such commit
	seen  atomic.Int64
	fired atomic.Int64
}

func (c *contention) interceptors() []option.ClientOption {
	return []option.ClientOption{
		option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if cr, ok := req.(*firestorepb.CommitRequest); ok && writesMetrics(cr) && c.seen.Add(1)%int64(c.every) == 0 {
				c.fired.Add(1)
				return status.Error(codes.Aborted, "Too much contention on these documents. Please try again.")
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		})),
	}
}

func writesMetrics(cr *firestorepb.CommitRequest) bool {
	for _, w := range cr.GetWrites() {
		if strings.Contains(w.GetUpdate().GetName(), "/performanceMetrics/") {
			return true
		}
	}
	return false
}
