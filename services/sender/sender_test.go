package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/sender/internal/app"
)

// simOptions are Meta's limits, with the pair limit off (tests send several
// messages to one driver) unless a test turns it on.
func simOptions() whatsappsim.Options {
	o := whatsappsim.DefaultOptions()
	o.PairInterval = 0
	o.Webhook = whatsappsim.WebhookOptions{}
	return o
}

func (s *stack) openWindow(to string) {
	s.t.Helper()
	if _, err := s.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: to, Text: "hi"}); err != nil {
		s.t.Fatal(err)
	}
}

func TestSendsTextAndTemplate(t *testing.T) {
	s := newStack(t, simOptions(), true)
	textTask := s.newTask("text-1", driver(1), wadispatchv1.MessageType_MESSAGE_TYPE_TEXT)
	tplTask := s.newTask("tpl-1", driver(2), wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE)
	s.openWindow(driver(1)) // free-form text needs the 24-hour window
	s.startSender(s.testSpec("sender-a"))
	s.publish(textTask, true)
	s.publish(tplTask, true)

	for _, task := range []*wadispatchv1.SendTask{textTask, tplTask} {
		s.waitForSent(20*time.Second, task.GetMessageDocId())
	}
	text := s.sim.Messages(phoneID, driver(1))
	if len(text) != 1 || text[0].Type != "text" || text[0].Text == nil ||
		text[0].Text.Body != textTask.GetMessage() || text[0].Text.PreviewURL {
		t.Fatalf("simulator accepted %+v for the text task", text)
	}
	var body map[string]any
	if err := json.Unmarshal(text[0].Body, &body); err != nil || body["messaging_product"] != "whatsapp" || body["recipient_type"] != "individual" {
		t.Errorf("request body %s", text[0].Body)
	}
	tpl := s.sim.Messages(phoneID, driver(2))
	if len(tpl) != 1 || tpl[0].Template == nil {
		t.Fatalf("simulator accepted %+v for the template task", tpl)
	}
	gotTpl, _ := json.Marshal(tpl[0].Template)
	wantTpl := `{"name":"vehicle_ready","language":"en_GB","parameters":[{"component":"body","name":"driver_name","text":"Sam"},{"component":"body","name":"eta","text":"20"},{"component":"body","name":"registration","text":"AB12 CDE"}]}`
	if string(gotTpl) != wantTpl {
		t.Errorf("template\n got %s\nwant %s", gotTpl, wantTpl)
	}
	for task, accepted := range map[*wadispatchv1.SendTask]whatsappsim.Accepted{textTask: text[0], tplTask: tpl[0]} {
		rs := s.resultsFor(task.GetMessageDocId())
		if len(rs) != 1 {
			t.Fatalf("results for %s: %v, want one", task.GetMessageId(), rs)
		}
		r := rs[0]
		if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT || r.GetWhatsappMessageId() != accepted.WAMID ||
			r.GetAttempts() != 1 || r.GetClaimId() == "" || r.GetCalledAt() == nil || r.GetCompletedAt() == nil {
			t.Errorf("results for %s: %v", task.GetMessageId(), rs)
		}
		if st := s.state(task.GetMessageDocId()); st.GetWhatsappMessageId() != accepted.WAMID {
			t.Errorf("recorded wamid %q, simulator's %q", st.GetWhatsappMessageId(), accepted.WAMID)
		}
	}
	s.waitForLogs(10*time.Second, `"wamid":"`+text[0].WAMID+`"`, `"messagePath":"`+textTask.GetMessageDocId()+`"`, "claimed the send", "result published")
}

