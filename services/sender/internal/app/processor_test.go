package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/logging/logtest"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

const (
	testToken = "EAAG-secret-token-do-not-log"
	testPath  = "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1"
	testPhone = "1234567890"
)

// fakeClock advances on Sleep instead of waiting, so retries and pacing run
// instantly; it records the sleeps.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

// claimFunc stands in for the recorder's gRPC client.
type claimFunc func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error)

// fakeRecorder is the harness's Claimer: scripted claims, and releases
// answered by release (success when nil), both recorded.
type fakeRecorder struct {
	h     *harness
	claim claimFunc
}

func (f fakeRecorder) ClaimSend(_ context.Context, in *wadispatchv1.ClaimSendRequest, _ ...grpc.CallOption) (*wadispatchv1.ClaimSendResponse, error) {
	f.h.mu.Lock()
	f.h.claims = append(f.h.claims, in)
	f.h.mu.Unlock()
	return f.claim(in)
}

func (f fakeRecorder) ReleaseClaim(_ context.Context, in *wadispatchv1.ReleaseClaimRequest, _ ...grpc.CallOption) (*wadispatchv1.ReleaseClaimResponse, error) {
	f.h.mu.Lock()
	f.h.releases = append(f.h.releases, in)
	release := f.h.release
	f.h.mu.Unlock()
	if release != nil {
		return nil, release(in)
	}
	return &wadispatchv1.ReleaseClaimResponse{Applied: true}, nil
}

type published struct {
	topic string
	data  []byte
	attrs map[string]string
}

type recPublisher struct {
	mu   sync.Mutex
	msgs []published
	err  error
	// failures fail as many publishes before any succeeds.
	failures int
}

func (p *recPublisher) Publish(_ context.Context, topic string, data []byte, attrs map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if p.failures > 0 {
		p.failures--
		return errors.New("pubsub unavailable")
	}
	p.msgs = append(p.msgs, published{topic, data, attrs})
	return nil
}

func (p *recPublisher) on(topic string) []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []published
	for _, m := range p.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// answer is one scripted HTTP answer of the WhatsApp stand-in.
type answer struct {
	status int
	body   string
}

func ok(wamid string) answer {
	return answer{200, fmt.Sprintf(`{"messaging_product":"whatsapp","contacts":[{"input":"+447700900123","wa_id":"447700900123"}],"messages":[{"id":%q}]}`, wamid)}
}

func metaErr(status, code int) answer {
	return answer{status, fmt.Sprintf(`{"error":{"message":"(#%d) test","type":"OAuthException","code":%d,"error_data":{"messaging_product":"whatsapp","details":"detail %d"},"fbtrace_id":"trace-%d"}}`, code, code, code, code)}
}

type harness struct {
	t       *testing.T
	clock   *fakeClock
	pub     *recPublisher
	logs    *logtest.Buffer
	metrics *Metrics
	proc    *Processor
	claims  []*wadispatchv1.ClaimSendRequest
	// release, when set, fails ReleaseClaim with its error.
	release  func(*wadispatchv1.ReleaseClaimRequest) error
	releases []*wadispatchv1.ReleaseClaimRequest

	mu       sync.Mutex
	answers  []answer
	requests []map[string]any
}

func newHarness(t *testing.T, claim claimFunc, answers ...answer) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{now: time.Now()}, pub: &recPublisher{}, logs: &logtest.Buffer{}, answers: answers}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(srv.Close)
	wa, err := whatsapp.NewClient(whatsapp.Config{BaseURL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log, err := logging.NewTo(h.logs, "sender", "p", "debug")
	if err != nil {
		t.Fatal(err)
	}
	if claim == nil {
		claim = sendClaim
	}
	recording := fakeRecorder{h: h, claim: claim}
	tokens := NewTokens(map[string]whatsapp.Token{"lease-l1": whatsapp.NewToken(testToken)}, nil, time.Minute, h.clock.Now)
	h.metrics = NewMetrics(prometheus.NewRegistry())
	h.proc = NewProcessor(Config{
		Claimant:          "sender-test",
		ClaimLease:        60 * time.Second,
		ClaimTimeout:      time.Second,
		MaxAttempts:       3,
		InitialBackoff:    100 * time.Millisecond,
		MaxBackoff:        2 * time.Second,
		CallTimeout:       5 * time.Second,
		PublishReserve:    5 * time.Second,
		PublishTimeout:    time.Second,
		InFlightRecheck:   3 * time.Second,
		PublishRetryFor:   time.Minute,
		DefaultAPIVersion: "v21.0",
		ResultsTopic:      topology.ResultsTopic,
		DeadLetterTopic:   topology.TasksDeadLetterTopic,
	}, recording, wa, tokens, h.pub, NewLimiters(60, 2, 10*time.Second), h.clock, h.metrics, log)
	t.Cleanup(func() {
		if strings.Contains(h.logs.String(), testToken) {
			t.Errorf("the token appears in the logs:\n%s", h.logs.String())
		}
		for _, m := range h.pub.msgs {
			if bytes.Contains(m.data, []byte(testToken)) || strings.Contains(fmt.Sprint(m.attrs), testToken) {
				t.Errorf("the token appears in a message published on %s", m.topic)
			}
		}
	})
	return h
}

func (h *harness) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		h.t.Errorf("Authorization header %q", r.Header.Get("Authorization"))
	}
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	h.mu.Lock()
	h.requests = append(h.requests, body)
	a := ok("wamid.default")
	if len(h.answers) > 0 {
		a, h.answers = h.answers[0], h.answers[1:]
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (h *harness) calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.requests)
}

