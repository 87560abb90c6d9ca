package whatsappsim_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

const (
	phoneID  = "106540352242922"
	phoneID2 = "106540352242923"
	token    = "sim-token-1"
	token2   = "sim-token-2"
	driver   = "447700900123"
	secret   = "app-secret"
)

type env struct {
	sim    *whatsappsim.Simulator
	srv    *httptest.Server
	client *whatsapp.Client
}

// start runs a simulator with Meta's defaults minus the limits (each test turns
// on what it checks).
func start(t *testing.T, mutate func(*whatsappsim.Options)) *env {
	t.Helper()
	opts := whatsappsim.DefaultOptions()
	opts.PhoneNumbers = map[string]string{phoneID: token, phoneID2: token2}
	opts.Throughput = 0
	opts.PairInterval = 0
	opts.EnforceWindow = false
	opts.Webhook.SentDelay, opts.Webhook.DeliveredDelay, opts.Webhook.ReadDelay = time.Millisecond, time.Millisecond, time.Millisecond
	opts.Webhook.RetryBackoff = 5 * time.Millisecond
	if mutate != nil {
		mutate(&opts)
	}
	sim, err := whatsappsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	client, err := whatsapp.NewClient(whatsapp.Config{BaseURL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, srv: srv, client: client}
}

func sender(id, tok string) whatsapp.Sender {
	return whatsapp.Sender{PhoneNumberID: id, APIVersion: "v21.0", Token: whatsapp.NewToken(tok)}
}

func (e *env) send(t *testing.T, m whatsapp.Message) (whatsapp.Sent, *whatsapp.Error) {
	t.Helper()
	return e.sendAs(t, sender(phoneID, token), m)
}

func (e *env) sendAs(t *testing.T, s whatsapp.Sender, m whatsapp.Message) (whatsapp.Sent, *whatsapp.Error) {
	t.Helper()
	sent, err := e.client.Send(context.Background(), s, m)
	if err == nil {
		return sent, nil
	}
	var we *whatsapp.Error
	if !errors.As(err, &we) {
		t.Fatalf("Send returned %T %v, want *whatsapp.Error", err, err)
	}
	return sent, we
}

func text(to, body string) whatsapp.Message { return whatsapp.TextMessage(to, body, false) }

func mustCode(t *testing.T, err *whatsapp.Error, code, status int) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want code %d", code)
	}
	if !err.HasCode || err.Code != code || err.HTTPStatus != status {
		t.Fatalf("got %v (code %d, http %d), want code %d, http %d", err, err.Code, err.HTTPStatus, code, status)
	}
	if err.FBTraceID == "" || !strings.HasPrefix(err.Message, "(#") {
		t.Fatalf("error without Meta's message/fbtrace_id: %+v", err)
	}
}

func TestAcceptsTextAndTemplateAndRecordsThem(t *testing.T) {
	e := start(t, nil)
	sent, err := e.send(t, whatsapp.TextMessage("+"+driver, "Your driver is 5 min away", true))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sent.MessageID, "wamid.") || sent.WaID != driver || sent.Input != "+"+driver || sent.MessageStatus != "" {
		t.Fatalf("text: %+v", sent)
	}
	tm, terr := whatsapp.TemplateMessage(driver, "eta_update", "en_GB", map[string]string{"eta": "15", "driver_name": "Sam"})
	if terr != nil {
		t.Fatal(terr)
	}
	sent2, err := e.send(t, tm)
	if err != nil {
		t.Fatal(err)
	}
	if sent2.MessageStatus != "accepted" || sent2.MessageID == sent.MessageID {
		t.Fatalf("template: %+v", sent2)
	}

	msgs := e.sim.Messages(phoneID, driver)
	if len(msgs) != 2 {
		t.Fatalf("recorded %d messages, want 2", len(msgs))
	}
	if m := msgs[0]; m.WAMID != sent.MessageID || m.Type != "text" || m.Text == nil || m.Text.Body != "Your driver is 5 min away" || !m.Text.PreviewURL || m.Seq != 1 {
		t.Fatalf("recorded text %+v", m)
	}
	want := []whatsappsim.TemplateParam{{Component: "body", Name: "driver_name", Text: "Sam"}, {Component: "body", Name: "eta", Text: "15"}}
	if m := msgs[1]; m.Template == nil || m.Template.Name != "eta_update" || m.Template.Language != "en_GB" || !equalParams(m.Template.Parameters, want) {
		t.Fatalf("recorded template %+v", m.Template)
	}
	if got := e.sim.Counts(); got.Accepted != 2 || got.AcceptedByRecipient[driver] != 2 || got.Requests != 2 {
		t.Fatalf("counts %+v", got)
	}
	if len(e.sim.Messages(phoneID2, "")) != 0 {
		t.Fatal("filter by phone number ID ignored")
	}
}