func TestErrorClasses(t *testing.T) {
	s := newStack(t, simOptions(), true)
	type class struct {
		name    string
		fault   *whatsappsim.Fault
		token   string
		outcome wadispatchv1.Outcome
		code    int32
		reason  string
		calls   int // requests the simulator saw for the driver
		dead    bool
	}
	classes := []class{
		{name: "permanent undeliverable", fault: &whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: 131026, Times: 1},
			outcome: wadispatchv1.Outcome_OUTCOME_FAILED, code: 131026, reason: string(whatsapp.ReasonUndeliverable), calls: 1},
		{name: "permanent template missing", fault: &whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: 132001, Times: 1},
			outcome: wadispatchv1.Outcome_OUTCOME_FAILED, code: 132001, reason: string(whatsapp.ReasonTemplate), calls: 1},
		{name: "bad token", token: "EAAG-wrong-token",
			outcome: wadispatchv1.Outcome_OUTCOME_FAILED, code: 190, reason: string(whatsapp.ReasonAuth), calls: 1},
		{name: "retryable server error", fault: &whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: 131000, Times: 2},
			outcome: wadispatchv1.Outcome_OUTCOME_SENT, calls: 3},
		{name: "retryable proxy 503", fault: &whatsappsim.Fault{Kind: whatsappsim.FaultHTTPStatus, HTTPStatus: 503, Times: 1},
			outcome: wadispatchv1.Outcome_OUTCOME_SENT, calls: 2},
		{name: "retries exhausted", fault: &whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: 131000},
			outcome: wadispatchv1.Outcome_OUTCOME_FAILED, code: 131000, reason: app.ReasonRetriesExhausted, calls: 3, dead: true},
	}
	// A connection dropped after the request was written may have reached
	// WhatsApp: that is an unknown outcome, see TestUnknownOutcomeIsNotResent.

	cfg := s.testSpec("sender-a")
	tokens := map[string]string{"lease-l1": testToken}
	tasks := map[string]*wadispatchv1.SendTask{}
	for i, c := range classes {
		to := driver(100 + i)
		s.openWindow(to)
		task := s.newTask(fmt.Sprintf("err-%d", i), to, wadispatchv1.MessageType_MESSAGE_TYPE_TEXT)
		if c.token != "" {
			ref := fmt.Sprintf("lease-bad-%d", i)
			tokens[ref] = c.token
			task.LeaseWhatsappDetails.TokenRef = ref
		}
		if c.fault != nil {
			f := *c.fault
			f.To = to
			if err := s.sim.AddFault(f); err != nil {
				t.Fatal(err)
			}
		}
		tasks[c.name] = task
	}
	b, _ := json.Marshal(tokens)
	cfg.Tokens = string(b)
	s.startSender(cfg)
	for _, c := range classes {
		s.publish(tasks[c.name], true)
	}
	for _, c := range classes {
		task := tasks[c.name]
		t.Run(c.name, func(t *testing.T) {
			path := task.GetMessageDocId()
			s.waitFor(30*time.Second, "result of "+c.name, func() bool {
				return len(s.resultsFor(path)) > 0 && (!c.dead || len(s.deadLettersFor(path)) > 0)
			})
			r := s.resultsFor(path)[0]
			if r.GetOutcome() != c.outcome || r.GetAttempts() != int32(c.calls) {
				t.Errorf("outcome %s after %d attempts, want %s after %d", r.GetOutcome(), r.GetAttempts(), c.outcome, c.calls)
			}
			if c.outcome == wadispatchv1.Outcome_OUTCOME_FAILED {
				e := r.GetError()
				if e.GetCode() != c.code || e.GetReason() != c.reason || e.GetHttpStatus() == 0 || e.GetMessage() == "" || e.GetFbtraceId() == "" {
					t.Errorf("error %v, want code %d reason %s with Meta's fields", e, c.code, c.reason)
				}
				st := s.state(path)
				if st.GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED || st.GetReason() != c.reason {
					t.Errorf("recorded %s (%s), want FAILED (%s)", st.GetStatus(), st.GetReason(), c.reason)
				}
			}
			if got := s.sim.Counts(); got.AcceptedByRecipient[strings.TrimPrefix(task.GetDriverMobileNumber(), "+")] > 1 {
				t.Errorf("driver got %d messages", got.AcceptedByRecipient[task.GetDriverMobileNumber()])
			}
			dl := s.deadLettersFor(path)
			if c.dead != (len(dl) > 0) {
				t.Errorf("dead letters %d, want some: %v", len(dl), c.dead)
			}
			if c.dead && (dl[0].Attributes["failureReason"] != app.ReasonRetriesExhausted || dl[0].Attributes["lastErrorCode"] != "131000") {
				t.Errorf("dead letter attributes %v", dl[0].Attributes)
			}
		})
	}
}

// TestUnknownOutcomeIsNotResent: WhatsApp accepts the message but the answer
// is lost. The sender publishes nothing and the claim expires into UNKNOWN;
// redeliveries send nothing.
func TestUnknownOutcomeIsNotResent(t *testing.T) {
	s := newStack(t, simOptions(), true)
	to := driver(200)
	s.openWindow(to)
	if err := s.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultDropAfterAccept, To: to}); err != nil {
		t.Fatal(err)
	}
	task := s.newTask("lost-1", to, wadispatchv1.MessageType_MESSAGE_TYPE_TEXT)
	cfg := s.testSpec("sender-a")
	cfg.ClaimLease = 3 * time.Second
	cfg.WhatsAppTimeout = time.Second
	cfg.PublishTimeout = time.Second
	s.startSender(cfg)
	s.publish(task, true)
	s.waitFor(20*time.Second, "UNKNOWN", func() bool {
		return s.state(task.GetMessageDocId()).GetStatus() == wadispatchv1.MessageStatus_MESSAGE_STATUS_UNKNOWN
	})
	// The recorder commits UNKNOWN before the sender hears the decision.
	s.waitForLogs(10*time.Second, "outcome is UNKNOWN")
	if n := len(s.sim.Messages(phoneID, to)); n != 1 {
		t.Errorf("simulator accepted %d messages, want 1", n)
	}
	if rs := s.resultsFor(task.GetMessageDocId()); len(rs) != 0 {
		t.Errorf("results published for an unknown outcome: %v", rs)
	}
}