// claim1Version is the state version the first claim is answered with.
var claim1Version = timestamppb.New(time.Date(2026, 12, 2, 6, 0, 0, 123456000, time.UTC))

func sendClaim(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
	return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: "claim-1", StateVersion: claim1Version}, nil
}

func textTask() *wadispatchv1.SendTask {
	return &wadispatchv1.SendTask{
		LeaseId:            "l1",
		EnquiryId:          "e1",
		MessageDocId:       testPath,
		MessageId:          "m1",
		DriverMobileNumber: "+447700900123",
		Message:            "Your car is ready",
		Type:               wadispatchv1.MessageType_MESSAGE_TYPE_TEXT,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{
			PhoneNumberId: testPhone, ApiVersion: "v21.0", TokenRef: "lease-l1", TemplateLanguage: "en_GB",
		},
		CreatedBy: "u1",
		CreatedAt: timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
		EventId:   "ev-1",
	}
}

func delivery(t *testing.T, task *wadispatchv1.SendTask) consume.Message {
	t.Helper()
	data, err := proto.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	return consume.Message{Data: data, Attributes: map[string]string{"messagePath": task.GetMessageDocId()}, DeliveryAttempt: 1}
}

func (h *harness) result() *wadispatchv1.SendResult {
	h.t.Helper()
	msgs := h.pub.on(topology.ResultsTopic)
	if len(msgs) != 1 {
		h.t.Fatalf("%d results published, want 1", len(msgs))
	}
	r := &wadispatchv1.SendResult{}
	if err := proto.Unmarshal(msgs[0].data, r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func wantVerdict(t *testing.T, got consume.Verdict, ack bool, outcome Outcome) {
	t.Helper()
	if got.Ack != ack || got.Reason != string(outcome) || got.Poison != (outcome == OutcomePoison) {
		t.Fatalf("verdict %+v, want ack=%v outcome=%s", got, ack, outcome)
	}
}

func TestTextSent(t *testing.T) {
	h := newHarness(t, nil, ok("wamid.A"))
	v := h.proc.Process(context.Background(), delivery(t, textTask()))
	wantVerdict(t, v, true, OutcomeSent)

	r := h.result()
	if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT || r.GetWhatsappMessageId() != "wamid.A" || r.GetClaimId() != "claim-1" ||
		r.GetAttempts() != 1 || r.GetMessageDocId() != testPath || r.GetCalledAt() == nil || r.GetCompletedAt() == nil ||
		!proto.Equal(r.GetCreatedAt(), textTask().GetCreatedAt()) || r.GetError() != nil || !proto.Equal(r.GetClaimStateVersion(), claim1Version) {
		t.Errorf("result %v", r)
	}
	attrs := h.pub.on(topology.ResultsTopic)[0].attrs
	if attrs["messagePath"] != testPath || attrs["schema"] != "wadispatch.v1.SendResult" || attrs["outcome"] != "sent" {
		t.Errorf("attributes %v", attrs)
	}
	req := h.requests[0]
	text := req["text"].(map[string]any)
	if req["to"] != "+447700900123" || req["type"] != "text" || text["body"] != "Your car is ready" || text["preview_url"] != false {
		t.Errorf("request %v", req)
	}
	c := h.claims[0]
	if c.GetClaimant() != "sender-test" || c.GetLease().AsDuration() != 60*time.Second || c.GetTask().GetMessageDocId() != testPath {
		t.Errorf("claim request %v", c)
	}
	if !strings.Contains(h.logs.String(), `"wamid":"wamid.A"`) {
		t.Errorf("no log line carries the wamid:\n%s", h.logs.String())
	}
	if got := testutil.ToFloat64(h.metrics.calls.WithLabelValues("ok", "")); got != 1 {
		t.Errorf("ok calls = %v", got)
	}
}

func TestTemplateSentWithETA(t *testing.T) {
	h := newHarness(t, nil, ok("wamid.T"))
	task := textTask()
	task.Type = wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE
	task.TemplateType = "vehicle_ready"
	task.Payload = map[string]string{"driver_name": "Sam"}
	task.Eta = 15
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, task)), true, OutcomeSent)

	tpl := h.requests[0]["template"].(map[string]any)
	got, _ := json.Marshal(tpl)
	want := `{"components":[{"parameters":[{"parameter_name":"driver_name","text":"Sam","type":"text"},{"parameter_name":"eta","text":"15","type":"text"}],"type":"body"}],"language":{"code":"en_GB"},"name":"vehicle_ready"}`
	if string(got) != want {
		t.Errorf("template\n got %s\nwant %s", got, want)
	}
}

