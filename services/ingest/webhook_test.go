package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/logging/logtest"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/ingest/internal/adapters"
)

const (
	hookSecret  = "test-app-secret"
	hookToken   = "test-verify-token"
	hookPhone   = "100000000000001"
	hookWAToken = "sim-token"
	// hookOtherPhone is a business number the simulator serves and no
	// lease has.
	hookOtherPhone = "100000000000002"
	hookLease      = "lease-hook"
	hookWABA       = "102290129340398"
	hookTokenRef   = "lease-hook-token"
)

// hookEnv is the webhook receiver on a real HTTP server publishing to
// pstest, with a receiver on the recorder's subscription and the WhatsApp
// simulator posting signed webhooks to it.
type hookEnv struct {
	url      string
	registry *prometheus.Registry
	logs     *logtest.Buffer
	sim      *whatsappsim.Simulator
	simURL   string
	pub      *adapters.Events

	mu       sync.Mutex
	received []*pubsub.Message
}

func newHookEnv(t testing.TB, secret string, simTune func(*whatsappsim.Options)) *hookEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := pubsubemu.StartForTest(t)
	ps, err := pubsubemu.NewClient(ctx, addr, pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	pub := adapters.NewEvents(ps, topology.StatusEventsTopic, 5*time.Second)
	e := &hookEnv{logs: &logtest.Buffer{}, registry: prometheus.NewRegistry()}
	l := logrus.New()
	l.SetOutput(e.logs)
	l.SetFormatter(&logrus.JSONFormatter{})
	cfg := spec{HandlerTimeout: 5 * time.Second, WebhookReplayTTL: time.Minute, WebhookAppSecret: secret, WebhookVerifyToken: hookToken}
	// The lease the business number belongs to: replies are placed by it.
	fsEmu := firestoreemu.StartForTest(t, firestoreemu.Options{Logger: logrus.New().WithField("test", "emulator")})
	t.Setenv("FIRESTORE_EMULATOR_HOST", fsEmu.Addr())
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	if _, err := fs.Doc("leasecompany/"+hookLease).Set(ctx, map[string]any{
		"whatsappConfig": map[string]any{"phoneNumberId": hookPhone, "tokenRef": hookTokenRef, "businessAccountId": hookWABA},
	}); err != nil {
		t.Fatal(err)
	}
	hook := newParts(cfg, fs, nil, nil, pub, e.registry, logrus.NewEntry(l), time.Now).webhook
	srv := httptest.NewServer(hook)
	e.url, e.pub = srv.URL+adapters.WebhookPath, pub

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ps.Subscriber(topology.StatusEventsSubscription).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			e.mu.Lock()
			e.received = append(e.received, m)
			e.mu.Unlock()
			m.Ack()
		})
	}()

	opts := whatsappsim.DefaultOptions()
	opts.PhoneNumbers = map[string]string{hookPhone: hookWAToken, hookOtherPhone: hookWAToken}
	opts.PairInterval = 0
	opts.Webhook.URL, opts.Webhook.AppSecret = e.url, hookSecret
	opts.Webhook.RetryBackoff = 20 * time.Millisecond
	opts.Webhook.MaxAttempts = 2
	if simTune != nil {
		simTune(&opts)
	}
	e.sim, err = whatsappsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(e.sim.Handler())
	e.simURL = simSrv.URL
	t.Cleanup(func() {
		simSrv.Close()
		e.sim.Close()
		srv.Close()
		pub.Stop()
		cancel()
		<-done
		_ = ps.Close()
	})
	return e
}

// hookCallback is the biz_opaque_callback_data every send carries.
const hookCallback = "wd1/5f0c7a52-3c1e-4f0e-9a0b-2d7e4c1b9a10/l1/e1/m1"