func TestThroughputBurstIsSlowedNotFailed(t *testing.T) {
	opts := simOptions()
	opts.Throughput = 10 // a number whose limit is far below our pacing
	s := newStack(t, opts, false)
	cfg := s.testSpec("sender-a")
	cfg.RatePerNumber = 200
	cfg.RateBurst = 40
	cfg.MaxInFlight = 64
	cfg.ClaimLease = 30 * time.Second
	cfg.MaxAttempts = 2
	const n = 40
	var tasks []*wadispatchv1.SendTask
	for i := range n {
		task := s.newTask(fmt.Sprintf("burst-%d", i), driver(300+i), wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE)
		tasks = append(tasks, task)
		s.publish(task, true)
	}
	s.startSender(cfg)
	s.waitFor(60*time.Second, "all burst results", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.resultCount >= n
	})
	for _, task := range tasks {
		rs := s.resultsFor(task.GetMessageDocId())
		if len(rs) != 1 || rs[0].GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT {
			t.Errorf("%s: results %v, want one SENT", task.GetMessageId(), rs)
		}
	}
	c := s.sim.Counts()
	if c.RejectedByCode[130429] == 0 {
		t.Fatalf("the simulator never answered 130429 (counts %+v): the burst did not hit the limit", c)
	}
	if c.Accepted != n {
		t.Errorf("simulator accepted %d, want %d", c.Accepted, n)
	}
	t.Logf("%d messages at a 10/s limit: %d answers 130429, all sent", n, c.RejectedByCode[130429])
}

func TestDuplicateDeliverySendsOnce(t *testing.T) {
	s := newStack(t, simOptions(), true)
	to := driver(400)
	s.openWindow(to)
	task := s.newTask("dup-1", to, wadispatchv1.MessageType_MESSAGE_TYPE_TEXT)
	s.startSender(s.testSpec("sender-a"))
	s.publish(task, true)
	s.waitForSent(20*time.Second, task.GetMessageDocId())
	s.publish(task, true) // Eventarc or Pub/Sub delivers the task again
	s.waitFor(20*time.Second, "the republished result", func() bool { return len(s.resultsFor(task.GetMessageDocId())) == 2 })

	if n := len(s.sim.Messages(phoneID, to)); n != 1 {
		t.Errorf("simulator accepted %d messages, want 1", n)
	}
	rs := s.resultsFor(task.GetMessageDocId())
	if rs[0].GetWhatsappMessageId() == "" || rs[1].GetWhatsappMessageId() != rs[0].GetWhatsappMessageId() {
		t.Errorf("republished result %v differs from the first %v", rs[1], rs[0])
	}
}

func TestRacingSendersSendOnce(t *testing.T) {
	s := newStack(t, simOptions(), true)
	cfgA, cfgB := s.testSpec("sender-a"), s.testSpec("sender-b")
	cfgA.InFlightRecheck, cfgB.InFlightRecheck = 200*time.Millisecond, 200*time.Millisecond
	s.startSender(cfgA)
	s.startSender(cfgB)
	const messages, copies = 5, 4
	var tasks []*wadispatchv1.SendTask
	for i := range messages {
		to := driver(500 + i)
		s.openWindow(to)
		tasks = append(tasks, s.newTask(fmt.Sprintf("race-%d", i), to, wadispatchv1.MessageType_MESSAGE_TYPE_TEXT))
	}
	// Unordered copies published at once, so both senders hold copies of one
	// task at the same time (with the driver as ordering key Pub/Sub would
	// hand them out one after another).
	var wg sync.WaitGroup
	for _, task := range tasks {
		for range copies {
			wg.Go(func() { s.publish(task, false) })
		}
	}
	wg.Wait()
	for _, task := range tasks {
		s.waitFor(30*time.Second, "every copy answered", func() bool { return len(s.resultsFor(task.GetMessageDocId())) == copies })
	}
	for _, task := range tasks {
		if n := len(s.sim.Messages(phoneID, task.GetDriverMobileNumber())); n != 1 {
			t.Errorf("%s: simulator accepted %d messages, want 1", task.GetMessageId(), n)
		}
	}
	// A sender logs the done decision after republishing the result.
	s.waitFor(10*time.Second, "a sender seeing another's claim (decision in_flight or done)", func() bool {
		logs := s.logs.String()
		return strings.Contains(logs, `"decision":"in_flight"`) || strings.Contains(logs, `"decision":"done"`)
	})
}

