package stack_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/testinfra/gcloudemu"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/tools/stack"
)

// ctl runs wadispatchctl against the stack and fails t unless it succeeds.
func ctl(t *testing.T, ctx context.Context, s *stack.Stack, args ...string) string {
	t.Helper()
	out, err := s.Ctl(ctx, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// The way back (docs/guarantees.md, "Dead letters: the way back"), as an
// operator runs it over the real processes. Two tasks end on the tasks'
// dead-letter hold: one whose WhatsApp retries ran out (the sender
// dead-letters it, its outcome FAILED) and one the subscription's
// dead-letter policy moved after ten failed deliveries (here the test
// nacks them, standing in for a sender that cannot handle the task). The
// operator lists them, replays as a dry run, resends the FAILED one and
// replays: each message reaches WhatsApp exactly once, and a second replay
// finds nothing.
func TestDeadLettersReplayedAndSentOnce(t *testing.T) {
	if gcloudemu.Selected() {
		t.Skip("on Google's Pub/Sub emulator: a message nacked its subscription's max delivery attempts times is not redelivered, yet never reaches the dead-letter topic")
	}
	s, fs, ctx := setup(t, stack.Options{Env: map[string][]string{
		stack.Sender: {"SENDER_MAX_ATTEMPTS=2", "SENDER_INITIAL_BACKOFF=50ms", "SENDER_MAX_BACKOFF=100ms"},
	}})
	ps, err := pubsubemu.NewClient(ctx, s.PubSubAddr, pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	exhausted, moved := demoCase(t, "msg-template", "dl-exhausted"), demoCase(t, "msg-text", "dl-moved")
	exhaustedDriver, movedDriver := "+447911123402", "+447911123401"
	if err := s.OpenWindow(ctx, movedDriver); err != nil {
		t.Fatal(err)
	}

	// Both of the sender's attempts meet a retryable error.
	if err := s.AddFault(ctx, map[string]any{"kind": "error", "code": 131000, "times": 2, "to": strings.TrimPrefix(exhaustedDriver, "+")}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Doc(exhausted.Path()).Create(ctx, exhausted.Fields); err != nil {
		t.Fatal(err)
	}
	if doc := waitForStatus(t, ctx, fs, exhausted.Path(), "FAILED"); doc["failureReason"] == nil {
		t.Errorf("FAILED without a reason: %v", doc)
	}

	// The sender publishes its dead letter after the FAILED result.
	for out := ""; !strings.Contains(out, exhausted.Path()); {
		if ctx.Err() != nil {
			t.Fatalf("the sender's dead letter never came:\n%s", out)
		}
		out = ctl(t, ctx, s, "deadletters", "list", "--subscription", "tasks")
	}

	if err := s.StopOne(stack.Sender); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Doc(moved.Path()).Create(ctx, moved.Fields); err != nil {
		t.Fatal(err)
	}
	waitForLogLine(t, ctx, s.LogPath(stack.Ingest), moved.Path(), "task published")
	if n, err := pubsubemu.NackUntilDeadLettered(ctx, ps, topology.TasksSubscription); err != nil || n != 10 {
		t.Fatalf("nacked %d deliveries, want the policy's 10: %v", n, err)
	}
	if err := s.Restart(ctx, stack.Sender); err != nil {
		t.Fatal(err)
	}

	out := ctl(t, ctx, s, "deadletters", "list", "--subscription", "tasks")
	for _, want := range []string{"2 dead letter(s)", moved.Path(), "max delivery attempts on " + topology.TasksSubscription,
		"retries_exhausted: last error", "WhatsApp error 131000"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	for _, number := range []string{exhaustedDriver, movedDriver} {
		if strings.Contains(out, number) || strings.Contains(out, strings.TrimPrefix(number, "+")) {
			t.Errorf("list shows a driver's number:\n%s", out)
		}
	}

	out = ctl(t, ctx, s, "deadletters", "replay")
	if !strings.Contains(out, "dry run: nothing replayed") || !strings.Contains(out, "wadispatchctl resend") {
		t.Errorf("dry run:\n%s", out)
	}
	var listed struct {
		Holds []struct{ Letters []json.RawMessage }
	}
	if err := json.Unmarshal([]byte(ctl(t, ctx, s, "deadletters", "list", "--subscription", "tasks", "--json")), &listed); err != nil ||
		len(listed.Holds) != 1 || len(listed.Holds[0].Letters) != 2 {
		t.Fatalf("after the dry run: %+v %v", listed, err)
	}

	// The runbook: the FAILED message is sent again by a resend, then the
	// replay takes its dead letter back (the sender finds it sent) and sends
	// the other.
	ctl(t, ctx, s, "resend", exhausted.Path())
	isSent := func(doc map[string]any) bool {
		st, _ := doc["status"].(string)
		return st == "SENT" || st == "DELIVERED" || st == "READ"
	}
	waitForDocWhere(t, ctx, fs, exhausted.Path(), "the resent message SENT", isSent)
	out = ctl(t, ctx, s, "deadletters", "replay", "--yes")
	if !strings.Contains(out, "replayed 2, failed 0, left 0") || strings.Count(out, "to "+topology.TasksTopic+" as ") != 2 {
		t.Errorf("replay:\n%s", out)
	}
	waitForStatus(t, ctx, fs, moved.Path(), "SENT")
	waitForLogLine(t, ctx, s.LogPath(stack.Sender), exhausted.Path(), "send already done; recorded result republished, nothing sent")

	out = ctl(t, ctx, s, "deadletters", "replay", "--yes")
	if !strings.Contains(out, "replayed 0, failed 0, left 0") {
		t.Errorf("a second replay:\n%s", out)
	}
	for _, d := range []string{exhaustedDriver, movedDriver} {
		if accepted, err := s.Accepted(ctx, d); err != nil || len(accepted) != 1 {
			t.Errorf("WhatsApp accepted %d messages for %s, want 1 (%v)", len(accepted), d, err)
		}
	}
	if out := ctl(t, ctx, s, "deadletters", "list"); strings.Count(out, "no dead letters") != strings.Count(out, "-dead-letter-hold:") {
		t.Errorf("the holds after the replays:\n%s", out)
	}
}
