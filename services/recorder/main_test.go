package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/kelseyhightower/envconfig"
	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/localissuer"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/tracing/tracingtest"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/recordertest"
)

const msgPath = "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1"

// The callers the recorder under test knows.
const (
	senderIdentity   = "sender@wadispatch.local"
	operatorIdentity = "operator@wadispatch.local"
)

type stack struct {
	// issuer signs the callers' ID tokens; the recorder trusts only it.
	issuer *localissuer.Issuer
	ps     *pubsubemu.Server
	db     *firestore.Client
	rec    *recorder
	psc    *pubsub.Client
}

// start runs the recorder as main does, against the emulators named by the
// environment variables the official clients read.
// stop, which the test may call, cancels the recorder and returns what
// lifecycle.Run returned.
func start(t *testing.T) (st *stack, stop func() error) {
	fs := firestoreemu.StartForTest(t, firestoreemu.Options{Indexes: recordertest.DeployedIndexes(t)})
	t.Setenv("FIRESTORE_EMULATOR_HOST", fs.Addr())
	return startWith(t)
}

// startWith is start with FIRESTORE_EMULATOR_HOST set by the caller.
func startWith(t *testing.T) (st *stack, stop func() error) {
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pubsubemu.Start(context.Background(), "127.0.0.1:0", pubsubemu.TestProject, topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	t.Setenv("PUBSUB_EMULATOR_HOST", ps.Addr)
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("RECORDER_GRPC_ADDR", "127.0.0.1:0")
	t.Setenv("SHUTDOWN_GRACE", "5s")
	iss, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	t.Setenv("RECORDER_AUTH_ISSUERS", iss.Trust())
	t.Setenv("RECORDER_SENDER_IDENTITIES", senderIdentity)
	t.Setenv("RECORDER_OPERATOR_IDENTITIES", operatorIdentity)
	t.Setenv("RECORDER_REFLECTION", "true")

	var s spec
	if err := envconfig.Process("", &s); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := build(ctx, s, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- lifecycle.Run(ctx, r.parts...) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("recorder did not stop within 15s")
		}
	})
	t.Cleanup(func() {
		_ = stop()
		r.close()
	})
	st = &stack{issuer: iss, ps: ps, rec: r}
	st.db, err = firestore.NewClient(context.Background(), s.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.db.Close() })
	st.psc, err = pubsubemu.NewClient(context.Background(), ps.Addr, pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.psc.Close() })
	return st, stop
}