func TestShutdownFinishesInFlightSend(t *testing.T) {
	s := newStack(t, simOptions(), true)
	to := driver(600)
	s.openWindow(to)
	if err := s.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultLatency, Latency: whatsappsim.Duration(time.Second), To: to}); err != nil {
		t.Fatal(err)
	}
	task := s.newTask("stop-1", to, wadispatchv1.MessageType_MESSAGE_TYPE_TEXT)
	stop := s.startSender(s.testSpec("sender-a"))
	s.publish(task, true)
	s.waitFor(10*time.Second, "the WhatsApp call", func() bool { return s.sim.Counts().Requests > 0 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("run returned %v, want nil", err)
	}
	s.waitFor(5*time.Second, "the result of the send in flight at shutdown", func() bool { return len(s.resultsFor(task.GetMessageDocId())) == 1 })
	if r := s.resultsFor(task.GetMessageDocId())[0]; r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT {
		t.Errorf("result %v", r)
	}
	t.Logf("stopped %s after SIGTERM-equivalent", time.Since(start).Round(time.Millisecond))
}

func TestReadinessFollowsTheRecorder(t *testing.T) {
	s := newStack(t, simOptions(), false)
	s.startSender(s.testSpec("sender-a"))
	addr := s.opsAddr("sender-a")
	get := func(path string) (int, string) {
		for range 50 {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		t.Fatalf("ops server %s not reachable", addr)
		return 0, ""
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d %s with the recorder up", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "wadispatch_sender_in_flight_tasks") {
		t.Error("/metrics lacks the sender's metrics")
	}

	down := s.testSpec("sender-b")
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	down.RecorderAddr = dead.Addr().String()
	_ = dead.Close()
	s.startSender(down)
	addr = s.opsAddr("sender-b")
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d with no recorder, want 503", code)
	}
}

// TestPoisonTaskIsDeadLettered: a payload that is not a SendTask is nacked,
// never acked as done, until the subscription's dead-letter policy moves it.
func TestPoisonTaskIsDeadLettered(t *testing.T) {
	s := newStack(t, simOptions(), true)
	s.startSender(s.testSpec("sender-a"))
	const path = "poison/not-a-task"
	if _, err := s.tasks.Publish(context.Background(), &pubsub.Message{
		Data: []byte("{\"not\": \"protobuf\"}"), Attributes: map[string]string{"messagePath": path},
	}).Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.waitFor(30*time.Second, "the poison task on the dead-letter topic", func() bool { return len(s.deadLettersFor(path)) > 0 })
	dl := s.deadLettersFor(path)[0]
	if string(dl.Data) != "{\"not\": \"protobuf\"}" {
		t.Errorf("dead letter %q", dl.Data)
	}
	if c := s.sim.Counts(); c.Requests != 0 {
		t.Errorf("%d WhatsApp calls for a poison task", c.Requests)
	}
	if n := strings.Count(s.logs.String(), "poison task"); n < 2 {
		t.Errorf("%d poison log lines, want one per delivery attempt", n)
	}
}

// TestRetryWaitReleasesTheClaim: a retryable error, a released wait, a new
// claim, then success, against the real recorder: one message reaches the
// driver, one SENT result is published under the new claim.
func TestRetryWaitReleasesTheClaim(t *testing.T) {
	s := newStack(t, simOptions(), true)
	to := driver(400)
	s.openWindow(to)
	if err := s.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: 131000, Times: 1, To: to}); err != nil {
		t.Fatal(err)
	}
	task := s.newTask("released-1", to, wadispatchv1.MessageType_MESSAGE_TYPE_TEXT)
	s.startSender(s.testSpec("sender-a"))
	s.publish(task, true)
	path := task.GetMessageDocId()
	s.waitForSent(30*time.Second, path)
	if n := len(s.sim.Messages(phoneID, to)); n != 1 {
		t.Errorf("simulator accepted %d messages, want 1", n)
	}
	rs := s.resultsFor(path)
	if len(rs) != 1 || rs[0].GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT || rs[0].GetAttempts() != 2 {
		t.Fatalf("results %v, want one SENT after 2 attempts", rs)
	}
	// The recorder's read API keeps claim ids to itself: read the state.
	snap, err := s.db.Doc(path + "/dispatch/state").Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if claim, released := snap.Data()["claimId"], snap.Data()["released"]; claim != rs[0].GetClaimId() || released == true {
		t.Errorf("state claim %v (released %v), result claim %s: want the second claim, not released", claim, released, rs[0].GetClaimId())
	}
	if claims := snap.Data()["claims"]; claims != int64(2) {
		t.Errorf("claims %v, want 2: released before the wait and claimed again after it", claims)
	}
}
