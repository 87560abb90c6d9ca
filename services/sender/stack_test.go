package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/logging/logtest"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/recordertest"
)

// The real parts around the sender in these tests: the pstest Pub/Sub server
// with the chart's topology, the project's Firestore emulator behind the
// recorder (services/recorder/recordertest) served over gRPC on a port, and the WhatsApp
// simulator over HTTP.

const (
	testToken   = "EAAG-sender-test-token-must-not-leak"
	phoneID     = "106540352242922"
	testProject = pubsubemu.TestProject
)

type stack struct {
	t      testing.TB
	sim    *whatsappsim.Simulator
	simURL string
	ps     *pubsub.Client
	tasks  *pubsub.Publisher
	db     *firestore.Client
	// recorder serves the recorder's API with its authentication; recorder
	// reads as an operator through it.
	rec      *recordertest.Recorder
	recorder wadispatchv1.RecorderClient
	// idToken is the file of the sender's ID token for the recorder.
	idToken string
	logs    *logtest.Buffer

	mu          sync.Mutex
	results     map[string][]*wadispatchv1.SendResult
	resultAttrs map[string][]map[string]string
	deadLetters map[string][]*pubsub.Message
	resultCount int
	changed     chan struct{}
}

// newStack starts the parts; record says whether results are fed to the
// recorder (the benchmark only counts them).
func newStack(t testing.TB, simOpts whatsappsim.Options, recordResults bool) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, logs: &logtest.Buffer{}, results: map[string][]*wadispatchv1.SendResult{}, resultAttrs: map[string][]map[string]string{},
		deadLetters: map[string][]*pubsub.Message{}, changed: make(chan struct{}, 1)}

	psAddr := pubsubemu.StartForTest(t)
	t.Setenv("PUBSUB_EMULATOR_HOST", psAddr)
	ps, err := pubsub.NewClient(ctx, testProject)
	if err != nil {
		t.Fatal(err)
	}
	s.ps = ps
	s.tasks = ps.Publisher(topology.TasksTopic)
	s.tasks.EnableMessageOrdering = true

	fs := firestoreemu.StartForTest(t, firestoreemu.Options{Logger: quietLogger(), Indexes: recordertest.DeployedIndexes(t)})
	db, err := firestore.NewClient(ctx, testProject, fs.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	anc, err := firestore.NewClientWithDatabase(ctx, testProject, "ancillary", fs.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	s.db = db
	recLog, err := logging.NewTo(s.logs, "recorder", testProject, "info")
	if err != nil {
		t.Fatal(err)
	}
	rec := recordertest.Start(t, db, anc, ps, recLog)
	s.rec, s.idToken = rec, rec.TokenFile(t, recordertest.SenderIdentity)
	s.recorder = rec.ClientAs(t, recordertest.OperatorIdentity)

	if simOpts.PhoneNumbers == nil {
		simOpts.PhoneNumbers = map[string]string{phoneID: testToken}
	}
	simOpts.Logger = quietLogger()
	sim, err := whatsappsim.New(simOpts)
	if err != nil {
		t.Fatal(err)
	}
	s.sim = sim
	hs := httptest.NewServer(sim.Handler())
	s.simURL = hs.URL

	var wg sync.WaitGroup
	wg.Go(func() { s.consumeResults(ctx, recordResults) })
	wg.Go(func() { s.consumeDeadLetters(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		hs.Close()
		sim.Close()
		rec.StopPublishing()
		s.tasks.Stop()
		_ = db.Close()
		_ = anc.Close()
		_ = ps.Close()
		if strings.Contains(s.logs.String(), testToken) {
			t.Error("the WhatsApp token appears in the logs")
		}
	})
	return s
}

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

// consumeResults stands in for the recorder service's subscriber: each
// result goes to RecordResult over gRPC, as the recorder does.
func (s *stack) consumeResults(ctx context.Context, recordResults bool) {
	sub := s.ps.Subscriber(topology.ResultsSubscription)
	sub.ReceiveSettings.MaxOutstandingMessages = 256
	sub.ReceiveSettings.NumGoroutines = 8 // pstest hands one stream a message per 10 ms
	err := sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		if bytes.Contains(m.Data, []byte(testToken)) || strings.Contains(fmt.Sprint(m.Attributes), testToken) {
			s.t.Error("a published result carries the token")
		}
		r := &wadispatchv1.SendResult{}
		if err := proto.Unmarshal(m.Data, r); err != nil {
			s.t.Errorf("result: %v", err)
			m.Ack()
			return
		}
		if recordResults {
			if err := s.rec.Record(ctx, r); err != nil {
				m.Nack()
				return
			}
		}
		s.mu.Lock()
		s.results[r.GetMessageDocId()] = append(s.results[r.GetMessageDocId()], r)
		s.resultAttrs[r.GetMessageDocId()] = append(s.resultAttrs[r.GetMessageDocId()], m.Attributes)
		s.resultCount++
		s.mu.Unlock()
		s.notify()
		m.Ack()
	})
	if err != nil {
		s.t.Errorf("receive results: %v", err)
	}
}