func TestPoisonIsNackedWithoutClaim(t *testing.T) {
	for name, d := range map[string]consume.Message{
		"undecodable": {Data: []byte{0xff, 0xff, 0xff}},
		"invalid_message_path": func() consume.Message {
			task := textTask()
			task.MessageDocId = "leasecompany/l1/other/m1"
			return delivery(t, task)
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			wantVerdict(t, h.proc.Process(context.Background(), d), false, OutcomePoison)
			if len(h.claims) != 0 || h.calls() != 0 || len(h.pub.msgs) != 0 {
				t.Errorf("claims %d, calls %d, published %d; want none", len(h.claims), h.calls(), len(h.pub.msgs))
			}
			if got := testutil.ToFloat64(h.metrics.poison.WithLabelValues(name)); got != 1 {
				t.Errorf("poison{reason=%s} = %v", name, got)
			}
		})
	}
}

func TestDoneRepublishesWithoutSending(t *testing.T) {
	recorded := &wadispatchv1.SendResult{MessageDocId: testPath, ClaimId: "old", Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "wamid.OLD"}
	h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
		return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_DONE, Result: recorded}, nil
	})
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeDuplicate)
	if h.calls() != 0 {
		t.Errorf("%d WhatsApp calls, want 0", h.calls())
	}
	if r := h.result(); !proto.Equal(r, recorded) {
		t.Errorf("republished %v, want %v", r, recorded)
	}
	if len(h.pub.on(topology.TasksDeadLetterTopic)) != 0 {
		t.Error("a sent task was dead-lettered")
	}
}

func TestDoneAfterExhaustedRetriesDeadLettersAgain(t *testing.T) {
	recorded := &wadispatchv1.SendResult{MessageDocId: testPath, Outcome: wadispatchv1.Outcome_OUTCOME_FAILED,
		Error: &wadispatchv1.WhatsAppError{Code: 131000, Reason: ReasonRetriesExhausted}}
	h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
		return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_DONE, Result: recorded}, nil
	})
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeDuplicate)
	if n := len(h.pub.on(topology.TasksDeadLetterTopic)); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
}

func TestInFlightWaitsThenNacks(t *testing.T) {
	for name, tc := range map[string]struct {
		expiresIn time.Duration
		wantWait  time.Duration
	}{
		"lease far off":   {time.Minute, 3 * time.Second},
		"lease ends soon": {time.Second, time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			var h *harness
			h = newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
				return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT,
					LeaseExpiresAt: timestamppb.New(h.clock.Now().Add(tc.expiresIn))}, nil
			})
			wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomeInFlight)
			if h.calls() != 0 || len(h.pub.msgs) != 0 {
				t.Errorf("calls %d, published %d; want none", h.calls(), len(h.pub.msgs))
			}
			if s := h.clock.sleeps; len(s) == 0 || s[len(s)-1] != tc.wantWait {
				t.Errorf("sleeps %v, want last %s", s, tc.wantWait)
			}
		})
	}
}

func TestUnknownAcksWithoutSending(t *testing.T) {
	h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
		return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN, Reason: "claim expired"}, nil
	})
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeUnknown)
	if h.calls() != 0 || len(h.pub.msgs) != 0 {
		t.Errorf("calls %d, published %d; want none", h.calls(), len(h.pub.msgs))
	}
}