func equalParams(a, b []whatsappsim.TemplateParam) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMessageIDsAreUnique(t *testing.T) {
	e := start(t, nil)
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				sent, err := e.client.Send(context.Background(), sender(phoneID, token), text(driver, "hi"))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[sent.MessageID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 400 {
		t.Fatalf("%d distinct ids for 400 messages", len(seen))
	}
}

func TestRejectsBadTokens(t *testing.T) {
	e := start(t, nil)
	_, err := e.sendAs(t, sender(phoneID, "wrong"), text(driver, "hi"))
	mustCode(t, err, 190, http.StatusUnauthorized)
	if err.Type != "OAuthException" || err.Reason != whatsapp.ReasonAuth || err.Retryable() {
		t.Fatalf("wrong token: %+v", err)
	}
	// The other number's token does not open this number.
	_, err = e.sendAs(t, sender(phoneID, token2), text(driver, "hi"))
	mustCode(t, err, 190, http.StatusUnauthorized)
	// A valid token on a phone number ID nobody configured.
	_, err = e.sendAs(t, sender("999", token), text(driver, "hi"))
	mustCode(t, err, 100, http.StatusBadRequest)
	if err.Subcode != 33 {
		t.Fatalf("unknown phone number: subcode %d, want 33", err.Subcode)
	}

	// No Authorization header at all (the client never sends that).
	status, body := post(t, e.srv.URL+"/v21.0/"+phoneID+"/messages", "", `{"messaging_product":"whatsapp","to":"`+driver+`","type":"text","text":{"body":"hi"}}`)
	if status != http.StatusUnauthorized || metaCode(t, body) != 190 {
		t.Fatalf("no token: %d %s", status, body)
	}
	if n := e.sim.Counts().Accepted; n != 0 {
		t.Fatalf("%d messages accepted with bad tokens", n)
	}

	e.sim.AddPhoneNumber("555", "new-token")
	if _, err := e.sendAs(t, sender("555", "new-token"), text(driver, "hi")); err != nil {
		t.Fatalf("added phone number: %v", err)
	}
}

func post(t *testing.T, url, tok, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func metaCode(t *testing.T, body []byte) int {
	t.Helper()
	var v struct {
		Error struct {
			Code int    `json:"code"`
			Type string `json:"type"`
			Data struct {
				Product string `json:"messaging_product"`
			} `json:"error_data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("not a Meta error: %s", body)
	}
	if v.Error.Type != "OAuthException" || v.Error.Data.Product != "whatsapp" {
		t.Fatalf("error object not in Meta's shape: %s", body)
	}
	return v.Error.Code
}

func TestValidatesPayloadLikeMeta(t *testing.T) {
	e := start(t, func(o *whatsappsim.Options) {
		o.Templates = []whatsappsim.TemplateSpec{{Name: "eta_update", Language: "en_GB", BodyParameters: []string{"driver_name", "eta"}}}
	})
	long := strings.Repeat("é", 4097)
	cases := []struct {
		name, body   string
		code, status int
	}{
		{"not json", `{"messaging_product":`, 100, 400},
		{"array", `[]`, 100, 400},
		{"no product", `{"to":"` + driver + `","type":"text","text":{"body":"hi"}}`, 131008, 400},
		{"wrong product", `{"messaging_product":"sms","to":"` + driver + `","type":"text","text":{"body":"hi"}}`, 100, 400},
		{"group recipient", `{"messaging_product":"whatsapp","recipient_type":"group","to":"` + driver + `","text":{"body":"hi"}}`, 100, 400},
		{"no to", `{"messaging_product":"whatsapp","type":"text","text":{"body":"hi"}}`, 131008, 400},
		{"letters in to", `{"messaging_product":"whatsapp","to":"driver","type":"text","text":{"body":"hi"}}`, 131009, 400},
		{"to is a number", `{"messaging_product":"whatsapp","to":447700900123,"type":"text","text":{"body":"hi"}}`, 100, 400},
		{"sticker", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"sticker","sticker":{"id":"1"}}`, 131051, 400},
		{"image without id or link", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"image","image":{"caption":"x"}}`, 131008, 400},
		{"audio with caption", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"audio","audio":{"link":"https://x.example/a.ogg","caption":"x"}}`, 131009, 400},
		{"image with unknown id", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"image","image":{"id":"999"}}`, 131009, 400},
		{"made-up type", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"fax"}`, 131051, 400},
		{"no text", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"text"}`, 131008, 400},
		{"empty body", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"text","text":{"body":""}}`, 131008, 400},
		{"body too long", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"text","text":{"body":"` + long + `"}}`, 131009, 400},
		{"callback data too long", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"text","text":{"body":"hi"},"biz_opaque_callback_data":"` + strings.Repeat("é", 513) + `"}`, 131009, 400},
		{"callback data not a string", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"text","text":{"body":"hi"},"biz_opaque_callback_data":{"uuid":"x"}}`, 100, 400},
		{"preview_url string", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"text","text":{"body":"hi","preview_url":"yes"}}`, 131009, 400},
		{"no template name", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"language":{"code":"en_GB"}}}`, 131008, 400},
		{"no language", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"eta_update"}}`, 131008, 400},
		{"bad parameter name", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"eta_update","language":{"code":"en_GB"},"components":[{"type":"body","parameters":[{"type":"text","parameter_name":"Driver","text":"Sam"}]}]}}`, 131009, 400},
		{"parameter without text", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"eta_update","language":{"code":"en_GB"},"components":[{"type":"body","parameters":[{"type":"text"}]}]}}`, 131008, 400},
		{"unknown template", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"nope","language":{"code":"en_GB"}}}`, 132001, 404},
		{"wrong language", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"eta_update","language":{"code":"fr"}}}`, 132001, 404},
		{"parameter count", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"eta_update","language":{"code":"en_GB"},"components":[{"type":"body","parameters":[{"type":"text","parameter_name":"eta","text":"5"}]}]}}`, 132000, 400},
		{"parameter names", `{"messaging_product":"whatsapp","to":"` + driver + `","type":"template","template":{"name":"eta_update","language":{"code":"en_GB"},"components":[{"type":"body","parameters":[{"type":"text","parameter_name":"eta","text":"5"},{"type":"text","parameter_name":"plate","text":"X"}]}]}}`, 132000, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := post(t, e.srv.URL+"/v21.0/"+phoneID+"/messages", token, c.body)
			if status != c.status || metaCode(t, body) != c.code {
				t.Fatalf("got %d %s, want code %d http %d", status, body, c.code, c.status)
			}
		})
	}
	status, body := post(t, e.srv.URL+"/v21.0/"+phoneID+"/messages", token,
		`{"messaging_product":"whatsapp","to":"`+driver+`","type":"template","template":{"name":"eta_update","language":{"code":"en_GB"},"components":[{"type":"body","parameters":[{"type":"text","parameter_name":"eta","text":"5"},{"type":"text","parameter_name":"driver_name","text":"Sam"}]}]}}`)
	if status != http.StatusOK {
		t.Fatalf("valid template: %d %s", status, body)
	}
	if got := e.sim.Counts(); got.Accepted != 1 || got.RejectedByCode[131008] != 8 {
		t.Fatalf("counts %+v", got)
	}
}

func TestThroughputLimit(t *testing.T) {
	t.Parallel()
	e := start(t, func(o *whatsappsim.Options) { o.Throughput = 2 })
	accepted, throttled := 0, 0
	for i := 0; i < 6; i++ {
		_, err := e.send(t, text(driver, "hi"))
		switch {
		case err == nil:
			accepted++
		case err.Code == 130429:
			mustCode(t, err, 130429, http.StatusTooManyRequests)
			if !err.Retryable() || err.Reason != whatsapp.ReasonThroughputLimit || err.RetryAfter() <= 0 {
				t.Fatalf("throttle error %+v", err)
			}
			throttled++
		default:
			t.Fatal(err)
		}
	}
	// One second's worth passes at once, the rest is refused (one more may
	// pass if the loop is slow enough for a refill).
	if accepted < 2 || accepted > 3 || throttled < 3 {
		t.Fatalf("accepted %d, throttled %d of 6 at 2/s", accepted, throttled)
	}
	// The limit is per phone number.
	if _, err := e.sendAs(t, sender(phoneID2, token2), text(driver, "hi")); err != nil {
		t.Fatalf("other phone number throttled: %v", err)
	}
	time.Sleep(550 * time.Millisecond)
	if _, err := e.send(t, text(driver, "hi")); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if n := e.sim.Counts().RejectedByCode[130429]; n != throttled {
		t.Fatalf("counted %d throttled calls, saw %d", n, throttled)
	}
}

func TestLatencyOption(t *testing.T) {
	t.Parallel()
	e := start(t, func(o *whatsappsim.Options) { o.Latency = 80 * time.Millisecond })
	begin := time.Now()
	if _, err := e.send(t, text(driver, "hi")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 80*time.Millisecond {
		t.Fatalf("answered in %v with 80ms latency", d)
	}
}

func TestResetReinstallsOptionFaults(t *testing.T) {
	e := start(t, func(o *whatsappsim.Options) {
		o.Faults = []whatsappsim.Fault{{Kind: whatsappsim.FaultError, Code: 131026, Times: 1}}
	})
	for round := 0; round < 2; round++ {
		_, err := e.send(t, text(driver, "hi"))
		mustCode(t, err, 131026, http.StatusBadRequest)
		if _, err := e.send(t, text(driver, "hi")); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		e.sim.Reset()
	}
}

func TestThrottleStatusFollowsOption(t *testing.T) {
	e := start(t, func(o *whatsappsim.Options) { o.Throughput = 1; o.ThrottleStatus = http.StatusBadRequest })
	e.send(t, text(driver, "hi"))
	_, err := e.send(t, text(driver, "hi"))
	mustCode(t, err, 130429, http.StatusBadRequest)
	if !err.Retryable() {
		t.Fatal("130429 with HTTP 400 must still be retryable")
	}
}

func TestPairRateLimit(t *testing.T) {
	t.Parallel()
	e := start(t, func(o *whatsappsim.Options) { o.PairInterval = 500 * time.Millisecond })
	if _, err := e.send(t, text(driver, "one")); err != nil {
		t.Fatal(err)
	}
	_, err := e.send(t, text(driver, "two"))
	mustCode(t, err, 131056, http.StatusTooManyRequests)
	if !err.Retryable() || err.Reason != whatsapp.ReasonPairRateLimit {
		t.Fatalf("pair error %+v", err)
	}
	// Another recipient, or another business number, is another pair.
	if _, err := e.send(t, text("447700900999", "hi")); err != nil {
		t.Fatalf("other recipient: %v", err)
	}
	if _, err := e.sendAs(t, sender(phoneID2, token2), text(driver, "hi")); err != nil {
		t.Fatalf("other phone number: %v", err)
	}
	time.Sleep(520 * time.Millisecond)
	if _, err := e.send(t, text(driver, "three")); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
}

func TestCustomerServiceWindow(t *testing.T) {
	e := start(t, func(o *whatsappsim.Options) { o.EnforceWindow = true })
	_, err := e.send(t, text(driver, "hi"))
	mustCode(t, err, 131047, http.StatusBadRequest)
	if err.Retryable() || err.Reason != whatsapp.ReasonReEngagement {
		t.Fatalf("window error %+v", err)
	}
	tm, _ := whatsapp.TemplateMessage(driver, "hello_world", "en_US", nil)
	if _, err := e.send(t, tm); err != nil {
		t.Fatalf("template outside the window: %v", err)
	}

	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: "+" + driver, Text: "ok"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.send(t, text(driver, "hi")); err != nil {
		t.Fatalf("inside the window: %v", err)
	}
	// The window is per business number.
	_, err = e.sendAs(t, sender(phoneID2, token2), text(driver, "hi"))
	mustCode(t, err, 131047, http.StatusBadRequest)

	// A reply older than 24 h does not open it.
	old := "447700900555"
	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: old, Text: "ok", At: time.Now().Add(-25 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.send(t, text(old, "hi"))
	mustCode(t, err, 131047, http.StatusBadRequest)
}

func TestInjectedErrorForNextCalls(t *testing.T) {
	e := start(t, nil)
	if err := e.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: 131026, Times: 2}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, err := e.send(t, text(driver, "hi"))
		mustCode(t, err, 131026, http.StatusBadRequest)
		if err.Reason != whatsapp.ReasonUndeliverable || err.Retryable() {
			t.Fatalf("%+v", err)
		}
	}
	if _, err := e.send(t, text(driver, "hi")); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if len(e.sim.Faults()) != 0 {
		t.Fatalf("spent fault still installed: %+v", e.sim.Faults())
	}

	// Status override and a filter on the recipient.
	if err := e.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: 131000, HTTPStatus: 500, To: "447700900999"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.send(t, text(driver, "hi")); err != nil {
		t.Fatalf("unfiltered recipient: %v", err)
	}
	_, err := e.send(t, text("447700900999", "hi"))
	mustCode(t, err, 131000, http.StatusInternalServerError)
	if !err.Retryable() {
		t.Fatal("131000 must be retryable")
	}
	e.sim.ClearFaults()
	if _, err := e.send(t, text("447700900999", "hi")); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
}

func TestProbabilisticFaultIsSeeded(t *testing.T) {
	run := func() []bool {
		e := start(t, func(o *whatsappsim.Options) {
			o.Seed = 42
			o.Faults = []whatsappsim.Fault{{Kind: whatsappsim.FaultError, Code: 130429, Probability: 0.3}}
		})
		var out []bool
		for i := 0; i < 200; i++ {
			_, err := e.send(t, text(driver, "hi"))
			out = append(out, err != nil)
		}
		return out
	}
	a, b := run(), run()
	failed := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("call %d differs between runs with the same seed", i)
		}
		if a[i] {
			failed++
		}
	}
	if failed < 35 || failed > 85 {
		t.Fatalf("%d of 200 calls failed at probability 0.3", failed)
	}
}

func TestBare5xxFault(t *testing.T) {
	e := start(t, nil)
	e.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultHTTPStatus, HTTPStatus: 503, Times: 1})
	_, err := e.send(t, text(driver, "hi"))
	if err == nil || err.HasCode || err.Reason != whatsapp.ReasonHTTPStatus || err.HTTPStatus != 503 || !err.Retryable() {
		t.Fatalf("got %+v", err)
	}
	if n := e.sim.Counts().Accepted; n != 0 {
		t.Fatalf("%d accepted", n)
	}
}

func TestLatencyFaultAndClientTimeout(t *testing.T) {
	e := start(t, nil)
	e.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultLatency, Latency: whatsappsim.Duration(300 * time.Millisecond), Times: 1})
	c, _ := whatsapp.NewClient(whatsapp.Config{BaseURL: e.srv.URL, Timeout: 50 * time.Millisecond})
	_, err := c.Send(context.Background(), sender(phoneID, token), text(driver, "hi"))
	if !errors.Is(err, whatsapp.ErrOutcomeUnknown) {
		t.Fatalf("timeout after the request was written: %v, want ErrOutcomeUnknown", err)
	}
	var we *whatsapp.Error
	if !errors.As(err, &we) || we.Retryable() {
		t.Fatalf("%+v", err)
	}
	start := time.Now()
	if _, err := e.send(t, text(driver, "hi")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("spent latency fault still applied: %v", d)
	}
}

func TestDroppedConnections(t *testing.T) {
	e := start(t, nil)
	e.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultDrop, Times: 1})
	_, err := e.send(t, text(driver, "dropped"))
	if err == nil || !err.OutcomeUnknown() || err.Retryable() {
		t.Fatalf("drop: %+v", err)
	}
	if n := e.sim.Counts().Accepted; n != 0 {
		t.Fatalf("drop accepted %d", n)
	}

	e.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultDropAfterAccept, Times: 1})
	_, err = e.send(t, text(driver, "accepted then dropped"))
	if err == nil || !err.OutcomeUnknown() {
		t.Fatalf("drop after accept: %+v", err)
	}
	msgs := e.sim.Messages(phoneID, driver)
	if len(msgs) != 1 || msgs[0].Text.Body != "accepted then dropped" {
		t.Fatalf("drop after accept recorded %+v", msgs)
	}
	if got := e.sim.Counts().Dropped; got != 2 {
		t.Fatalf("dropped %d, want 2", got)
	}
	if _, err := e.send(t, text(driver, "fine")); err != nil {
		t.Fatalf("after drops: %v", err)
	}
}

func TestFaultValidation(t *testing.T) {
	e := start(t, nil)
	for _, f := range []whatsappsim.Fault{
		{Kind: "explode"},
		{Kind: whatsappsim.FaultError, Code: 100, HTTPStatus: 302},
		{Kind: whatsappsim.FaultLatency},
		{Kind: whatsappsim.FaultHTTPStatus, HTTPStatus: 200},
		{Kind: whatsappsim.FaultDrop, Probability: 2},
	} {
		if err := e.sim.AddFault(f); err == nil {
			t.Errorf("fault %+v accepted", f)
		}
	}
}

// receiver is a webhook endpoint that checks signatures independently of the
// simulator's Sign.
type receiver struct {
	mu       sync.Mutex
	bodies   [][]byte
	failures int // answer 500 to this many posts first
	bad      int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte(want)) || r.Header.Get("Content-Type") != "application/json" {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if rc.failures > 0 {
		rc.failures--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	rc.bodies = append(rc.bodies, body)
}

type statusWebhook struct {
	Object string `json:"object"`
	Entry  []struct {
		ID      string `json:"id"`
		Changes []struct {
			Field string `json:"field"`
			Value struct {
				MessagingProduct string `json:"messaging_product"`
				Metadata         struct {
					DisplayPhoneNumber string `json:"display_phone_number"`
					PhoneNumberID      string `json:"phone_number_id"`
				} `json:"metadata"`
				Statuses []struct {
					ID          string `json:"id"`
					Status      string `json:"status"`
					Timestamp   string `json:"timestamp"`
					RecipientID string `json:"recipient_id"`
					// Absent and empty are told apart: Meta sends none
					// for a message sent without one.
					CallbackData *string `json:"biz_opaque_callback_data"`
					Errors       []struct {
						Code  int    `json:"code"`
						Title string `json:"title"`
					} `json:"errors"`
				} `json:"statuses"`
				Contacts []struct {
					WaID    string `json:"wa_id"`
					Profile struct {
						Name string `json:"name"`
					} `json:"profile"`
				} `json:"contacts"`
				Messages []struct {
					From      string `json:"from"`
					ID        string `json:"id"`
					Timestamp string `json:"timestamp"`
					Type      string `json:"type"`
					Text      struct {
						Body string `json:"body"`
					} `json:"text"`
					Context struct {
						ID string `json:"id"`
					} `json:"context"`
				} `json:"messages"`
			} `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