func (s *stack) consumeDeadLetters(ctx context.Context) {
	err := s.ps.Subscriber(topology.TasksDeadLetterHoldingSub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		s.mu.Lock()
		s.deadLetters[m.Attributes["messagePath"]] = append(s.deadLetters[m.Attributes["messagePath"]], m)
		s.mu.Unlock()
		s.notify()
		m.Ack()
	})
	if err != nil {
		s.t.Errorf("receive dead letters: %v", err)
	}
}

func (s *stack) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitFor polls cond whenever a result or dead letter arrives, and at least
// every 50 ms, until it holds or timeout passes.
func (s *stack) waitFor(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			s.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-s.changed:
		case <-tick.C:
		}
	}
}

// waitForSent waits until the recorder says SENT and this stack's result
// consumer has noted the result: the recorder answers before the consumer
// appends, so the state alone does not mean resultsFor is filled.
func (s *stack) waitForSent(timeout time.Duration, path string) {
	s.t.Helper()
	s.waitFor(timeout, "SENT "+path, func() bool {
		return len(s.resultsFor(path)) > 0 && s.state(path).GetStatus() == wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT
	})
}

// waitForLogs waits until the logs hold every one of wants: a service logs
// after the write or publish a test sees, so a test that checks a log line
// right after seeing the effect can be early.
func (s *stack) waitForLogs(timeout time.Duration, wants ...string) {
	s.t.Helper()
	s.waitFor(timeout, fmt.Sprintf("log lines with %q", wants), func() bool {
		logs := s.logs.String()
		for _, want := range wants {
			if !strings.Contains(logs, want) {
				return false
			}
		}
		return true
	})
}

func (s *stack) resultsFor(path string) []*wadispatchv1.SendResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*wadispatchv1.SendResult(nil), s.results[path]...)
}

func (s *stack) deadLettersFor(path string) []*pubsub.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*pubsub.Message(nil), s.deadLetters[path]...)
}

func (s *stack) state(path string) *wadispatchv1.MessageState {
	s.t.Helper()
	resp, err := s.recorder.GetMessage(context.Background(), &wadispatchv1.GetMessageRequest{MessageDocId: path})
	if status.Code(err) == codes.NotFound {
		return nil // not claimed yet
	}
	if err != nil {
		s.t.Fatalf("GetMessage %s: %v", path, err)
	}
	return resp.GetState()
}

// testSpec is the sender's configuration in tests: short timeouts, the
// stack's addresses.
func (s *stack) testSpec(claimant string) spec {
	return spec{
		Service: config.Service{
			Project:       testProject,
			LogLevel:      "debug",
			HTTPAddr:      "127.0.0.1:0",
			ShutdownGrace: 5 * time.Second,
		},
		Subscription:        topology.TasksSubscription,
		ResultsTopic:        topology.ResultsTopic,
		DeadLetterTopic:     topology.TasksDeadLetterTopic,
		MaxInFlight:         16,
		PullStreams:         1,
		RecorderAddr:        s.rec.Addr,
		RecorderAudience:    "wadispatch-recorder",
		RecorderIDTokenFile: s.idToken,
		RecorderKeepalive:   20 * time.Second,
		RecorderPingTimeout: 5 * time.Second,
		ClaimLease:          12 * time.Second,
		ClaimTimeout:        5 * time.Second,
		Claimant:            claimant,
		WhatsAppBaseURL:     s.simURL,
		WhatsAppTimeout:     2 * time.Second,
		WhatsAppAPIVersion:  "v21.0",
		RatePerNumber:       60,
		RateBurst:           5,
		RateCooldown:        2 * time.Second,
		MaxAttempts:         3,
		InitialBackoff:      50 * time.Millisecond,
		MaxBackoff:          time.Second,
		PublishTimeout:      5 * time.Second,
		InFlightRecheck:     time.Second,
		Tokens:              fmt.Sprintf(`{"lease-l1":%q}`, testToken),
		SecretCacheTTL:      time.Minute,
	}
}