func TestRecorderUnavailableNacks(t *testing.T) {
	for _, resp := range []struct {
		r   *wadispatchv1.ClaimSendResponse
		err error
	}{
		{nil, status.Error(codes.Unavailable, "connection refused")},
		{&wadispatchv1.ClaimSendResponse{}, nil},
	} {
		h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) { return resp.r, resp.err })
		wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomeRecorderUnavailable)
		if h.calls() != 0 || len(h.pub.msgs) != 0 {
			t.Errorf("calls %d, published %d; want none", h.calls(), len(h.pub.msgs))
		}
	}
}

func TestMissingTokenFailsPermanently(t *testing.T) {
	h := newHarness(t, nil)
	task := textTask()
	task.LeaseWhatsappDetails.TokenRef = "lease-without-token"
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, task)), true, OutcomeFailed)
	r := h.result()
	if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_FAILED || r.GetError().GetReason() != ReasonTokenUnavailable || r.GetClaimId() != "claim-1" {
		t.Errorf("result %v", r)
	}
	if h.calls() != 0 {
		t.Errorf("%d WhatsApp calls, want 0", h.calls())
	}
}

type failingSecrets struct{ err error }

func (f failingSecrets) AccessSecret(context.Context, string) ([]byte, error) { return nil, f.err }

func TestTransientTokenFailureNacksBeforeClaiming(t *testing.T) {
	h := newHarness(t, nil)
	h.proc.tokens = NewTokens(nil, failingSecrets{errors.New("secret manager unavailable")}, time.Minute, time.Now)
	task := textTask()
	task.LeaseWhatsappDetails.TokenRef = "projects/p/secrets/lease-l1/versions/latest"
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, task)), false, OutcomeTokenLookupFailed)
	if len(h.claims) != 0 {
		t.Error("claimed although the token lookup failed transiently")
	}
}

func TestInvalidTaskFailsAfterClaim(t *testing.T) {
	for name, mutate := range map[string]func(*wadispatchv1.SendTask){
		"body too long":    func(t *wadispatchv1.SendTask) { t.Message = strings.Repeat("a", whatsapp.MaxTextBodyLength+1) },
		"no type":          func(t *wadispatchv1.SendTask) { t.Type = wadispatchv1.MessageType_MESSAGE_TYPE_UNSPECIFIED },
		"bad recipient":    func(t *wadispatchv1.SendTask) { t.DriverMobileNumber = "not a number" },
		"no phone number":  func(t *wadispatchv1.SendTask) { t.LeaseWhatsappDetails.PhoneNumberId = "" },
		"template no name": func(t *wadispatchv1.SendTask) { t.Type = wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE },
		"bad template key": func(t *wadispatchv1.SendTask) {
			t.Type, t.TemplateType, t.Payload = 2, "x", map[string]string{"Bad Key": "v"}
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			task := textTask()
			mutate(task)
			wantVerdict(t, h.proc.Process(context.Background(), delivery(t, task)), true, OutcomeFailed)
			if r := h.result(); r.GetError().GetReason() != string(whatsapp.ReasonInvalidMessage) {
				t.Errorf("result %v", r)
			}
			if h.calls() != 0 {
				t.Errorf("%d WhatsApp calls, want 0", h.calls())
			}
		})
	}
}

func TestPermanentErrorFailsAtOnce(t *testing.T) {
	h := newHarness(t, nil, metaErr(400, 131047))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeFailed)
	r := h.result()
	e := r.GetError()
	if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_FAILED || r.GetAttempts() != 1 || e.GetCode() != 131047 ||
		e.GetReason() != string(whatsapp.ReasonReEngagement) || e.GetRetryable() || e.GetHttpStatus() != 400 ||
		e.GetFbtraceId() != "trace-131047" || e.GetDetails() != "detail 131047" || e.GetMessage() != "(#131047) test" {
		t.Errorf("result %v", r)
	}
	if len(h.pub.on(topology.TasksDeadLetterTopic)) != 0 {
		t.Error("a permanent failure was dead-lettered")
	}
}

func TestRetryableErrorsRetriedThenSent(t *testing.T) {
	h := newHarness(t, nil, metaErr(500, 131000), answer{503, "<html>bad gateway</html>"}, ok("wamid.R"))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if r := h.result(); r.GetAttempts() != 3 || r.GetWhatsappMessageId() != "wamid.R" {
		t.Errorf("result %v", r)
	}
	if got := testutil.ToFloat64(h.metrics.retries.WithLabelValues("server_error")); got != 1 {
		t.Errorf("retries{server_error} = %v", got)
	}
	// Meta's hint (2 s for server errors) is longer than the first backoffs.
	for _, s := range h.clock.sleeps {
		if s < 2*time.Second {
			t.Errorf("slept %s between attempts, want at least Meta's hint", s)
		}
	}
}