func (rc *receiver) webhooks(t *testing.T) []statusWebhook {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []statusWebhook
	for _, b := range rc.bodies {
		var w statusWebhook
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatalf("webhook body %s: %v", b, err)
		}
		if w.Object != "whatsapp_business_account" || len(w.Entry) != 1 || len(w.Entry[0].Changes) != 1 || w.Entry[0].Changes[0].Field != "messages" {
			t.Fatalf("webhook not in Meta's shape: %s", b)
		}
		out = append(out, w)
	}
	return out
}

// statuses returns "status" for each status webhook received, in order.
func statuses(t *testing.T, hooks []statusWebhook, wamid string) []string {
	t.Helper()
	var out []string
	for _, h := range hooks {
		v := h.Entry[0].Changes[0].Value
		for _, s := range v.Statuses {
			if s.ID == wamid {
				if s.RecipientID != driver || s.Timestamp == "" || v.Metadata.PhoneNumberID != phoneID || v.MessagingProduct != "whatsapp" {
					t.Fatalf("status webhook fields: %+v", h)
				}
				out = append(out, s.Status)
			}
		}
	}
	return out
}

func startWithReceiver(t *testing.T, rc *receiver, mutate func(*whatsappsim.Options)) *env {
	t.Helper()
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	return start(t, func(o *whatsappsim.Options) {
		o.Webhook.URL = hook.URL
		o.Webhook.AppSecret = secret
		if mutate != nil {
			mutate(o)
		}
	})
}

