package faulttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/faultproxy"
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
		"SENDER_OUTAGE_PROBE_INTERVAL=500ms",
		"SENDER_CLAIM_TIMEOUT=2s",
	},
	stack.Recorder: {
		"RECORDER_CLAIM_LEASE=20s",
		"RECORDER_SWEEP_INTERVAL=1s",
		"RECORDER_OUTAGE_PROBE_INTERVAL=500ms",
		"RECORDER_HANDLER_TIMEOUT=2s",
	},
	stack.Ingest: {
		"INGEST_RECONCILE_INTERVAL=1s",
		"INGEST_RECONCILE_GRACE=20s",
		"INGEST_RECONCILE_WINDOW=10m",
	},
}

// The fault test: 1,000 messages written through the official client over
// 20 s, spread over 4 leases, 500 enquiries (one driver each, two messages
// 10 s apart, so within WhatsApp's default pair rate limit of one message
// per 6 s) and 16 users, while the sender is SIGKILLed three times, the
// recorder restarted, ingest stopped while the trigger drops its events
// (the reconciler must find those documents), the recorder stopped for 8 s
// and Firestore refused to it for 6 s (longer than the subscriptions'
// delivery attempts last against the local Pub/Sub, which redelivers at
// once); WhatsApp fails about 20% of calls with retryable errors, answers
// two bursts of 130429 and delays one call in ten by 700 ms (holding the
// task's Pub/Sub ack). Afterwards every guarantee of docs/guarantees.md is
// checked by bench.Audit against the documents and what the WhatsApp
// simulator accepted, and nothing may wait on a dead-letter topic.
func TestNoMessageLostOrDuplicatedUnderFaults(t *testing.T) {
	const n = 1000
	seed := time.Now().UnixNano() % 1_000_000
	t.Logf("simulator fault seed %d (rerun the same faults with it in --seed)", seed)
	s := stack.StartForTest(t, stack.Options{
		PhoneNumberID: phoneNumberID,
		SimulatorArgs: []string{"--seed", strconv.FormatInt(seed, 10)},
		Env:           faultEnv,
		// The Firestore outage is the recorder's alone.
		FirestoreFaults: true,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	fs, anc := databases(ctx, t, s)

	fleet := bench.NewFleet(phoneNumberID, s.TokenRef, 4, 125, 4)
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
	if err := stopMarketing(ctx, s, fs, fleet, msgs); err != nil {
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
	var replies []bench.Reply
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := bench.Create(ctx, fs, msgs, 50); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		var err error
		if replies, err = replyThroughFaults(ctx, s, fleet, msgs); err != nil {
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
	replyViolations, err := bench.AuditReplies(ctx, fs, replies, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range replyViolations {
		t.Error(v)
	}
	// WhatsApp's retryable errors that outlast a task's attempts end it
	// FAILED retries_exhausted, and the sender dead-letters it on purpose;
	// anything else there was dead-lettered by an outage or a loop.
	dead, exhausted := deadLettered(ctx, t, s)
	if dead != 0 {
		t.Errorf("%d messages on the dead-letter topics besides exhausted retries: transient outages must not dead-letter", dead)
	}
	reconciled := metric(ctx, t, s, stack.Ingest, "wadispatch_ingest_reconciled_total")
	resolved := len(logged(t, s.LogPath(stack.Recorder), "send resolved from WhatsApp's statuses: recorded as sent, counted once"))
	t.Logf("fault test summary: %s unknown_resolved_by_webhook=%d dead_lettered=%d (besides %d retries_exhausted) reconciled=%v replies=%d (photos=%d)",
		report.Summary(), resolved, dead, exhausted, reconciled, len(replies), photos(replies))
	if report.Sent == 0 {
		t.Error("no message was sent: the faults left nothing to check")
	}
	if reconciled == 0 {
		t.Error("the reconciler handed on nothing: the dropped events left nothing to check")
	}
}

// replyThroughFaults has the driver of every tenth message write to the
// business number (every other one a photo) while the faults run (one reply every 350 ms, through
// ingest's outage, the recorder's and Firestore's), and returns what was
// sent.
func replyThroughFaults(ctx context.Context, s *stack.Stack, fleet bench.Fleet, msgs []bench.Message) ([]bench.Reply, error) {
	var out []bench.Reply
	tick := time.NewTicker(350 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(msgs); i += 10 {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-tick.C:
		}
		m := msgs[i]
		text := fmt.Sprintf("reply %d about %s", i, m.Ref.MessageID)
		r := bench.Reply{Driver: m.Driver, Text: text, Enquiry: m.Ref, UnmatchedLease: fleet.Leases[0].ID}
		var err error
		if i%20 == 0 {
			r.Wamid, r.Media, err = replyPhoto(ctx, s, m.Driver, text)
		} else {
			r.Wamid, err = s.Reply(ctx, m.Driver, text, "")
		}
		if err != nil {
			return out, fmt.Errorf("reply %d: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func photos(replies []bench.Reply) int {
	n := 0
	for _, r := range replies {
		if r.Media != nil {
			n++
		}
	}
	return n
}

// replyPhoto has driver send a photo of its own (its bytes differ by
// caption) with the caption.
func replyPhoto(ctx context.Context, s *stack.Stack, driver, caption string) (string, *bench.SentMedia, error) {
	photo := bytes.Repeat([]byte("\xff\xd8 "+caption+" "), 1000)
	media, err := s.AddMedia(ctx, "image/jpeg", photo)
	if err != nil {
		return "", nil, err
	}
	wamid, err := s.ReplyMedia(ctx, driver, "image", media.ID, caption)
	sum := sha256.Sum256(photo)
	return wamid, &bench.SentMedia{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(photo))}, err
}

// stopMarketing makes the fleet's template a MARKETING one (WhatsApp's
// status webhook, into each lease's registry) and has three drivers who
// get only templates write STOP before any message is written: their
// messages are the audit's Suppressed ones.
func stopMarketing(ctx context.Context, s *stack.Stack, fs *firestore.Client, fleet bench.Fleet, msgs []bench.Message) error {
	const account = "3001"
	for _, l := range fleet.Leases {
		if _, err := fs.Doc("leasecompany/"+l.ID).Set(ctx, map[string]any{"whatsappConfig": map[string]any{"businessAccountId": account}}, firestore.MergeAll); err != nil {
			return err
		}
	}
	if err := s.TemplateStatus(ctx, account, "vehicle_update", "en_GB", "APPROVED", "MARKETING"); err != nil {
		return err
	}
	text := map[string]bool{}
	for _, m := range msgs {
		if m.Fields["type"] != "template" {
			text[m.Driver] = true
		}
	}
	stopped := map[string]bool{}
	for _, m := range msgs {
		if len(stopped) < 3 && !text[m.Driver] && !stopped[m.Driver] {
			stopped[m.Driver] = true
			if _, err := s.Reply(ctx, m.Driver, "STOP", ""); err != nil {
				return err
			}
		}
	}
	wait := func(path, what string, cond func(map[string]any) bool) error {
		for {
			snap, err := fs.Doc(path).Get(ctx)
			if err == nil && cond(snap.Data()) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %s never recorded", path, what)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	for _, l := range fleet.Leases {
		if err := wait(dispatch.TemplatePath(l.ID, "vehicle_update", "en_GB"), "MARKETING", func(d map[string]any) bool { return d[dispatch.TemplateCategory] == "MARKETING" }); err != nil {
			return err
		}
	}
	for i, m := range msgs {
		if !stopped[m.Driver] {
			continue
		}
		msgs[i].Suppressed = true
		if err := wait(dispatch.DriverRecordPath(m.Ref.LeaseID, m.Driver), "STOP", func(d map[string]any) bool { return d[dispatch.DriverOptedOut] == true }); err != nil {
			return err
		}
	}
	return nil
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

// injectFaults runs the fault schedule: the sender is SIGKILLed three times
// (restarted half a second later), the recorder is restarted gracefully,
// WhatsApp answers two bursts of 130429 to every call, ingest is down for
// 3 s while the trigger drops its events, the recorder is stopped for 8 s,
// and Firestore refuses the recorder for 6 s.
func injectFaults(ctx context.Context, t *testing.T, s *stack.Stack, start time.Time) error {
	at := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(d))):
			return nil
		}
	}
	logf := func(format string, args ...any) {
		t.Logf("%5.1fs "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}
	killSender := func(d time.Duration) error {
		if err := at(d); err != nil {
			return err
		}
		s.Kill(stack.Sender)
		logf("sender SIGKILLed")
		time.Sleep(500 * time.Millisecond)
		if err := s.Restart(ctx, stack.Sender); err != nil {
			return fmt.Errorf("restart sender: %w", err)
		}
		logf("sender restarted")
		return nil
	}
	burst := func(d time.Duration) error {
		if err := at(d); err != nil {
			return err
		}
		logf("WhatsApp answers the next 30 calls with 130429")
		return s.AddFault(ctx, map[string]any{"kind": "error", "code": 130429, "times": 30})
	}
	// outage runs down at from and up at to.
	outage := func(name string, from, to time.Duration, down, up func() error) error {
		if err := at(from); err != nil {
			return err
		}
		if err := down(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		logf("%s", name)
		if err := at(to); err != nil {
			return err
		}
		if err := up(); err != nil {
			return fmt.Errorf("%s, over: %w", name, err)
		}
		logf("%s: over", name)
		return nil
	}
	steps := []func() error{
		func() error { return killSender(3 * time.Second) },
		func() error { return burst(5 * time.Second) },
		func() error { return killSender(7 * time.Second) },
		func() error {
			return outage("recorder restarted", 9500*time.Millisecond, 9500*time.Millisecond,
				func() error { return s.StopOne(stack.Recorder) }, func() error { return s.Restart(ctx, stack.Recorder) })
		},
		func() error { return burst(11 * time.Second) },
		func() error { return killSender(13 * time.Second) },
		func() error {
			return outage("ingest down, trigger dropping its events", 14*time.Second, 17*time.Second,
				func() error {
					if err := s.DropTriggerDeliveries(ctx, true); err != nil {
						return err
					}
					return s.StopOne(stack.Ingest)
				},
				func() error {
					if err := s.Restart(ctx, stack.Ingest); err != nil {
						return err
					}
					return s.DropTriggerDeliveries(ctx, false)
				})
		},
		func() error {
			return outage("recorder stopped", 18*time.Second, 26*time.Second,
				func() error { return s.StopOne(stack.Recorder) }, func() error { return s.Restart(ctx, stack.Recorder) })
		},
		func() error {
			return outage("Firestore refuses the recorder", 28*time.Second, 34*time.Second,
				func() error { s.FirestoreFaults.Set(faultproxy.Refuse); return nil },
				func() error { s.FirestoreFaults.Set(faultproxy.Pass); return nil })
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
