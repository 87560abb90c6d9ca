package faulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/faultproxy"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/tools/bench"
	"github.com/visn/wadispatch/tools/stack"
)

// outageEnv probes a dependency that is down at least every 500 ms, and
// bounds each claim and each recorded message by a few seconds, so that a
// black-holed Firestore is noticed quickly.
var outageEnv = map[string][]string{
	stack.Sender:   {"SENDER_OUTAGE_PROBE_INTERVAL=500ms", "SENDER_CLAIM_TIMEOUT=2s"},
	stack.Recorder: {"RECORDER_OUTAGE_PROBE_INTERVAL=500ms", "RECORDER_HANDLER_TIMEOUT=500ms"},
}

// An outage of the recorder, then of Firestore behind it (connections
// refused, then calls never answered), each lasting more held handler
// calls than the subscriptions allow deliveries: every message created
// meanwhile is sent once when the dependency is back, every driver reply
// that arrived meanwhile is recorded, and nothing reaches a dead-letter
// topic.
func TestOutagesHoldWorkInsteadOfDeadLetteringIt(t *testing.T) {
	s := stack.StartForTest(t, stack.Options{PhoneNumberID: phoneNumberID, FirestoreFaults: true, Env: outageEnv})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fs, anc := databases(ctx, t, s)
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	maxAttempts := map[string]float64{}
	for _, sub := range topo.Subscriptions {
		if sub.DeadLetterPolicy != nil {
			maxAttempts[sub.Name] = float64(sub.DeadLetterPolicy.MaxDeliveryAttempts)
		}
	}

	fleet := bench.NewFleet(phoneNumberID, s.TokenRef, 1, 30, 3)
	if err := fleet.Seed(ctx, fs); err != nil {
		t.Fatal(err)
	}
	type outage struct {
		name     string
		down, up func() error
		// replies: drivers write while it lasts, so the recorder holds
		// them (the sender's tasks hold at the claim).
		replies bool
	}
	setFirestore := func(m faultproxy.Mode) func() error {
		return func() error { s.FirestoreFaults.Set(m); return nil }
	}
	outages := []outage{
		{"recorder stopped", func() error { return s.StopOne(stack.Recorder) }, func() error { return s.Restart(ctx, stack.Recorder) }, false},
		{"Firestore refuses the recorder", setFirestore(faultproxy.Refuse), setFirestore(faultproxy.Pass), true},
		{"Firestore never answers the recorder", setFirestore(faultproxy.Blackhole), setFirestore(faultproxy.Pass), true},
	}
	const perOutage = 40
	var msgs []bench.Message
	var repliedBy []string
	for i, o := range outages {
		senderBefore := metric(ctx, t, s, stack.Sender, "wadispatch_sender_unavailable_calls_total")
		recorderBefore := metric(ctx, t, s, stack.Recorder, "wadispatch_recorder_unavailable_calls_total")
		if err := o.down(); err != nil {
			t.Fatalf("%s: %v", o.name, err)
		}
		start := time.Now()
		batch := make([]bench.Message, perOutage)
		for j := range batch {
			batch[j] = fleet.Message(fmt.Sprintf("o%d", i), j, 0)
		}
		msgs = append(msgs, batch...)
		if err := bench.Create(ctx, fs, batch, 100); err != nil {
			t.Fatal(err)
		}
		var drivers []string
		if o.replies {
			for _, m := range batch[:3] {
				if _, err := s.Reply(ctx, m.Driver, "Running late", ""); err != nil {
					t.Fatal(err)
				}
				drivers = append(drivers, m.Driver)
			}
		}
		// Once every task that can be (and every reply) is held, as many more calls find the
		// dependency down as the subscription allows deliveries: nacked
		// instead, a message would have been dead-lettered by now.
		// Tasks are ordered per driver: a driver's next task comes once
		// the one before is done.
		waitMetric(ctx, t, s, stack.Sender, "wadispatch_sender_held_tasks", float64(distinctDrivers(batch)))
		waitMetric(ctx, t, s, stack.Sender, "wadispatch_sender_unavailable_calls_total",
			metric(ctx, t, s, stack.Sender, "wadispatch_sender_unavailable_calls_total")+maxAttempts[topology.TasksSubscription])
		if o.replies {
			waitMetric(ctx, t, s, stack.Recorder, "wadispatch_recorder_held_messages", float64(len(drivers)))
			waitMetric(ctx, t, s, stack.Recorder, "wadispatch_recorder_unavailable_calls_total",
				metric(ctx, t, s, stack.Recorder, "wadispatch_recorder_unavailable_calls_total")+maxAttempts[topology.StatusEventsSubscription])
		}
		if i > 0 { // the stopped recorder serves no metrics
			if down := metric(ctx, t, s, stack.Recorder, "wadispatch_recorder_dependency_down"); down != 1 {
				t.Errorf("%s: recorder dependency_down = %v, want 1", o.name, down)
			}
		}
		if down := metric(ctx, t, s, stack.Sender, "wadispatch_sender_dependency_down"); down != 1 {
			t.Errorf("%s: sender dependency_down = %v, want 1", o.name, down)
		}
		if err := o.up(); err != nil {
			t.Fatalf("%s over: %v", o.name, err)
		}
		held := time.Since(start)
		paths := make([]string, len(batch))
		for j, m := range batch {
			paths[j] = m.Path()
		}
		waitCtx, waitCancel := context.WithTimeout(ctx, 2*time.Minute)
		if _, err := bench.WaitFinal(waitCtx, fs, paths, 200*time.Millisecond); err != nil {
			t.Errorf("%s: %v", o.name, err)
		}
		waitCancel()
		for _, d := range drivers {
			if err := s.WaitForWindow(ctx, d, start.Truncate(time.Second)); err != nil {
				t.Errorf("%s: the reply of a driver was not recorded: %v", o.name, err)
			}
		}
		repliedBy = append(repliedBy, drivers...)
		t.Logf("%s: held %s, %v sender and %v recorder handler calls found it down; settled %s after it ended", o.name, held.Round(time.Millisecond),
			metric(ctx, t, s, stack.Sender, "wadispatch_sender_unavailable_calls_total")-senderBefore,
			metric(ctx, t, s, stack.Recorder, "wadispatch_recorder_unavailable_calls_total")-recorderBefore, (time.Since(start) - held).Round(time.Millisecond))
	}

	paths := make([]string, len(msgs))
	for i, m := range msgs {
		paths[i] = m.Path()
	}
	docs, err := bench.ReadDocs(ctx, fs, paths)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if d := docs[m.Path()]; d.Sent() {
			_, _ = s.WaitForAncillaryID(ctx, anc, dispatch.AncillaryPath(m.Driver, m.Ref.EnquiryID), d.WAMID)
		}
	}
	report, err := bench.Audit(ctx, fs, anc, s.SimulatorURL, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range report.Violations {
		t.Error(v)
	}
	if report.Sent != len(msgs) {
		t.Errorf("%d of %d messages sent", report.Sent, len(msgs))
	}
	t.Logf("outage test summary: %s; %d driver replies recorded", report.Summary(), len(repliedBy))

	if dead, exhausted := deadLettered(ctx, t, s); dead+exhausted != 0 {
		t.Errorf("%d messages on the dead-letter topics after outages (%d of them with retries exhausted)", dead+exhausted, exhausted)
	}
	attempts := deliveryAttempts(t, s.LogPath(stack.Sender))
	worst := 0
	for _, a := range attempts {
		worst = max(worst, a)
	}
	if worst > 1 {
		t.Errorf("a task was delivered %d times: an outage spent delivery attempts (%v)", worst, histogram(attempts))
	}
}