func waitHooks(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.sim.WaitWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStatusWebhooksSignedAndInOrder(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, nil)
	sent, err := e.send(t, text(driver, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	waitHooks(t, e)
	if got := statuses(t, rc.webhooks(t), sent.MessageID); strings.Join(got, ",") != "sent,delivered,read" {
		t.Fatalf("statuses %v", got)
	}
	if rc.bad != 0 {
		t.Fatalf("%d webhooks with a bad signature", rc.bad)
	}
	if c := e.sim.Counts(); c.WebhooksDelivered != 3 || c.WebhooksPending != 0 {
		t.Fatalf("counts %+v", c)
	}
}

// A send's biz_opaque_callback_data comes back in its sent, delivered and
// read statuses, as Meta documents, and in no failed one; a send without
// it gets statuses without it.
func TestStatusWebhooksEchoCallbackData(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) {
		o.Faults = []whatsappsim.Fault{{Kind: whatsappsim.FaultFailLater, Code: 131049, Times: 1, To: "447700900124"}}
	})
	withData := text(driver, "hi")
	withData.CallbackData = "wd1/claim/l1/e1/m1 ü"
	sent, err := e.send(t, withData)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := e.send(t, text("447700900125", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	failing := text("447700900124", "hi")
	failing.CallbackData = "wd1/claim/l1/e1/m2"
	failed, err := e.send(t, failing)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.sim.Messages(phoneID, driver); len(got) != 1 || got[0].CallbackData != withData.CallbackData {
		t.Fatalf("recorded %+v", got)
	}
	waitHooks(t, e)
	echoed := map[string][]string{}
	for _, h := range rc.webhooks(t) {
		for _, s := range h.Entry[0].Changes[0].Value.Statuses {
			v := "(none)"
			if s.CallbackData != nil {
				v = *s.CallbackData
			}
			echoed[s.ID] = append(echoed[s.ID], s.Status+"="+v)
		}
	}
	for wamid, want := range map[string]string{
		sent.MessageID:   "sent=wd1/claim/l1/e1/m1 ü,delivered=wd1/claim/l1/e1/m1 ü,read=wd1/claim/l1/e1/m1 ü",
		plain.MessageID:  "sent=(none),delivered=(none),read=(none)",
		failed.MessageID: "sent=wd1/claim/l1/e1/m2,failed=(none)",
	} {
		if got := strings.Join(echoed[wamid], ","); got != want {
			t.Errorf("statuses of %s: %s, want %s", wamid, got, want)
		}
	}
}

func TestStatusWebhooksRetriedUntilAccepted(t *testing.T) {
	rc := &receiver{failures: 2}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) { o.Webhook.NoRead = true })
	sent, _ := e.send(t, text(driver, "hi"))
	waitHooks(t, e)
	if got := statuses(t, rc.webhooks(t), sent.MessageID); strings.Join(got, ",") != "sent,delivered" {
		t.Fatalf("statuses %v", got)
	}
	if c := e.sim.Counts(); c.WebhookAttemptsFailed != 2 || c.WebhooksDelivered != 2 || c.WebhooksAbandoned != 0 {
		t.Fatalf("counts %+v", c)
	}
}

