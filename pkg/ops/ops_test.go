package ops_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/visn/wadispatch/pkg/ops"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProbesMetricsAndShutdown(t *testing.T) {
	srv, err := ops.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var depErr error
	srv.AddReadiness("pubsub", func(context.Context) error { return depErr })
	sent := prometheus.NewCounter(prometheus.CounterOpts{Name: "wadispatch_test_sent_total", Help: "test"})
	srv.Registry.MustRegister(sent)
	sent.Add(3)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, time.Second) }()
	base := "http://" + srv.Addr()

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d with healthy deps", code)
	}
	depErr = errors.New("unavailable")
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "pubsub: unavailable") {
		t.Errorf("/readyz = %d %q with a failing dep", code, body)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "wadispatch_test_sent_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics lacks the counter or Go collector:\n%s", body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

// A client that dialled but sent nothing does not hold the shutdown.
func TestShutdownDoesNotWaitForConnectionsWithoutRequests(t *testing.T) {
	srv, err := ops.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, 10*time.Second) }()
	if code, _ := get(t, "http://"+srv.Addr()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond) // let the server see the connection
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run waited for a connection that sent no request")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("shutdown took %s", took)
	}
}