func TestRetriesExhaustedFailAndDeadLetter(t *testing.T) {
	h := newHarness(t, nil, metaErr(500, 131000), metaErr(500, 131000), metaErr(500, 131000), ok("never"))
	d := delivery(t, textTask())
	wantVerdict(t, h.proc.Process(context.Background(), d), true, OutcomeRetriesExhausted)
	r := h.result()
	if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_FAILED || r.GetAttempts() != 3 || r.GetError().GetReason() != ReasonRetriesExhausted ||
		r.GetError().GetCode() != 131000 || !r.GetError().GetRetryable() {
		t.Errorf("result %v", r)
	}
	dl := h.pub.on(topology.TasksDeadLetterTopic)
	if len(dl) != 1 || !bytes.Equal(dl[0].data, d.Data) || dl[0].attrs["failureReason"] != ReasonRetriesExhausted ||
		dl[0].attrs["lastErrorCode"] != "131000" || dl[0].attrs["messagePath"] != testPath {
		t.Errorf("dead letters %v", dl)
	}
	if h.calls() != 3 {
		t.Errorf("%d calls, want 3", h.calls())
	}
}

func TestThroughputLimitSlowsDownWithoutFailing(t *testing.T) {
	// More 130429 answers than MaxAttempts: a burst must not fail the task.
	h := newHarness(t, nil, metaErr(400, 130429), metaErr(400, 130429), metaErr(400, 130429), metaErr(400, 130429), ok("wamid.S"))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if r := h.result(); r.GetAttempts() != 5 {
		t.Errorf("attempts %d, want 5", r.GetAttempts())
	}
	if got := h.proc.limiters.Rate(testPhone, h.clock.Now()); got >= 60 {
		t.Errorf("rate after 130429s = %v, want below 60", got)
	}
	later := h.clock.Now().Add(time.Minute)
	if got := h.proc.limiters.Rate(testPhone, later); got != 60 {
		t.Errorf("rate after the cool-down = %v, want 60", got)
	}
}

func TestPairRateLimitWaitsSeconds(t *testing.T) {
	h := newHarness(t, nil, metaErr(400, 131056), ok("wamid.P"))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	var waited time.Duration
	for _, s := range h.clock.sleeps {
		waited += s
	}
	if waited < 6*time.Second {
		t.Errorf("waited %s before retrying a pair rate limit, want at least 6 s", waited)
	}
}

func TestRetriesStopWithinTheLease(t *testing.T) {
	// Throughput limits do not count against attempts, so only the lease
	// bounds them: 60 s lease - 5 s reserve - 5 s call timeout.
	answers := make([]answer, 200)
	for i := range answers {
		answers[i] = metaErr(400, 130429)
	}
	h := newHarness(t, nil, answers...)
	start := h.clock.Now()
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeRetriesExhausted)
	if elapsed := h.clock.Now().Sub(start); elapsed > 50*time.Second {
		t.Errorf("retried for %s, beyond the lease's work window", elapsed)
	}
	if r := h.result(); r.GetError().GetReason() != ReasonRetriesExhausted || r.GetError().GetCode() != 130429 {
		t.Errorf("result %v", r)
	}
}

func TestOutcomeUnknownPublishesNothing(t *testing.T) {
	h := newHarness(t, nil, answer{200, `{"messaging_product":"whatsapp"`})
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomeOutcomeUnknown)
	if len(h.pub.msgs) != 0 || h.calls() != 1 {
		t.Errorf("published %d, calls %d; want 0 and 1", len(h.pub.msgs), h.calls())
	}
}

func TestPublishFailureNacks(t *testing.T) {
	h := newHarness(t, nil, ok("wamid.X"))
	h.pub.err = errors.New("pubsub unavailable")
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomePublishFailed)
}

func TestShutdownAfterClaimStillPublishes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
		cancel() // SIGTERM arrives while the claim is answered.
		return sendClaim(nil)
	}, ok("wamid.Z"))
	wantVerdict(t, h.proc.Process(ctx, delivery(t, textTask())), true, OutcomeSent)
	if r := h.result(); r.GetWhatsappMessageId() != "wamid.Z" {
		t.Errorf("result %v", r)
	}
}