func TestStatusWebhooksAbandonedAfterMaxAttempts(t *testing.T) {
	rc := &receiver{failures: 100}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) { o.Webhook.MaxAttempts = 3; o.Webhook.NoRead = true })
	e.send(t, text(driver, "hi"))
	waitHooks(t, e)
	if c := e.sim.Counts(); c.WebhookAttemptsFailed != 6 || c.WebhooksAbandoned != 2 || c.WebhooksDelivered != 0 {
		t.Fatalf("counts %+v", c)
	}
}

func TestStatusWebhooksDuplicatedAndReordered(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) { o.Webhook.Duplicate = true; o.Webhook.Reorder = true })
	sent, _ := e.send(t, text(driver, "hi"))
	waitHooks(t, e)
	if got := statuses(t, rc.webhooks(t), sent.MessageID); strings.Join(got, ",") != "read,read,delivered,delivered,sent,sent" {
		t.Fatalf("statuses %v", got)
	}
}

func TestFailLaterSendsFailedStatus(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) {
		o.Faults = []whatsappsim.Fault{{Kind: whatsappsim.FaultFailLater, Code: 131049, Times: 1}}
	})
	sent, err := e.send(t, text(driver, "hi"))
	if err != nil {
		t.Fatalf("fail_later must be accepted first: %v", err)
	}
	waitHooks(t, e)
	hooks := rc.webhooks(t)
	if got := statuses(t, hooks, sent.MessageID); strings.Join(got, ",") != "sent,failed" {
		t.Fatalf("statuses %v", got)
	}
	last := hooks[len(hooks)-1].Entry[0].Changes[0].Value.Statuses[0]
	if len(last.Errors) != 1 || last.Errors[0].Code != 131049 || last.Errors[0].Title == "" {
		t.Fatalf("failed status errors %+v", last.Errors)
	}
}