// startSender runs a sender until the test ends (or stop is called) and
// returns stop, which cancels it and returns run's error.
func (s *stack) startSender(cfg spec) (stop func() error) {
	s.t.Helper()
	log, err := logging.NewTo(s.logs, "sender", testProject, cfg.LogLevel)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, log.WithField("claimant", cfg.Claimant)) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = fmt.Errorf("sender did not stop within 30 s")
			}
		})
		return runErr
	}
	s.t.Cleanup(func() {
		if err := stop(); err != nil {
			s.t.Errorf("sender: %v", err)
		}
	})
	return stop
}

// opsAddr is where claimant's sender serves /healthz, /readyz and /metrics,
// as its start-up line says: tests give it port 0, so that no other test
// can take the port between picking and listening.
func (s *stack) opsAddr(claimant string) string {
	s.t.Helper()
	var addr string
	s.waitFor(10*time.Second, claimant+"'s start-up line", func() bool {
		for _, e := range s.logs.Entries(s.t) {
			if e["message"] == "sender starting" && e["claimant"] == claimant {
				addr, _ = e["ops"].(string)
				return true
			}
		}
		return false
	})
	return addr
}

// newTask creates the chatMessages document (the recorder claims only
// messages that exist) and returns its task.
func (s *stack) newTask(id, driver string, typ wadispatchv1.MessageType) *wadispatchv1.SendTask {
	s.t.Helper()
	path := "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + id
	task := &wadispatchv1.SendTask{
		LeaseId:            "l1",
		AccountId:          "a1",
		EnquiryId:          "e1",
		MessageDocId:       path,
		MessageId:          id,
		DriverMobileNumber: driver,
		Message:            "Your vehicle is ready for collection",
		Type:               typ,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{
			PhoneNumberId: phoneID, ApiVersion: "v21.0", TokenRef: "lease-l1", TemplateLanguage: "en_GB",
		},
		CreatedBy: "user-1",
		CreatedAt: timestamppb.Now(),
		EventId:   "event-" + id,
	}
	if typ == wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE {
		task.TemplateType = "vehicle_ready"
		task.Payload = map[string]string{"driver_name": "Sam", "registration": "AB12 CDE"}
		task.Eta = 20
	}
	_, err := s.db.Doc(path).Set(context.Background(), map[string]any{
		"message": task.Message, "driverMobileNumber": driver, "createdBy": "user-1", "type": "text",
	})
	if err != nil {
		s.t.Fatalf("create %s: %v", path, err)
	}
	return task
}

// publish publishes a task as ingest does: protobuf payload, attributes, and
// the driver as ordering key unless unordered.
func (s *stack) publish(task *wadispatchv1.SendTask, ordered bool) {
	s.t.Helper()
	s.publishIn(context.Background(), task, ordered)
}

// publishIn publishes the task with the trace of ctx in its attributes, as
// ingest does.
func (s *stack) publishIn(ctx context.Context, task *wadispatchv1.SendTask, ordered bool) {
	s.t.Helper()
	data, err := proto.Marshal(task)
	if err != nil {
		s.t.Fatal(err)
	}
	m := &pubsub.Message{Data: data, Attributes: map[string]string{
		"messagePath": task.GetMessageDocId(), "leaseId": task.GetLeaseId(),
		"schema": string(proto.MessageName(task)),
	}}
	m.Attributes = tracing.Inject(ctx, m.Attributes)
	if ordered {
		m.OrderingKey = sendtask.OrderingKey(task.GetDriverMobileNumber())
	}
	if _, err := s.tasks.Publish(context.Background(), m).Get(context.Background()); err != nil {
		s.t.Fatalf("publish task: %v", err)
	}
}

func driver(n int) string { return fmt.Sprintf("+4477009%05d", n) }