func TestShutdownBeforeClaimNacks(t *testing.T) {
	for name, waitForLimiter := range map[string]bool{"while pacing": true, "no wait": false} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if waitForLimiter {
				h.proc.limiters.Reserve(testPhone, h.clock.Now(), time.Hour)
				h.proc.limiters.Reserve(testPhone, h.clock.Now(), time.Hour)
			}
			wantVerdict(t, h.proc.Process(ctx, delivery(t, textTask())), false, OutcomeCanceled)
			if len(h.claims) != 0 {
				t.Error("claimed while stopping")
			}
		})
	}
}

// claimCtxFunc stands in for a recorder that notices its caller's context.
type claimCtxFunc func(context.Context) (*wadispatchv1.ClaimSendResponse, error)

func (f claimCtxFunc) ClaimSend(ctx context.Context, _ *wadispatchv1.ClaimSendRequest, _ ...grpc.CallOption) (*wadispatchv1.ClaimSendResponse, error) {
	return f(ctx)
}

func (f claimCtxFunc) ReleaseClaim(context.Context, *wadispatchv1.ReleaseClaimRequest, ...grpc.CallOption) (*wadispatchv1.ReleaseClaimResponse, error) {
	return nil, status.Error(codes.Unimplemented, "a recorder that predates ReleaseClaim")
}

func TestShutdownDuringClaimKeepsTheClaim(t *testing.T) {
	h := newHarness(t, nil, ok("wamid.C"))
	ctx, cancel := context.WithCancel(context.Background())
	h.proc.claimer = claimCtxFunc(func(claimCtx context.Context) (*wadispatchv1.ClaimSendResponse, error) {
		cancel() // SIGTERM while the recorder commits the claim
		if err := claimCtx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		return sendClaim(nil)
	})
	wantVerdict(t, h.proc.Process(ctx, delivery(t, textTask())), true, OutcomeSent)
}

func TestTransportErrorCarriesNoToken(t *testing.T) {
	h := newHarness(t, nil, answer{502, "upstream said " + testToken})
	h.proc.cfg.MaxAttempts = 1
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeRetriesExhausted)
	// newHarness's cleanup fails the test if the token reached a log line or
	// a published message.
	if r := h.result(); r.GetError().GetHttpStatus() != 502 {
		t.Errorf("result %v", r)
	}
}

// claimsInTurn answers the i-th claim with answers[i], the last one after.
func claimsInTurn(answers ...*wadispatchv1.ClaimSendResponse) claimFunc {
	var mu sync.Mutex
	i := 0
	return func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		a := answers[min(i, len(answers)-1)]
		i++
		return a, nil
	}
}

func sendAs(id string) *wadispatchv1.ClaimSendResponse {
	return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: id}
}

func TestRetryWaitReleasesTheClaimAndClaimsAgain(t *testing.T) {
	first := sendAs("claim-1")
	first.StateVersion = claim1Version
	h := newHarness(t, claimsInTurn(first, sendAs("claim-2")), metaErr(500, 131000), ok("wamid.R"))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if len(h.releases) != 1 || h.releases[0].GetClaimId() != "claim-1" || h.releases[0].GetReason() != "server_error" ||
		h.releases[0].GetMessageDocId() != testPath {
		t.Fatalf("releases %v, want one of claim-1 for server_error", h.releases)
	}
	if len(h.claims) != 2 {
		t.Fatalf("%d claims, want 2 (the first and one after the wait)", len(h.claims))
	}
	// The takeover was answered no version: the first claim's must not
	// travel with its result.
	if r := h.result(); r.GetClaimId() != "claim-2" || r.GetAttempts() != 2 || r.GetWhatsappMessageId() != "wamid.R" || r.GetClaimStateVersion() != nil {
		t.Errorf("result %v, want SENT under claim-2 after 2 attempts, without a state version", r)
	}
	if got := testutil.ToFloat64(h.metrics.releases.WithLabelValues("released")); got != 1 {
		t.Errorf("releases{released} = %v", got)
	}
}

func TestRateLimitWaitReleasesToo(t *testing.T) {
	h := newHarness(t, nil, metaErr(400, 131056), ok("wamid.P"))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if len(h.releases) != 1 || h.releases[0].GetReason() != string(whatsapp.ReasonPairRateLimit) {
		t.Errorf("releases %v, want one for the pair rate limit", h.releases)
	}
}