// slow_answer: the message is accepted and its statuses posted while the
// answer is held, so they reach the receiver before the sender knows the
// wamid.
func TestSlowAnswerStatusesOvertakeTheAnswer(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) {
		o.Faults = []whatsappsim.Fault{{Kind: whatsappsim.FaultSlowAnswer, Latency: whatsappsim.Duration(300 * time.Millisecond), Times: 1}}
	})
	start := time.Now()
	sent, err := e.send(t, text(driver, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("answered after %s, want the latency held", took)
	}
	if got := statuses(t, rc.webhooks(t), sent.MessageID); strings.Join(got, ",") != "sent,delivered,read" {
		t.Errorf("statuses received before the answer: %v", got)
	}
	if err := e.sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultSlowAnswer}); err == nil {
		t.Error("slow_answer without a latency accepted")
	}
}

func TestInboundMessageWebhook(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) { o.Webhook.NoStatuses = true })
	sent, _ := e.send(t, text(driver, "hi"))
	id, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: "+44 7700 900123", Name: "Sam", Text: "On my way", ContextID: sent.MessageID})
	if err != nil {
		t.Fatal(err)
	}
	waitHooks(t, e)
	hooks := rc.webhooks(t)
	if len(hooks) != 1 {
		t.Fatalf("%d webhooks, want only the inbound one", len(hooks))
	}
	v := hooks[0].Entry[0].Changes[0].Value
	if len(v.Messages) != 1 || len(v.Contacts) != 1 || v.Metadata.PhoneNumberID != phoneID {
		t.Fatalf("inbound webhook %+v", v)
	}
	m := v.Messages[0]
	if m.ID != id || m.From != driver || m.Type != "text" || m.Text.Body != "On my way" || m.Context.ID != sent.MessageID || m.Timestamp == "" {
		t.Fatalf("inbound message %+v", m)
	}
	if v.Contacts[0].WaID != driver || v.Contacts[0].Profile.Name != "Sam" {
		t.Fatalf("inbound contact %+v", v.Contacts[0])
	}
}