func metric(ctx context.Context, t *testing.T, s *stack.Stack, service, name string) float64 {
	t.Helper()
	v, err := s.Metric(ctx, service, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitMetric waits until the named metric reaches at least want.
func waitMetric(ctx context.Context, t *testing.T, s *stack.Stack, service, name string, want float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		v, err := s.Metric(ctx, service, name, nil)
		if err == nil && v >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s %s = %v, want at least %v (%v)", service, name, v, want, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deadLettered takes and counts what waits on the dead-letter hold
// subscriptions now, apart from the tasks
// the sender dead-lettered on purpose because WhatsApp's retries ran out
// (failureReason attribute): those are counted in exhausted.
func deadLettered(ctx context.Context, t *testing.T, s *stack.Stack) (dead, exhausted int) {
	t.Helper()
	ps, err := pubsubemu.NewClient(ctx, s.PubSubAddr, pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for _, hold := range []string{topology.TasksDeadLetterHoldingSub, topology.ResultsTopic + "-dead-letter-hold", topology.StatusEventsTopic + "-dead-letter-hold"} {
		msgs, err := pubsubemu.TakeAll(ctx, ps, hold)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.GetAttributes()["failureReason"] != "" {
				exhausted++
				continue
			}
			dead++
			t.Logf("dead letter on %s: %v", hold, m.GetAttributes())
		}
	}
	return dead, exhausted
}

// deliveryAttempts reads the highest Pub/Sub delivery attempt of each task
// from the sender's log.
func deliveryAttempts(t *testing.T, logPath string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range logged(t, logPath, "pubsub message handled") {
		out[line.MessagePath] = max(out[line.MessagePath], line.DeliveryAttempt)
	}
	if len(out) == 0 {
		t.Fatalf("no handled tasks in %s", logPath)
	}
	return out
}

// logLine is what the fault tests read of a service's log line.
type logLine struct {
	Message         string `json:"message"`
	MessagePath     string `json:"messagePath"`
	DeliveryAttempt int    `json:"deliveryAttempt"`
}

// logged reads the lines of a service's log (every run of the program:
// restarts append) whose message is message.
func logged(t *testing.T, logPath, message string) []logLine {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line logLine
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == message {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// histogram counts tasks by delivery attempt, "attempt:tasks".
func histogram(attempts map[string]int) []string {
	by := map[int]int{}
	for _, a := range attempts {
		by[a]++
	}
	var out []string
	for a, n := range by {
		out = append(out, fmt.Sprintf("%d:%d", a, n))
	}
	sort.Strings(out)
	return out
}

func distinctDrivers(msgs []bench.Message) int {
	drivers := map[string]bool{}
	for _, m := range msgs {
		drivers[m.Driver] = true
	}
	return len(drivers)
}

// databases opens the stack's default and ancillary Firestore databases for
// the test, closed when it ends.
func databases(ctx context.Context, t *testing.T, s *stack.Stack) (fs, anc *firestore.Client) {
	t.Helper()
	for _, db := range []struct {
		name string
		c    **firestore.Client
	}{{"(default)", &fs}, {"ancillary", &anc}} {
		c, err := s.Firestore(ctx, db.name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		*db.c = c
	}
	return fs, anc
}