func TestAfterReleasedWaitAnotherSenderDecides(t *testing.T) {
	recorded := &wadispatchv1.SendResult{MessageDocId: testPath, ClaimId: "claim-9", Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "wamid.other"}
	cases := []struct {
		name    string
		second  *wadispatchv1.ClaimSendResponse
		ack     bool
		outcome Outcome
		results int
	}{
		{"done: republished", &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_DONE, Result: recorded}, true, OutcomeDuplicate, 1},
		{"in flight: nacked", &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT}, false, OutcomeInFlight, 0},
		{"unknown: acked", &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN}, true, OutcomeUnknown, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, claimsInTurn(sendAs("claim-1"), c.second), metaErr(500, 131000), ok("never"))
			wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), c.ack, c.outcome)
			if h.calls() != 1 {
				t.Errorf("%d WhatsApp calls, want 1: the claim was not ours after the wait", h.calls())
			}
			if got := len(h.pub.on(topology.ResultsTopic)); got != c.results {
				t.Errorf("%d results published, want %d", got, c.results)
			}
			if c.results == 1 && h.result().GetWhatsappMessageId() != "wamid.other" {
				t.Errorf("republished %v, want the recorded result", h.result())
			}
		})
	}
}

func TestClaimFailingAfterReleasedWaitNacks(t *testing.T) {
	n := 0
	h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
		n++
		if n > 1 {
			return nil, status.Error(codes.Unavailable, "recorder restarting")
		}
		return sendAs("claim-1"), nil
	}, metaErr(500, 131000), ok("never"))
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomeRecorderUnavailable)
	if h.calls() != 1 || len(h.pub.msgs) != 0 {
		t.Errorf("calls %d, published %d; want 1 and 0 (the released claim is the redelivery's)", h.calls(), len(h.pub.msgs))
	}
}

func TestReleaseUnsupportedKeepsTheClaim(t *testing.T) {
	h := newHarness(t, claimsInTurn(sendAs("claim-1"), sendAs("claim-2")), metaErr(500, 131000), ok("wamid.K"))
	h.release = func(*wadispatchv1.ReleaseClaimRequest) error {
		return status.Error(codes.Unimplemented, "a recorder that predates ReleaseClaim")
	}
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if len(h.claims) != 1 {
		t.Errorf("%d claims, want 1: an unsupported release keeps the claim held", len(h.claims))
	}
	if r := h.result(); r.GetClaimId() != "claim-1" || r.GetWhatsappMessageId() != "wamid.K" {
		t.Errorf("result %v", r)
	}
	if got := testutil.ToFloat64(h.metrics.releases.WithLabelValues("error")); got != 1 {
		t.Errorf("releases{error} = %v", got)
	}
}

func TestUnsureReleaseIsAskedAgainThenClaimedAnew(t *testing.T) {
	// The first release may have landed without its answer; the second
	// says it did, so the send is claimed again rather than called under
	// a claim a redelivery may hold.
	h := newHarness(t, claimsInTurn(sendAs("claim-1"), sendAs("claim-2")), metaErr(500, 131000), ok("wamid.U"))
	answers := []error{status.Error(codes.DeadlineExceeded, "slow"), nil}
	h.release = func(*wadispatchv1.ReleaseClaimRequest) error {
		err := answers[0]
		answers = answers[1:]
		return err
	}
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if len(h.claims) != 2 || h.result().GetClaimId() != "claim-2" {
		t.Errorf("%d claims, result %v: want the send claimed again as claim-2", len(h.claims), h.result())
	}
}

// A release the recorder cannot confirm is asked again while the lease
// leaves time for a call; nothing is called under the claim meanwhile, and
// if the lease runs out first the task is held for the recorder, as when
// it cannot claim.
func TestReleaseUnsureUntilTheLeaseEndsHoldsTheTask(t *testing.T) {
	h := newHarness(t, claimsInTurn(sendAs("claim-1"), sendAs("claim-2")), metaErr(500, 131000), ok("never"))
	h.release = func(*wadispatchv1.ReleaseClaimRequest) error { return status.Error(codes.Unavailable, "recorder down") }
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomeRecorderUnavailable)
	if h.calls() != 1 {
		t.Errorf("%d WhatsApp calls, want 1: nothing may be called under a claim whose release is unconfirmed", h.calls())
	}
	if got := testutil.ToFloat64(h.metrics.releases.WithLabelValues("unsure")); got < 3 {
		t.Errorf("releases{unsure} = %v, want the release asked again until the lease ran out", got)
	}
}

