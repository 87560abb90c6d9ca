package faulttest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/bench"
	"github.com/visn/wadispatch/tools/stack"
)

const phoneNumberID = "100000000000001"

// faultEnv shortens the claim lease (default 45 s) and the sweeper (30 s) so
// a send whose sender died is marked UNKNOWN within seconds. The lease still
// holds a few retries: the WhatsApp client waits 2 s after a server error
// and 6 s after a pair rate limit answer, and the lease keeps one call
// (SENDER_WHATSAPP_TIMEOUT) and the publish reserve (SENDER_PUBLISH_TIMEOUT)
// at its end.
var faultEnv = map[string][]string{
	stack.Sender: {
		"SENDER_CLAIM_LEASE=20s",
		"SENDER_WHATSAPP_TIMEOUT=2s",
		"SENDER_PUBLISH_TIMEOUT=3s",
		"SENDER_INITIAL_BACKOFF=100ms",
		"SENDER_MAX_BACKOFF=1s",
		"SENDER_RATE_COOLDOWN=2s",
	},
	stack.Recorder: {
		"RECORDER_CLAIM_LEASE=20s",
		"RECORDER_SWEEP_INTERVAL=1s",
	},
}

// The fault test: 600 messages written through the official client over
// about 15 s, spread over 3 leases, 300 enquiries (one driver each, two
// messages 7.5 s apart, so within WhatsApp's default pair rate limit of one
// message per 6 s) and 12 users, while the sender is SIGKILLed three times, the recorder restarted,
// WhatsApp fails about 20% of calls with retryable errors, answers two
// bursts of 130429 and delays one call in ten by 700 ms (holding the task's
// Pub/Sub ack). Afterwards every guarantee of docs/architecture.md is checked by
// bench.Audit against the documents and what the WhatsApp simulator
// accepted.
func TestNoMessageLostOrDuplicatedUnderFaults(t *testing.T) {
	const n = 600
	seed := time.Now().UnixNano() % 1_000_000
	t.Logf("simulator fault seed %d (rerun the same faults with it in --seed)", seed)
	s := stack.StartForTest(t, stack.Options{
		PhoneNumberID: phoneNumberID,
		SimulatorArgs: []string{"--seed", strconv.FormatInt(seed, 10)},
		Env:           faultEnv,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	anc, err := s.Firestore(ctx, "ancillary")
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()

	fleet := bench.NewFleet(phoneNumberID, s.TokenRef, 3, 100, 4)
	if err := fleet.Seed(ctx, fs); err != nil {
		t.Fatal(err)
	}
	msgs := make([]bench.Message, n)
	for i := range msgs {
		msgs[i] = fleet.Message("f", i, 4)
	}
	if err := openWindows(ctx, s, msgs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []map[string]any{
		{"kind": "error", "code": 131000, "probability": 0.12},
		{"kind": "http_status", "http_status": 503, "probability": 0.09},
		{"kind": "latency", "latency": "700ms", "probability": 0.1},
	} {
		if err := s.AddFault(ctx, f); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := bench.Create(ctx, fs, msgs, 40); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := injectFaults(ctx, t, s, start); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d messages created and faults injected in %s", n, time.Since(start).Round(time.Millisecond))

	paths := make([]string, n)
	for i, m := range msgs {
		paths[i] = m.Path()
	}
	// Tasks a killed sender held come back after Pub/Sub's 60 s stream ack
	// deadline, so settling takes over a minute; the margin is for a busy
	// machine running the rest of the suite.
	waitCtx, waitCancel := context.WithTimeout(ctx, 180*time.Second)
	defer waitCancel()
	docs, err := bench.WaitFinal(waitCtx, fs, paths, 500*time.Millisecond)
	if err != nil {
		t.Error(err)
	}
	t.Logf("settled %s after the first message", time.Since(start).Round(time.Millisecond))
	// The recorder writes the ancillary record after the message document
	// (another database), so a final status can be read before it. A wamid
	// still missing after the wait is the audit's to report.
	ancCtx, ancCancel := context.WithTimeout(ctx, 30*time.Second)
	defer ancCancel()
	for _, m := range msgs {
		if d := docs[m.Path()]; d.Sent() && d.WAMID != "" {
			_, _ = s.WaitForAncillaryID(ancCtx, anc, dispatch.AncillaryPath(m.Driver, m.Ref.EnquiryID), d.WAMID)
		}
	}

	report, err := bench.Audit(ctx, fs, anc, s.SimulatorURL, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range report.Violations {
		t.Error(v)
	}
	t.Logf("fault test summary: %s", report.Summary())
	if report.Sent == 0 {
		t.Error("no message was sent: the faults left nothing to check")
	}
}

// openWindows has every driver who gets free-form text (one message in
// four) write to the business number first, as WhatsApp requires, and waits
// until the pipeline has recorded it.
func openWindows(ctx context.Context, s *stack.Stack, msgs []bench.Message) error {
	drivers := map[string]bool{}
	for _, m := range msgs {
		if m.Fields["type"] == "text" {
			drivers[m.Driver] = true
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for d := range drivers {
		g.Go(func() error { return s.OpenWindow(ctx, d) })
	}
	return g.Wait()
}

// injectFaults runs the crash schedule: the sender is SIGKILLed three times
// (restarted half a second later), the recorder is restarted gracefully, and
// WhatsApp answers two bursts of 130429 to every call.
func injectFaults(ctx context.Context, t *testing.T, s *stack.Stack, start time.Time) error {
	at := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(d))):
			return nil
		}
	}
	killSender := func(d time.Duration) error {
		if err := at(d); err != nil {
			return err
		}
		s.Kill(stack.Sender)
		t.Logf("%5.1fs sender SIGKILLed", time.Since(start).Seconds())
		time.Sleep(500 * time.Millisecond)
		if err := s.Restart(ctx, stack.Sender); err != nil {
			return fmt.Errorf("restart sender: %w", err)
		}
		t.Logf("%5.1fs sender restarted", time.Since(start).Seconds())
		return nil
	}
	burst := func(d time.Duration) error {
		if err := at(d); err != nil {
			return err
		}
		t.Logf("%5.1fs WhatsApp answers the next 30 calls with 130429", time.Since(start).Seconds())
		return s.AddFault(ctx, map[string]any{"kind": "error", "code": 130429, "times": 30})
	}
	if err := killSender(3 * time.Second); err != nil {
		return err
	}
	if err := burst(5 * time.Second); err != nil {
		return err
	}
	if err := killSender(7 * time.Second); err != nil {
		return err
	}
	if err := at(9500 * time.Millisecond); err != nil {
		return err
	}
	if err := s.StopOne(stack.Recorder); err != nil {
		return fmt.Errorf("stop recorder: %w", err)
	}
	if err := s.Restart(ctx, stack.Recorder); err != nil {
		return fmt.Errorf("restart recorder: %w", err)
	}
	t.Logf("%5.1fs recorder restarted", time.Since(start).Seconds())
	if err := burst(11 * time.Second); err != nil {
		return err
	}
	return killSender(13 * time.Second)
}