// dial connects to the recorder's gRPC API as who (no credential when "").
func (st *stack) dial(t *testing.T, who string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if who != "" {
		tok, err := st.issuer.Mint(who, "wadispatch-recorder", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(auth.PerRPC(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}))))
	}
	conn, err := grpc.NewClient(st.rec.api.Addr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (st *stack) publish(t *testing.T, topic string, m proto.Message, attrs map[string]string) string {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := st.psc.Publisher(topic)
	defer p.Stop()
	id, err := p.Publish(context.Background(), &pubsub.Message{Data: data, Attributes: attrs}).Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pstestMessage finds a published message on the fake server.
func (st *stack) pstestMessage(id string) *pstest.Message {
	for _, m := range st.ps.Messages() {
		if m.ID == id {
			return m
		}
	}
	return nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestResultFromPubSubIsRecordedAndAcked(t *testing.T) {
	st, stop := start(t)
	ctx := context.Background()
	if _, err := st.db.Doc(msgPath).Set(ctx, map[string]any{"message": "hi", "createdBy": "u1"}); err != nil {
		t.Fatal(err)
	}
	result := &wadispatchv1.SendResult{
		MessageDocId: msgPath, LeaseId: "l1", EnquiryId: "e1", MessageId: "m1", DriverMobileNumber: "+447700900123",
		CreatedBy: "u1", ClaimId: "c1", Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "wamid.PS", Attempts: 1,
	}
	id := st.publish(t, topology.ResultsTopic, result, map[string]string{"schema": "wadispatch.v1.SendResult", "messagePath": msgPath})
	eventually(t, "result acked", func() bool { m := st.pstestMessage(id); return m != nil && m.Acks > 0 })
	snap, err := st.db.Doc(msgPath).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Data()["status"] != "SENT" || snap.Data()["whatsappMessageId"] != "wamid.PS" {
		t.Errorf("message document %v", snap.Data())
	}
	anc, err := firestore.NewClientWithDatabase(ctx, pubsubemu.TestProject, "ancillary")
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	if a, err := anc.Doc("whatsapp/+447700900123/enquiryMessages/e1").Get(ctx); err != nil || len(a.Data()["arrayOfWhatsappMessageIds"].([]any)) != 1 {
		t.Errorf("ancillary record: %v %v", a, err)
	}

	// A status event for it goes through the other subscription.
	evID := st.publish(t, topology.StatusEventsTopic, &wadispatchv1.StatusEvent{WhatsappMessageId: "wamid.PS", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED},
		map[string]string{"schema": "wadispatch.v1.StatusEvent"})
	eventually(t, "status event acked", func() bool { m := st.pstestMessage(evID); return m != nil && m.Acks > 0 })
	if snap, _ := st.db.Doc(msgPath).Get(ctx); snap.Data()["status"] != "DELIVERED" {
		t.Errorf("after the status event: %v", snap.Data())
	}

	// Poison: never acked (the dead-letter policy takes it), and counted.
	poisonID := st.publish(t, topology.ResultsTopic, &wadispatchv1.SendResult{MessageDocId: "not/a/message"}, nil)
	unknownID := st.publish(t, topology.StatusEventsTopic, &wadispatchv1.InboundMessage{From: "+447700900123"}, map[string]string{"schema": "wadispatch.v1.Nope"})
	metrics := func() string {
		resp, err := http.Get("http://" + st.rec.ops.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	eventually(t, "poison counted", func() bool {
		m := metrics()
		return strings.Contains(m, `wadispatch_recorder_poison_messages_total{reason="invalid",subscription="whatsapp-message-results-recorder"}`) &&
			strings.Contains(m, `wadispatch_recorder_poison_messages_total{reason="unknown_schema",subscription="whatsapp-status-events-recorder"}`)
	})
	for _, id := range []string{poisonID, unknownID} {
		if m := st.pstestMessage(id); m.Acks != 0 {
			t.Errorf("poison message %s acked", id)
		}
	}
	if m := metrics(); !strings.Contains(m, `wadispatch_recorder_results_recorded_total{applied="true",outcome="SENT"} 1`) {
		t.Errorf("results metric missing:\n%s", m)
	}

	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestHealthAndReflection(t *testing.T) {
	st, stop := start(t)
	// Probes carry no credential; reflection is for operators.
	conn := st.dial(t, operatorIdentity)
	ctx := context.Background()
	hc := healthpb.NewHealthClient(st.dial(t, ""))
	eventually(t, "SERVING", func() bool {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "wadispatch.v1.Recorder"})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "wadispatch.v1.Recorder") {
		t.Errorf("reflection lists %v", names)
	}
	_ = stream.CloseSend()

	// The health watch sees NOT_SERVING when shutdown starts.
	watchCtx, endWatch := context.WithCancel(ctx)
	watch, err := hc.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: "wadispatch.v1.Recorder"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	if r, err := watch.Recv(); err == nil && r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("status during shutdown: %v", r.GetStatus())
	}
	endWatch() // GracefulStop waits for open streams
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// gate is a TCP proxy to the Firestore emulator whose new connections wait
// until it opens: a database that stops answering, as a client sees it.
type gate struct {
	addr string
	open chan struct{}
}

func startGate(t *testing.T, target string) *gate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	g := &gate{addr: ln.Addr().String(), open: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				<-g.open
				u, err := net.Dial("tcp", target)
				if err != nil {
					_ = c.Close()
					return
				}
				go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
				_, _ = io.Copy(c, u)
				_ = c.Close()
			}()
		}
	}()
	return g
}

func TestShutdownFinishesTheResultInHand(t *testing.T) {
	// The recorder's span of a message starts when its handler takes it.
	spans := tracingtest.Record(t)
	fs := firestoreemu.StartForTest(t, firestoreemu.Options{Indexes: recordertest.DeployedIndexes(t)})
	ctx := context.Background()
	direct, err := firestore.NewClient(ctx, pubsubemu.TestProject, fs.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if _, err := direct.Doc(msgPath).Set(ctx, map[string]any{"message": "hi", "createdBy": "u1"}); err != nil {
		t.Fatal(err)
	}
	// The recorder reaches Firestore only through the gate, closed for now.
	g := startGate(t, fs.Addr())
	t.Setenv("FIRESTORE_EMULATOR_HOST", g.addr)
	st, stop := startWith(t)

	id := st.publish(t, topology.ResultsTopic, &wadispatchv1.SendResult{
		MessageDocId: msgPath, DriverMobileNumber: "+447700900123", CreatedBy: "u1", ClaimId: "c1",
		Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "wamid.inhand",
	}, map[string]string{"schema": "wadispatch.v1.SendResult"})
	// Delivered is not yet in hand: what Receive has pulled but not handed
	// to a handler when shutdown starts is nacked.
	eventually(t, "the result in the recorder's handler", func() bool {
		for _, sp := range spans.Started() {
			for _, kv := range sp.Attributes() {
				if kv.Key == "messaging.message.id" && kv.Value.AsString() == id {
					return true
				}
			}
		}
		return false
	})

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(300 * time.Millisecond) // shutdown under way, the handler waiting on Firestore
	if snap, _ := direct.Doc(msgPath).Get(ctx); snap.Data()["status"] != nil {
		t.Fatalf("recorded before the gate opened: %v", snap.Data())
	}
	select {
	case err := <-stopped:
		t.Fatalf("stopped with a result in hand: %v", err)
	default:
	}
	close(g.open)
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if m := st.pstestMessage(id); m.Acks != 1 {
		t.Errorf("result in hand at shutdown: %d acks, want 1", m.Acks)
	}
	snap, err := direct.Doc(msgPath).Get(ctx)
	if err != nil || snap.Data()["status"] != "SENT" {
		t.Errorf("message document %v %v", snap.Data(), err)
	}
}

// Every call but the health check is authenticated and authorized per
// method: the caller's name comes from its verified ID token, a credential
// for another audience or from another issuer is refused, and the results
// and statuses that Pub/Sub brings are no network method at all.
func TestCallsAreAuthenticatedAndAuthorized(t *testing.T) {
	st, _ := start(t)
	ctx := context.Background()
	task := &wadispatchv1.SendTask{LeaseId: "l1", EnquiryId: "e1", MessageId: "m1", MessageDocId: msgPath,
		DriverMobileNumber: "+447700900123", CreatedBy: "u1", Message: "hi", Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE}
	claim := func(conn *grpc.ClientConn) codes.Code {
		_, err := wadispatchv1.NewRecorderClient(conn).ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{Task: task, Claimant: "x"})
		return status.Code(err)
	}
	stranger, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	forged, err := stranger.Mint(senderIdentity, "wadispatch-recorder", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherAudience, err := st.issuer.Mint(senderIdentity, "another-service", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	withToken := func(tok string) *grpc.ClientConn {
		conn, err := grpc.NewClient(st.rec.api.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.PerRPC(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	for name, c := range map[string]struct {
		conn *grpc.ClientConn
		want codes.Code
	}{
		"no credential":                  {st.dial(t, ""), codes.Unauthenticated},
		"a stranger's signature":         {withToken(forged), codes.Unauthenticated},
		"another service's token":        {withToken(otherAudience), codes.Unauthenticated},
		"an operator claiming":           {st.dial(t, operatorIdentity), codes.PermissionDenied},
		"somebody else the issuer knows": {st.dial(t, "intruder@wadispatch.local"), codes.PermissionDenied},
	} {
		if got := claim(c.conn); got != c.want {
			t.Errorf("%s: ClaimSend answered %s, want %s", name, got, c.want)
		}
	}
	// Nothing of the refused claims was written.
	if snap, err := st.db.Doc(msgPath + "/dispatch/state").Get(ctx); status.Code(err) != codes.NotFound {
		t.Fatalf("a refused claim left state: %v %v", snap.Data(), err)
	}

	sender := wadispatchv1.NewRecorderClient(st.dial(t, senderIdentity))
	if _, err := sender.GetMessage(ctx, &wadispatchv1.GetMessageRequest{MessageDocId: msgPath}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("the sender reading: %v, want PermissionDenied", err)
	}
	if _, err := sender.Resend(ctx, &wadispatchv1.ResendRequest{MessageDocId: msgPath}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("the sender resending: %v, want PermissionDenied", err)
	}
	costs := &wadispatchv1.GetCostsRequest{LeaseId: "l1", Month: "2026-12"}
	if _, err := sender.GetCosts(ctx, costs); status.Code(err) != codes.PermissionDenied {
		t.Errorf("the sender reading costs: %v, want PermissionDenied", err)
	}
	if _, err := wadispatchv1.NewRecorderClient(st.dial(t, operatorIdentity)).GetCosts(ctx, costs); err != nil {
		t.Errorf("an operator reading costs: %v", err)
	}
	// Results and statuses are no network method: a caller who calls them
	// by name, as an old client would, finds nothing there.
	for _, who := range []string{senderIdentity, operatorIdentity} {
		conn := st.dial(t, who)
		r := &wadispatchv1.SendResult{MessageDocId: msgPath, Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "wamid.forged", DriverMobileNumber: "+447700900123", CreatedBy: "u1"}
		if err := conn.Invoke(ctx, "/wadispatch.v1.Recorder/RecordResult", &wadispatchv1.RecordResultRequest{Result: r}, &wadispatchv1.RecordResultResponse{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("%s recording a result over the network: %v, want Unimplemented", who, err)
		}
		ev := &wadispatchv1.StatusEvent{WhatsappMessageId: "wamid.forged", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED}
		if err := conn.Invoke(ctx, "/wadispatch.v1.Recorder/ApplyStatus", &wadispatchv1.ApplyStatusRequest{Event: ev}, &wadispatchv1.ApplyStatusResponse{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("%s applying a status over the network: %v, want Unimplemented", who, err)
		}
	}
	// A stream's refusal comes with its first answer.
	stream, err := reflectionpb.NewServerReflectionClient(st.dial(t, senderIdentity)).ServerReflectionInfo(ctx)
	if err == nil {
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("the sender using reflection: %v, want PermissionDenied", err)
	}

	// The sender itself claims.
	if got := claim(st.dial(t, senderIdentity)); got != codes.NotFound && got != codes.OK {
		t.Errorf("the sender claiming: %s", got)
	}
}
