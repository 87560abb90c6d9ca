package whatsapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

const (
	phoneID = "106540352242922"
	token   = "EAAJB-simulated-secret-token"
	driver  = "447700900123"
)

// simulator starts a simulator without limits and a client for it; conns
// counts the TCP connections the client opened.
func simulator(tb testing.TB, mutate func(*whatsappsim.Options)) (*whatsappsim.Simulator, *whatsapp.Client, *atomic.Int64) {
	tb.Helper()
	opts := whatsappsim.DefaultOptions()
	opts.PhoneNumbers = map[string]string{phoneID: token}
	opts.Throughput, opts.PairInterval, opts.EnforceWindow = 0, 0, false
	if mutate != nil {
		mutate(&opts)
	}
	sim, err := whatsappsim.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(sim.Handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	tb.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	c, err := whatsapp.NewClient(whatsapp.Config{BaseURL: srv.URL})
	if err != nil {
		tb.Fatal(err)
	}
	return sim, c, &conns
}

func from() whatsapp.Sender {
	return whatsapp.Sender{PhoneNumberID: phoneID, APIVersion: "v21.0", Token: whatsapp.NewToken(token)}
}

func TestSimulatorReceivesMetaShapedRequests(t *testing.T) {
	sim, c, _ := simulator(t, nil)
	ctx := context.Background()
	if _, err := c.Send(ctx, from(), whatsapp.TextMessage(driver, "Pickup at 10:30", true)); err != nil {
		t.Fatal(err)
	}
	tm, err := whatsapp.TemplateMessage(driver, "eta_update", "en_GB", map[string]string{"eta": "15", "driver_name": "Sam"})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := c.Send(ctx, from(), tm)
	if err != nil {
		t.Fatal(err)
	}
	msgs := sim.Messages(phoneID, driver)
	if len(msgs) != 2 || msgs[1].WAMID != sent.MessageID {
		t.Fatalf("recorded %+v", msgs)
	}
	wantText := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900123","type":"text","text":{"body":"Pickup at 10:30","preview_url":true}}`
	wantTemplate := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900123","type":"template","template":{"name":"eta_update","language":{"code":"en_GB"},` +
		`"components":[{"type":"body","parameters":[{"type":"text","parameter_name":"driver_name","text":"Sam"},{"type":"text","parameter_name":"eta","text":"15"}]}]}}`
	if string(msgs[0].Body) != wantText || string(msgs[1].Body) != wantTemplate {
		t.Fatalf("bodies\n%s\n%s", msgs[0].Body, msgs[1].Body)
	}
}

// Every documented code, injected by the simulator, comes back classified as
// the table says, with Meta's documented status.
func TestEveryDocumentedCodeThroughTheSimulator(t *testing.T) {
	sim, c, _ := simulator(t, nil)
	for _, code := range whatsapp.DocumentedCodes() {
		if err := sim.AddFault(whatsappsim.Fault{Kind: whatsappsim.FaultError, Code: code, Times: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Send(context.Background(), from(), whatsapp.TextMessage(driver, "hi", false))
		var e *whatsapp.Error
		if !errors.As(err, &e) {
			t.Fatalf("code %d: %v", code, err)
		}
		_, status, _ := whatsapp.Documented(code)
		reason, retryable := whatsapp.Classify(code, status)
		if !e.HasCode || e.Code != code || e.HTTPStatus != status || e.Reason != reason || e.Retryable() != retryable {
			t.Errorf("code %d: got %+v", code, e)
		}
		if strings.Contains(err.Error(), token) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), token) {
			t.Fatalf("code %d: error leaks the token: %v", code, err)
		}
	}
}

func TestConnectionsAreReused(t *testing.T) {
	_, c, conns := simulator(t, nil)
	for i := 0; i < 50; i++ {
		if _, err := c.Send(context.Background(), from(), whatsapp.TextMessage(driver, "hi", false)); err != nil {
			t.Fatal(err)
		}
	}
	// Error answers must not cost a connection either.
	for i := 0; i < 10; i++ {
		bad := from()
		bad.Token = whatsapp.NewToken("wrong")
		if _, err := c.Send(context.Background(), bad, whatsapp.TextMessage(driver, "hi", false)); err == nil {
			t.Fatal("wrong token accepted")
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 60 sequential sends", n)
	}
	c.CloseIdleConnections()
	if _, err := c.Send(context.Background(), from(), whatsapp.TextMessage(driver, "hi", false)); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after CloseIdleConnections, want a new one", n)
	}
}

func TestAcceptedButAnswerLostIsOutcomeUnknown(t *testing.T) {
	sim, c, _ := simulator(t, func(o *whatsappsim.Options) {
		o.Faults = []whatsappsim.Fault{{Kind: whatsappsim.FaultDropAfterAccept, Times: 1}}
	})
	_, err := c.Send(context.Background(), from(), whatsapp.TextMessage(driver, "hi", false))
	if !errors.Is(err, whatsapp.ErrOutcomeUnknown) {
		t.Fatalf("err = %v", err)
	}
	// The driver did get it: this is why the sender must not resend blindly.
	if n := sim.Counts().AcceptedByRecipient[driver]; n != 1 {
		t.Fatalf("accepted %d", n)
	}
}

func TestThrottledThenAcceptedAfterRetryAfter(t *testing.T) {
	_, c, _ := simulator(t, func(o *whatsappsim.Options) { o.PairInterval = 400 * time.Millisecond })
	ctx := context.Background()
	if _, err := c.Send(ctx, from(), whatsapp.TextMessage(driver, "one", false)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Send(ctx, from(), whatsapp.TextMessage(driver, "two", false))
	var e *whatsapp.Error
	if !errors.As(err, &e) || e.Reason != whatsapp.ReasonPairRateLimit || !e.Retryable() {
		t.Fatalf("err = %v", err)
	}
	time.Sleep(420 * time.Millisecond)
	if _, err := c.Send(ctx, from(), whatsapp.TextMessage(driver, "two", false)); err != nil {
		t.Fatalf("retry after the interval: %v", err)
	}
}

func TestErrorJSONHasNoToken(t *testing.T) {
	_, c, _ := simulator(t, nil)
	bad := from()
	bad.Token = whatsapp.NewToken("another-" + token)
	_, err := c.Send(context.Background(), bad, whatsapp.TextMessage(driver, "hi", false))
	b, _ := json.Marshal(map[string]any{"err": err, "sender": bad})
	if strings.Contains(string(b), token) || strings.Contains(err.Error(), token) {
		t.Fatalf("leak: %s / %v", b, err)
	}
}

// BenchmarkSend measures the client against the simulator over loopback: one
// goroutine, and GOMAXPROCS×8 goroutines sharing one Client.
func BenchmarkSend(b *testing.B) {
	msg := whatsapp.TextMessage(driver, "Your driver is 5 minutes away", false)
	b.Run("serial", func(b *testing.B) {
		_, c, conns := simulator(b, nil)
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			if _, err := c.Send(context.Background(), from(), msg); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		b.ReportMetric(float64(conns.Load()), "conns")
	})
	b.Run("parallel", func(b *testing.B) {
		_, c, conns := simulator(b, nil)
		b.ReportAllocs()
		b.SetParallelism(8)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Send(context.Background(), from(), msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		b.ReportMetric(float64(conns.Load()), "conns")
	})
}