func TestVerifyWebhookHandshake(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("hub.mode") != "subscribe" || q.Get("hub.verify_token") != "verify-me" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(q.Get("hub.challenge")))
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := whatsappsim.VerifyWebhook(ctx, nil, srv.URL+"/webhook", "verify-me"); err != nil {
		t.Fatal(err)
	}
	if err := whatsappsim.VerifyWebhook(ctx, nil, srv.URL+"/webhook", "wrong"); err == nil {
		t.Fatal("wrong verify token passed")
	}
}

func TestSign(t *testing.T) {
	// HMAC-SHA256 test vector (RFC 4231 case 2).
	got := whatsappsim.Sign("Jefe", []byte("what do ya want for nothing?"))
	if got != "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Fatalf("Sign = %s", got)
	}
}

func TestAdminAPI(t *testing.T) {
	e := start(t, func(o *whatsappsim.Options) { o.EnforceWindow = true })
	admin := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewBufferString(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if s, b := admin("POST", "/_sim/inbound", `{"phone_number_id":"`+phoneID+`","from":"`+driver+`","text":"hello"}`); s != 200 || !bytes.Contains(b, []byte(`"id":"wamid.`)) {
		t.Fatalf("inbound: %d %s", s, b)
	}
	if s, b := admin("POST", "/_sim/faults", `{"kind":"latency","latency":"1ms","times":1}`); s != 204 {
		t.Fatalf("add fault: %d %s", s, b)
	}
	if s, b := admin("POST", "/_sim/faults", `{"kind":"error","code":131026,"times":1,"phone_number_id":"`+phoneID2+`"}`); s != 204 {
		t.Fatalf("add fault: %d %s", s, b)
	}
	if s, b := admin("POST", "/_sim/faults", `{"kind":"latency"}`); s != 400 || !bytes.Contains(b, []byte("needs a positive latency")) {
		t.Fatalf("bad fault: %d %s", s, b)
	}
	if s, b := admin("POST", "/_sim/faults", `{"kind":"error","code":1,"colour":"red"}`); s != 400 {
		t.Fatalf("unknown field: %d %s", s, b)
	}
	if s, b := admin("GET", "/_sim/faults", ""); s != 200 || !bytes.Contains(b, []byte(`"latency":"1ms"`)) || !bytes.Contains(b, []byte(`131026`)) {
		t.Fatalf("faults: %d %s", s, b)
	}
	sent, err := e.send(t, text(driver, "inside the window"))
	if err != nil {
		t.Fatal(err)
	}
	if s, b := admin("GET", "/_sim/messages?to="+driver, ""); s != 200 || !bytes.Contains(b, []byte(sent.MessageID)) || !bytes.Contains(b, []byte("inside the window")) {
		t.Fatalf("messages: %d %s", s, b)
	}
	if s, b := admin("GET", "/_sim/messages?phone_number_id="+phoneID2, ""); s != 200 || string(bytes.TrimSpace(b)) != `{"messages":[]}` {
		t.Fatalf("filtered messages: %d %s", s, b)
	}
	var counts whatsappsim.Counts
	_, b := admin("GET", "/_sim/counts", "")
	if err := json.Unmarshal(b, &counts); err != nil || counts.Accepted != 1 || counts.AcceptedByRecipient[driver] != 1 {
		t.Fatalf("counts: %s", b)
	}
	if s, b := admin("POST", "/_sim/phone-numbers", `{"phone_number_id":"777","token":"t7"}`); s != 204 {
		t.Fatalf("phone numbers: %d %s", s, b)
	}
	if s, _ := admin("DELETE", "/_sim/faults", ""); s != 204 || len(e.sim.Faults()) != 0 {
		t.Fatal("faults not cleared")
	}
	if s, _ := admin("POST", "/_sim/reset", ""); s != 204 {
		t.Fatal("reset")
	}
	if c := e.sim.Counts(); c.Accepted != 0 || len(e.sim.Messages("", "")) != 0 {
		t.Fatalf("after reset: %+v", c)
	}
	// Reset closes the window again.
	_, werr := e.send(t, text(driver, "hi"))
	mustCode(t, werr, 131047, http.StatusBadRequest)
	if s, _ := admin("GET", "/_sim/nope", ""); s != 400 {
		t.Fatalf("unknown admin route: %d", s)
	}
}

func TestFormattedRecipientGetsDigitsWaID(t *testing.T) {
	e := start(t, nil)
	sent, err := e.send(t, text("+44 (7700) 900-123", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if sent.WaID != driver || sent.Input != "+44 (7700) 900-123" {
		t.Fatalf("%+v", sent)
	}
	if got := e.sim.Counts().AcceptedByRecipient[driver]; got != 1 {
		t.Fatalf("counted %d for the wa_id", got)
	}
}

// DefaultOptions holds Meta's numbers: 80 messages/s per phone number, one
// message per 6 s per pair, the 24-hour window.
func TestMetaDefaults(t *testing.T) {
	def := whatsappsim.DefaultOptions()
	e := start(t, func(o *whatsappsim.Options) {
		o.Throughput, o.PairInterval, o.EnforceWindow = def.Throughput, def.PairInterval, def.EnforceWindow
	})
	tm, _ := whatsapp.TemplateMessage(driver, "hello_world", "en_US", nil)
	if _, err := e.send(t, tm); err != nil {
		t.Fatal(err)
	}
	_, err := e.send(t, tm)
	mustCode(t, err, 131056, http.StatusTooManyRequests)
	_, err = e.send(t, text("447700900001", "hi"))
	mustCode(t, err, 131047, http.StatusBadRequest)

	accepted := 1 // the first template above
	for i := 0; i < 100; i++ {
		tm, _ := whatsapp.TemplateMessage(fmt.Sprintf("4477118%05d", i), "hello_world", "en_US", nil)
		if _, err := e.send(t, tm); err == nil {
			accepted++
		} else if err.Code != 130429 {
			t.Fatal(err)
		}
	}
	// 80 in the first second (a few more if the loop is slow).
	if accepted < 80 || accepted > 90 {
		t.Fatalf("accepted %d of 101 at the default throughput", accepted)
	}
}

func TestRefusalsTakeNoShareOfLimits(t *testing.T) {
	t.Parallel()
	e := start(t, func(o *whatsappsim.Options) {
		o.Throughput, o.PairInterval, o.EnforceWindow = 1, time.Hour, true
	})
	// Outside the window: refused, and the pair budget is untouched.
	_, err := e.send(t, text(driver, "hi"))
	mustCode(t, err, 131047, http.StatusBadRequest)
	tm, _ := whatsapp.TemplateMessage(driver, "hello_world", "en_US", nil)
	if _, err := e.send(t, tm); err != nil {
		t.Fatalf("template after a window refusal: %v", err)
	}
	// Throughput refusals do not push the next slot further away.
	for i := 0; i < 3; i++ {
		_, err := e.send(t, tm)
		if err == nil || (err.Code != 130429 && err.Code != 131056) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	time.Sleep(1050 * time.Millisecond)
	tm2, _ := whatsapp.TemplateMessage("447700900999", "hello_world", "en_US", nil)
	if _, err := e.send(t, tm2); err != nil {
		t.Fatalf("one second later: %v", err)
	}
}