// send has the simulator accept a template to `to`, which starts its
// status webhooks, and returns the wamid.
func (e *hookEnv) send(t *testing.T, to string) string {
	t.Helper()
	c, err := whatsapp.NewClient(whatsapp.Config{BaseURL: e.simURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m, err := whatsapp.TemplateMessage(to, "vehicle_ready", "en_GB", nil)
	if err != nil {
		t.Fatal(err)
	}
	m.CallbackData = hookCallback
	sent, err := c.Send(context.Background(), whatsapp.Sender{PhoneNumberID: hookPhone, APIVersion: "v23.0", Token: whatsapp.NewToken(hookWAToken)}, m)
	if err != nil {
		t.Fatal(err)
	}
	return sent.MessageID
}

// postSigned posts body signed as Meta signs it and returns the status.
func (e *hookEnv) postSigned(t *testing.T, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(body))
	req.Header.Set(whatsappsim.SignatureHeader, whatsappsim.Sign(hookSecret, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitFor waits until n messages were received and returns them.
func (e *hookEnv) waitFor(t *testing.T, n int) []*pubsub.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mu.Lock()
		got := append([]*pubsub.Message(nil), e.received...)
		e.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d messages on the status subscription, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWebhookPublishesStatusesAndReplies(t *testing.T) {
	e := newHookEnv(t, hookSecret, nil)
	wamid := e.send(t, "447911123401")
	inID, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: hookPhone, From: "447911123401", Text: "On my way", ContextID: wamid})
	if err != nil {
		t.Fatal(err)
	}
	msgs := e.waitFor(t, 4)
	if err := e.sim.WaitWebhooks(context.Background()); err != nil {
		t.Fatal(err)
	}
	statuses := map[wadispatchv1.MessageStatus]bool{}
	var reply *wadispatchv1.InboundMessage
	for _, m := range msgs {
		switch m.Attributes["schema"] {
		case "wadispatch.v1.StatusEvent":
			var ev wadispatchv1.StatusEvent
			if err := proto.Unmarshal(m.Data, &ev); err != nil || ev.GetWhatsappMessageId() != wamid || m.Attributes["wamid"] != wamid ||
				ev.GetPhoneNumberId() != hookPhone || ev.GetTimestamp() == nil || ev.GetBizOpaqueCallbackData() != hookCallback {
				t.Errorf("status event %v (%v), attributes %v", &ev, err, m.Attributes)
			}
			statuses[ev.GetStatus()] = true
		case "wadispatch.v1.InboundMessage":
			reply = &wadispatchv1.InboundMessage{}
			if err := proto.Unmarshal(m.Data, reply); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("attributes %v", m.Attributes)
		}
	}
	if len(statuses) != 3 {
		t.Errorf("statuses published: %v, want sent, delivered, read", statuses)
	}
	if reply.GetWhatsappMessageId() != inID || reply.GetFrom() != "+447911123401" || reply.GetText() != "On my way" ||
		reply.GetContextMessageId() != wamid || reply.GetType() != "text" ||
		fmt.Sprint(reply.GetLeaseIds()) != "["+hookLease+"]" || reply.GetLeaseWhatsappDetails().GetTokenRef() != hookTokenRef {
		t.Errorf("inbound message %v", reply)
	}
	if got := metricValue(t, e.registry, "wadispatch_ingest_webhook_events_published_total", "kind", "status"); got != 3 {
		t.Errorf("status events published metric %v", got)
	}
	if c := e.sim.Counts(); c.WebhookAttemptsFailed != 0 {
		t.Errorf("simulator counts %+v: a webhook was not answered 2xx", c)
	}
	if strings.Contains(e.logs.String(), hookSecret) || strings.Contains(e.logs.String(), hookToken) {
		t.Error("a secret was logged")
	}
}

// A driver writing to a business number no lease has is refused with its
// reason: counted, logged, never published for some other lease.
func TestWebhookRefusesRepliesToUnknownBusinessNumbers(t *testing.T) {
	e := newHookEnv(t, hookSecret, nil)
	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: hookOtherPhone, From: "447911123401", Text: "Hello?"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: hookPhone, From: "447911123401", Text: "Me again"}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.WaitWebhooks(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Both were answered: only the second was published.
	if got := metricValue(t, e.registry, "wadispatch_ingest_webhook_events_published_total", "kind", "inbound"); got != 1 {
		t.Errorf("inbound events published: %v, want 1", got)
	}
	msgs := e.waitFor(t, 1)
	var in wadispatchv1.InboundMessage
	if err := proto.Unmarshal(msgs[0].Data, &in); err != nil || in.GetText() != "Me again" {
		t.Fatalf("published %v (%v)", &in, err)
	}
	if got := metricValue(t, e.registry, "wadispatch_ingest_webhook_parts_skipped_total", "reason", "unknown_business_number"); got != 1 {
		t.Errorf("skipped parts for the unknown number: %v, want 1", got)
	}
	if !strings.Contains(e.logs.String(), "no lease has its business number") {
		t.Error("the refusal was not logged")
	}
}

// Template webhooks are published as TemplateEvents for the leases of
// their business account (entry.id); an account no lease names is
// counted and dropped.
func TestWebhookPublishesTemplateEvents(t *testing.T) {
	e := newHookEnv(t, hookSecret, nil)
	body := func(account, field, value string) string {
		return `{"object":"whatsapp_business_account","entry":[{"id":"` + account + `","time":1750263773,"changes":[{"field":"` + field + `","value":` + value + `}]}]}`
	}
	paused := `{"event":"PAUSED","message_template_id":594425479261596,"message_template_name":"eta_update","message_template_language":"en_US","reason":"FIRST_PAUSE"}`
	category := `{"message_template_id":594425479261596,"message_template_name":"eta_update","message_template_language":"en_US","previous_category":"UTILITY","new_category":"MARKETING"}`
	for _, b := range []string{
		body("999", "message_template_status_update", paused),
		body(hookWABA, "message_template_status_update", paused),
		body(hookWABA, "template_category_update", category),
	} {
		if code := e.postSigned(t, b); code != http.StatusOK {
			t.Fatalf("answered %d", code)
		}
	}
	msgs := e.waitFor(t, 2)
	got := map[string]bool{}
	for _, m := range msgs {
		var ev wadispatchv1.TemplateEvent
		if m.Attributes["schema"] != "wadispatch.v1.TemplateEvent" || proto.Unmarshal(m.Data, &ev) != nil ||
			fmt.Sprint(ev.GetLeaseIds()) != "["+hookLease+"]" || ev.GetName() != "eta_update" || ev.GetBusinessAccountId() != hookWABA {
			t.Fatalf("published %v, attributes %v", &ev, m.Attributes)
		}
		got[ev.GetStatus()+"/"+ev.GetCategory()] = true
	}
	if !got["PAUSED/"] || !got["/MARKETING"] || len(msgs) != 2 {
		t.Errorf("template events %v", got)
	}
	if n := metricValue(t, e.registry, "wadispatch_ingest_webhook_parts_skipped_total", "reason", "unknown_business_account"); n != 1 {
		t.Errorf("skipped template events of the unknown account: %v, want 1", n)
	}
}

func TestWebhookRefusesForgedSignatures(t *testing.T) {
	e := newHookEnv(t, hookSecret, nil)
	body := `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.x","status":"read","timestamp":"1"}]}}]}]}`
	for name, sig := range map[string]string{
		"unsigned":     "",
		"other secret": whatsappsim.Sign("not-the-secret", []byte(body)),
		"garbage":      "sha256=xyz",
	} {
		req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(body))
		if sig != "" {
			req.Header.Set(whatsappsim.SignatureHeader, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, resp.StatusCode)
		}
	}
	for reason, want := range map[string]float64{"missing": 1, "mismatch": 1, "malformed": 1} {
		if got := metricValue(t, e.registry, "wadispatch_ingest_webhook_signature_failures_total", "reason", reason); got != want {
			t.Errorf("signature failures{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	// A correctly signed copy goes through, so the 401s were the signature's.
	if code := e.postSigned(t, body); code != http.StatusOK {
		t.Fatalf("signed body: HTTP %d", code)
	}
	if got := e.waitFor(t, 1); len(got) != 1 {
		t.Errorf("published %d messages, want only the signed one", len(got))
	}
}

func TestWebhookVerificationHandshake(t *testing.T) {
	e := newHookEnv(t, hookSecret, nil)
	if err := whatsappsim.VerifyWebhook(context.Background(), nil, e.url, hookToken); err != nil {
		t.Fatal(err)
	}
	if err := whatsappsim.VerifyWebhook(context.Background(), nil, e.url, "wrong"); err == nil {
		t.Fatal("a wrong verify token was accepted")
	}
	resp, err := http.Get(e.url + "?" + url.Values{"hub.mode": {"unsubscribe"}, "hub.verify_token": {hookToken}, "hub.challenge": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("mode unsubscribe: HTTP %d, want 403", resp.StatusCode)
	}
}

// A signed body published once is answered 200 again and published never:
// Meta's retries and a replayed capture cost nothing downstream.
func TestWebhookReplayIsNotRepublished(t *testing.T) {
	e := newHookEnv(t, hookSecret, nil)
	body := `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.replayed","status":"read","timestamp":"1"}]}}]}]}`
	for i := range 3 {
		if code := e.postSigned(t, body); code != http.StatusOK {
			t.Fatalf("post %d: HTTP %d", i, code)
		}
	}
	if got := metricValue(t, e.registry, "wadispatch_ingest_webhook_requests_total", "outcome", "duplicate"); got != 2 {
		t.Errorf("duplicate answers %v, want 2", got)
	}
	if got := metricValue(t, e.registry, "wadispatch_ingest_webhook_events_published_total", "kind", "status"); got != 1 {
		t.Errorf("status events published %v, want 1", got)
	}
	e.waitFor(t, 1)
}

// The handshake echoes only Meta's kind of challenge, a number, and says
// what it is.
func TestWebhookHandshakeEchoesOnlyDigits(t *testing.T) {
	e := newHookEnv(t, hookSecret, nil)
	get := func(challenge string) *http.Response {
		resp, err := http.Get(e.url + "?" + url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {hookToken}, "hub.challenge": {challenge}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("1158201444")
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "1158201444" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("numeric challenge: HTTP %d %q, nosniff %q", resp.StatusCode, b, resp.Header.Get("X-Content-Type-Options"))
	}
	for _, bad := range []string{"<script>alert(1)</script>", "12a", "", strings.Repeat("9", 40)} {
		resp := get(bad)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "script") {
			t.Errorf("challenge %.20q: HTTP %d %q, want 400 without an echo", bad, resp.StatusCode, b)
		}
	}
}

func TestWebhookAnswers(t *testing.T) {
	e := newHookEnv(t, "", nil)
	post := func(body string, sign bool) int {
		req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(body))
		if sign {
			req.Header.Set(whatsappsim.SignatureHeader, whatsappsim.Sign(hookSecret, []byte(body)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	// Without an app secret nothing can be verified: Meta is asked to retry.
	if got := post(`{}`, true); got != http.StatusServiceUnavailable {
		t.Errorf("unconfigured: HTTP %d, want 503", got)
	}
	e = newHookEnv(t, hookSecret, nil)
	if got := post(`{"object":"page"}`, true); got != http.StatusOK {
		t.Errorf("signed non-WhatsApp body: HTTP %d, want 200 (a retry brings the same body)", got)
	}
	// The body limit is 1 MiB.
	if got := post(strings.Repeat("x", 1<<20+1), true); got != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: HTTP %d, want 413", got)
	}
	// A publish that fails is answered 5xx, so that Meta delivers again.
	e.pub.Stop()
	if got := post(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w","status":"read"}]}}]}]}`, true); got != http.StatusServiceUnavailable {
		t.Errorf("publish failed: HTTP %d, want 503", got)
	}
	req, _ := http.NewRequest(http.MethodPut, e.url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: HTTP %d", resp.StatusCode)
	}
}

// Whatever is sent to the public webhook endpoint, with any method, query
// or signature: it never panics, never answers 5xx while Pub/Sub is up,
// and echoes a challenge only as digits.
func FuzzWebhookHandler(f *testing.F) {
	e := newHookEnv(f, hookSecret, nil)
	status := `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.f","status":"read","timestamp":"1"}]}}]}]}`
	f.Add("POST", "", []byte(status), whatsappsim.Sign(hookSecret, []byte(status)))
	f.Add("POST", "", []byte(status), "sha256=00")
	f.Add("GET", "hub.mode=subscribe&hub.verify_token="+hookToken+"&hub.challenge=123", []byte(nil), "")
	f.Add("GET", "hub.mode=subscribe&hub.verify_token="+hookToken+"&hub.challenge=<b>x</b>", []byte(nil), "")
	f.Add("PUT", "", []byte("x"), "")
	f.Fuzz(func(t *testing.T, method, query string, body []byte, signature string) {
		if method != "GET" && method != "POST" {
			method = "PUT"
		}
		req, err := http.NewRequest(method, e.url+"?"+query, bytes.NewReader(body))
		if err != nil {
			return
		}
		if signature != "" && !strings.ContainsAny(signature, "\r\n\x00") {
			req.Header.Set(whatsappsim.SignatureHeader, signature)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return // a request the client will not send (a header Go refuses)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s ?%s: HTTP %d %s", method, query, resp.StatusCode, got)
		}
		if method == "GET" && resp.StatusCode == http.StatusOK {
			for _, c := range string(got) {
				if c < '0' || c > '9' {
					t.Fatalf("handshake echoed %q", got)
				}
			}
		}
	})
}
