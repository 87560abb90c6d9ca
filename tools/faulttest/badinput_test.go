package faulttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/tools/bench"
	"github.com/visn/wadispatch/tools/stack"
)

// badDoc is a chatMessages document as a careless or hostile writer might
// leave it.
type badDoc struct {
	id     string
	fields map[string]any
	// reject, when set, is the reason ingest must give and a word its detail
	// must contain ("invalid_data message"); sent means it must go out with
	// its text intact; neither means only the general contract holds.
	reject string
	sent   bool
	// counted: once SENT, the sending user's numberOfWhatsappMessagesSent
	// must count it.
	counted bool
}

func badDocs(driver string) []badDoc {
	base := func(extra map[string]any, drop ...string) map[string]any {
		m := map[string]any{"message": "Your vehicle is ready.", "type": "text", "driverMobileNumber": driver, "createdBy": "user-00-00"}
		for _, k := range drop {
			delete(m, k)
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []badDoc{
		{id: "type-message-int", fields: base(map[string]any{"message": int64(42)}), reject: "invalid_data message"},
		{id: "type-number-int", fields: base(map[string]any{"driverMobileNumber": int64(447911100000)}), reject: "invalid_data driverMobileNumber"},
		{id: "type-createdby-map", fields: base(map[string]any{"createdBy": map[string]any{"uid": "u1"}}), reject: "invalid_data createdBy"},
		{id: "type-type-bool", fields: base(map[string]any{"type": true}), reject: "invalid_data type"},
		{id: "type-payload-string", fields: base(map[string]any{"type": "template", "templateType": "vehicle_update", "payload": "ref=1"}), reject: "invalid_data payload"},
		{id: "type-payload-nested", fields: base(map[string]any{"type": "template", "templateType": "vehicle_update", "payload": map[string]any{"a": []any{"x"}}}), reject: "invalid_data payload"},
		{id: "type-eta-string", fields: base(map[string]any{"type": "template", "templateType": "vehicle_update", "ETA": "soon"}), reject: "invalid_data ETA"},
		{id: "type-migrated-string", fields: base(map[string]any{"isMigrated": "yes"}), reject: "invalid_data isMigrated"},
		{id: "missing-everything", fields: map[string]any{"note": "nothing useful"}, reject: "invalid_data message"},
		{id: "missing-createdby", fields: base(nil, "createdBy"), reject: "invalid_data createdBy"},
		{id: "missing-template-name", fields: base(map[string]any{"type": "template"}), reject: "invalid_data templateType"},
		{id: "huge-number", fields: base(map[string]any{"driverMobileNumber": strings.Repeat("7", 100_000)}), reject: "invalid_data driverMobileNumber"},
		{id: "one-mib-text", fields: base(map[string]any{"message": strings.Repeat("a", 1_000_000)}), reject: "invalid_data message"},
		{id: "text-4097-runes", fields: base(map[string]any{"message": strings.Repeat("é", 4097)}), reject: "invalid_data message"},
		{id: "type-emoji", fields: base(map[string]any{"type": "📱"}), reject: "invalid_data type"},
		{id: "param-name-unicode", fields: base(map[string]any{"type": "template", "templateType": "vehicle_update", "payload": map[string]any{"véhicule": "AB12"}}), reject: "invalid_data payload"},
		// Odd but valid: right-to-left override, zero-width joiner sequences,
		// combining marks, a NUL and astral-plane characters travel intact.
		{id: "odd-unicode-text", fields: base(map[string]any{"message": "Ready \u202eydaer\u202c 👩\u200d🔧 e\u0301\u0301 \x00 𝔘𝔫𝔦 [ref odd-unicode-text]"}), sent: true},
		{id: "number-rtl-override", fields: base(map[string]any{"driverMobileNumber": "+44\u202e7911100000"})},
	}
}

// Malformed documents end with a clear reason from ingest, once, with no
// task published (and that reason FAILED on the document), or (where they
// are valid after all) in a final state; none is retried by the trigger or
// reaches WhatsApp unless it was sent.
func TestMalformedDocumentsEndWithAReasonOnce(t *testing.T) {
	checkBadDocs(t, badDocs)
}

// A createdBy that cannot name a document (a slash, "..", over 1500 bytes)
// would leave the recorder no metrics document to count a sent message in,
// so ingest must refuse it (or, were it sent, it must be counted).
func TestCreatedByThatNamesNoDocumentIsRefusedOrCounted(t *testing.T) {
	checkBadDocs(t, func(driver string) []badDoc {
		doc := func(createdBy string) map[string]any {
			return map[string]any{"message": "Your vehicle is ready.", "type": "text", "driverMobileNumber": driver, "createdBy": createdBy}
		}
		return []badDoc{
			{id: "createdby-slash", fields: doc("team/anna"), counted: true},
			{id: "createdby-dots", fields: doc(".."), counted: true},
			{id: "createdby-long", fields: doc(strings.Repeat("u", 2000)), counted: true},
		}
	})
}

func checkBadDocs(t *testing.T, badDocs func(driver string) []badDoc) {
	s := stack.StartForTest(t, stack.Options{PhoneNumberID: phoneNumberID})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	fleet := bench.NewFleet(phoneNumberID, s.TokenRef, 1, 1, 1)
	if err := fleet.Seed(ctx, fs); err != nil {
		t.Fatal(err)
	}
	lease, enq := fleet.Leases[0].ID, fleet.Leases[0].Enquiries[0]
	if err := s.OpenWindow(ctx, enq.Driver); err != nil {
		t.Fatal(err)
	}
	docs := badDocs(enq.Driver)
	path := func(d badDoc) string {
		return dispatch.MessageRef{LeaseID: lease, EnquiryID: enq.ID, MessageID: d.id}.Path()
	}
	for _, d := range docs {
		if _, err := fs.Doc(path(d)).Create(ctx, d.fields); err != nil {
			t.Fatalf("create %s: %v", d.id, err)
		}
	}

	// Every document gets an answer from ingest; a published or refused one
	// must then reach a final state.
	var outcomes map[string][]ingestOutcome
	for {
		outcomes = ingestOutcomes(t, s.LogPath(stack.Ingest))
		settled := 0
		for _, d := range docs {
			o := outcomes[path(d)]
			if len(o) == 0 {
				continue
			}
			if o[0].published || refusable(o[0].reason) {
				snap, err := fs.Doc(path(d)).Get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st, _ := snap.Data()["status"].(string); !dispatch.Status(st).Final() {
					continue
				}
			}
			settled++
		}
		if settled == len(docs) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d malformed documents settled: %v", settled, len(docs), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Let a trigger retry or a late publish show itself before counting.
	time.Sleep(time.Second)
	outcomes = ingestOutcomes(t, s.LogPath(stack.Ingest))

	accepted, err := bench.AcceptedMessages(ctx, s.SimulatorURL)
	if err != nil {
		t.Fatal(err)
	}
	emulatorLog, err := os.ReadFile(s.LogPath(stack.FirestoreEmulator))
	if err != nil {
		t.Fatal(err)
	}
	// Sends are counted once the recorder folds its ledgers.
	if left, err := bench.WaitLedgerFolded(ctx, fs, 30*time.Second); err != nil || left > 0 {
		t.Fatalf("sent ledgers not folded: %d entries left (%v)", left, err)
	}
	for _, d := range docs {
		p := path(d)
		o := outcomes[p]
		if len(o) != 1 {
			t.Errorf("%s: ingest handled it %d times, want once: %+v", d.id, len(o), o)
			continue
		}
		if bytes.Contains(emulatorLog, []byte("document="+p)) || bytes.Contains(emulatorLog, []byte(d.id+" ")) {
			t.Errorf("%s: the emulator retried its trigger delivery", d.id)
		}
		snap, err := fs.Doc(p).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		doc := snap.Data()
		status, _ := doc["status"].(string)
		var got []string
		for _, a := range accepted {
			if a.Text != nil && strings.HasSuffix(a.Text.Body, "[ref "+d.id+"]") {
				got = append(got, a.Text.Body)
			}
		}
		switch {
		case !o[0].published:
			if o[0].reason == "" {
				t.Errorf("%s: rejected without a reason", d.id)
			}
			// What the V-Customer can correct says so on the document;
			// anything else is left as written.
			want := ""
			if refusable(o[0].reason) {
				want = "FAILED"
			}
			if status != want || len(got) != 0 {
				t.Errorf("%s: rejected (%s) but status %q (want %q) and %d WhatsApp messages", d.id, o[0].reason, status, want, len(got))
			}
			if reason, _ := doc["failureReason"].(string); want != "" && reason != o[0].reason {
				t.Errorf("%s: refused for %s, the document says %q", d.id, o[0].reason, reason)
			}
			t.Logf("%-22s rejected: %s", d.id, truncate(o[0].detail, 110))
		default:
			reason, _ := doc["failureReason"].(string)
			if r, _ := doc["statusReason"].(string); reason == "" {
				reason = r
			}
			if (status == "FAILED" || status == "UNKNOWN") && reason == "" {
				t.Errorf("%s: %s without a reason", d.id, status)
			}
			t.Logf("%-22s published, now %s %s", d.id, status, reason)
		}
		if d.reject != "" {
			reason, word, _ := strings.Cut(d.reject, " ")
			if o[0].published || o[0].reason != reason || !strings.Contains(o[0].detail, word) {
				t.Errorf("%s: ingest said published=%v reason %q (%s), want %s naming %s", d.id, o[0].published, o[0].reason, o[0].detail, reason, word)
			}
		}
		if d.counted && (bench.Doc{Status: dispatch.Status(status)}).Sent() {
			createdBy, _ := d.fields["createdBy"].(string)
			mp := bench.MetricsPath(lease, createdBy)
			ref := fs.Doc(mp)
			if ref == nil {
				t.Errorf("%s: SENT, but createdBy %q names no metrics document to count it in", d.id, truncate(createdBy, 40))
			} else if snap, err := ref.Get(ctx); err != nil || snap.Data()["numberOfWhatsappMessagesSent"] != int64(1) {
				t.Errorf("%s: SENT, but %s does not count it (%s)", d.id, truncate(mp, 80), truncate(fmt.Sprint(err), 120))
			}
		}
		if d.sent {
			want, _ := d.fields["message"].(string)
			if !(bench.Doc{Status: dispatch.Status(status)}).Sent() || len(got) != 1 || got[0] != want {
				t.Errorf("%s: status %q, WhatsApp got %q; want it sent once with the text intact", d.id, status, got)
			}
		}
	}
}

// refusable reports whether ingest refuses a message for reason onto its
// document.
func refusable(reason string) bool {
	return (&chatmessage.Rejection{Reason: reason}).Actionable()
}

type ingestOutcome struct {
	published      bool
	reason, detail string
}

// ingestOutcomes reads ingest's log: per message path, each event's
// outcome line (published, or rejected with a reason).
func ingestOutcomes(t *testing.T, logPath string) map[string][]ingestOutcome {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]ingestOutcome{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		var line struct {
			Message     string `json:"message"`
			MessagePath string `json:"messagePath"`
			Reason      string `json:"reason"`
			Error       string `json:"error"`
			Duplicate   bool   `json:"duplicate"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.MessagePath == "" {
			continue
		}
		switch {
		case line.Message == "task published":
			out[line.MessagePath] = append(out[line.MessagePath], ingestOutcome{published: true})
		case line.Reason != "":
			out[line.MessagePath] = append(out[line.MessagePath], ingestOutcome{reason: line.Reason, detail: line.Error})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Garbage on the tasks, results and status topics is nacked by the sender
// and the recorder until Pub/Sub's dead-letter policy moves it, byte for
// byte, to the topic's dead-letter topic, where operators find it.
func TestPoisonMessagesReachTheDeadLetterTopics(t *testing.T) {
	s := stack.StartForTest(t, stack.Options{PhoneNumberID: phoneNumberID})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ps, err := pubsubemu.NewClient(ctx, s.PubSubAddr, pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()

	poison := map[string][][]byte{
		topology.TasksTopic:        {[]byte("\xff\xfe not a SendTask"), {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		topology.ResultsTopic:      {[]byte("\x00\x01 not a SendResult"), []byte(`{"json":"is not protobuf"}`)},
		topology.StatusEventsTopic: {[]byte("\x12\x80 truncated")},
	}
	schema := map[string]string{
		topology.TasksTopic:        "wadispatch.v1.SendTask",
		topology.ResultsTopic:      "wadispatch.v1.SendResult",
		topology.StatusEventsTopic: "wadispatch.v1.StatusEvent",
	}
	for topic, payloads := range poison {
		pub := ps.Publisher(topic)
		for _, p := range payloads {
			if _, err := pub.Publish(ctx, &pubsub.Message{Data: p, Attributes: map[string]string{"schema": schema[topic], "messagePath": "poison"}}).Get(ctx); err != nil {
				t.Fatalf("publish to %s: %v", topic, err)
			}
		}
		pub.Stop()
	}

	var wg sync.WaitGroup
	for topic, payloads := range poison {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hold := topic + "-dead-letter-hold"
			got, err := receiveAll(ctx, ps.Subscriber(hold), payloads)
			if err != nil {
				t.Errorf("%s: %v", hold, err)
				return
			}
			t.Logf("%s: all %d poison messages dead-lettered intact (%d deliveries)", hold, len(payloads), len(got))
		}()
	}
	wg.Wait()
}

// receiveAll receives from sub, acking, until every payload of want has
// arrived; Pub/Sub delivers at least once, so a payload may come twice.
func receiveAll(ctx context.Context, sub *pubsub.Subscriber, want [][]byte) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got [][]byte
	missing := func() int {
		n := 0
		for _, w := range want {
			if !containsBytes(got, w) {
				n++
			}
		}
		return n
	}
	err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Data)
		if missing() == 0 {
			cancel()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if n := missing(); n > 0 {
		return got, fmt.Errorf("%d of %d poison messages not dead-lettered (got %q): %w", n, len(want), got, errors.Join(err, ctx.Err()))
	}
	return got, nil
}

func containsBytes(xs [][]byte, x []byte) bool {
	for _, v := range xs {
		if bytes.Equal(v, x) {
			return true
		}
	}
	return false
}