// A recorder that comes back while the release is unconfirmed lets the
// task go on: released, claimed again, sent.
func TestReleaseUnsureThenConfirmedGoesOn(t *testing.T) {
	h := newHarness(t, claimsInTurn(sendAs("claim-1"), sendAs("claim-2")), metaErr(500, 131000), ok("wamid.A"))
	tries := 0
	h.release = func(*wadispatchv1.ReleaseClaimRequest) error {
		if tries++; tries <= 2 {
			return status.Error(codes.Unavailable, "recorder down")
		}
		return nil
	}
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if h.calls() != 2 || h.result().GetClaimId() != "claim-2" {
		t.Errorf("%d WhatsApp calls, result %v; want 2 and the second claim's result", h.calls(), h.result())
	}
}

func TestRefusedReleaseClaimsAgainBeforeCalling(t *testing.T) {
	// Refused: the claim is no longer the current one (its lease ran out and
	// a redelivery took it). Calling under it could send twice.
	h := newHarness(t, claimsInTurn(sendAs("claim-1"), &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT}),
		metaErr(500, 131000), ok("never"))
	h.release = func(*wadispatchv1.ReleaseClaimRequest) error {
		return status.Error(codes.FailedPrecondition, "claim claim-1 is not the current claim")
	}
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomeInFlight)
	if h.calls() != 1 {
		t.Errorf("%d WhatsApp calls, want 1", h.calls())
	}
}

func TestUnknownOutcomeIsNotReleased(t *testing.T) {
	h := newHarness(t, nil, answer{200, `{"messaging_product":"whatsapp"`})
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), false, OutcomeOutcomeUnknown)
	if len(h.releases) != 0 {
		t.Errorf("released %v after an unknown outcome: the call may have gone through", h.releases)
	}
}

func TestClassifyRelease(t *testing.T) {
	for err, want := range map[error]releaseResult{
		nil: releaseDone,
		status.Error(codes.FailedPrecondition, "not current"):  releaseLost,
		status.Error(codes.Unavailable, "down"):                releaseUnsure,
		status.Error(codes.DeadlineExceeded, "slow"):           releaseUnsure,
		status.Error(codes.Unimplemented, "an older recorder"): releaseKept,
	} {
		if got := classifyRelease(err); got != want {
			t.Errorf("classifyRelease(%v) = %v, want %v", err, got, want)
		}
	}
}

// A ClaimSend error is either the recorder's refusal of the task, final,
// or an outage: the task is then held (Unavailable), not nacked into the
// dead-letter budget.
func TestClaimErrorsAreOutagesUnlessTheRecorderRefused(t *testing.T) {
	for code, want := range map[codes.Code]consume.Verdict{
		codes.Unavailable:      {Reason: string(OutcomeRecorderUnavailable), Unavailable: true},
		codes.DeadlineExceeded: {Reason: string(OutcomeRecorderUnavailable), Unavailable: true},
		codes.PermissionDenied: {Reason: string(OutcomeRecorderUnavailable), Unavailable: true},
		codes.Internal:         {Reason: string(OutcomeRecorderUnavailable), Unavailable: true},
		codes.InvalidArgument:  {Reason: string(OutcomePoison), Poison: true},
		codes.NotFound:         {Ack: true, Reason: string(OutcomeMessageGone)},
	} {
		t.Run(code.String(), func(t *testing.T) {
			h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
				return nil, status.Error(code, "recorder says no")
			}, ok("never"))
			if got := h.proc.Process(context.Background(), delivery(t, textTask())); got != want {
				t.Errorf("verdict %+v, want %+v", got, want)
			}
			if h.calls() != 0 || len(h.pub.msgs) != 0 {
				t.Errorf("calls %d, published %d; want none", h.calls(), len(h.pub.msgs))
			}
		})
	}
}

// A result whose publish fails is published again from the task in hand:
// a nack would bring a redelivery that finds the claim in flight and, once
// its lease ends, an UNKNOWN message that was in fact sent.
func TestAResultThatFailsToPublishIsPublishedAgain(t *testing.T) {
	h := newHarness(t, nil, ok("wamid.A"))
	h.pub.failures = 3
	wantVerdict(t, h.proc.Process(context.Background(), delivery(t, textTask())), true, OutcomeSent)
	if h.calls() != 1 {
		t.Errorf("%d WhatsApp calls, want 1", h.calls())
	}
	if r := h.result(); r.GetWhatsappMessageId() != "wamid.A" {
		t.Errorf("result %v", r)
	}
	if got := testutil.ToFloat64(h.metrics.publishRetries.WithLabelValues(topology.ResultsTopic)); got != 3 {
		t.Errorf("publish retries %v, want 3", got)
	}
}
