package ops_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
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

func startWithLimits(t *testing.T, limits ops.Limits, h http.Handler) string {
	t.Helper()
	srv, err := ops.NewWithLimits("127.0.0.1:0", limits)
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("/work", h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return srv.Addr()
}

// A client that sends its body slowly is cut off once the read timeout
// passes, instead of holding a connection and its buffers forever.
func TestSlowBodyIsCut(t *testing.T) {
	limits := ops.DefaultLimits
	limits.ReadTimeout = 300 * time.Millisecond
	addr := startWithLimits(t, limits, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Dribble a byte at a time until the server closes the connection; a
	// server without a read timeout would take the whole MiB for hours.
	cut := false
	for giveUp := time.Now().Add(20 * time.Second); time.Now().Before(giveUp); {
		if _, err := conn.Write([]byte("x")); err != nil {
			cut = true
			break
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var b [1]byte
		if _, err := conn.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			cut = true
			break
		}
	}
	if !cut {
		t.Fatal("the server read a dribbled MiB without cutting the connection")
	}
}

// Past the in-flight limit a request is answered 503 at once; probes are
// still answered.
func TestInFlightLimit(t *testing.T) {
	limits := ops.DefaultLimits
	limits.MaxInFlight = 2
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	addr := startWithLimits(t, limits, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer close(release)
	for range 2 {
		go func() {
			if resp, err := http.Post("http://"+addr+"/work", "text/plain", strings.NewReader("x")); err == nil {
				resp.Body.Close()
			}
		}()
		<-entered
	}
	resp, err := http.Post("http://"+addr+"/work", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third request: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while the limit is reached", code)
	}
}

// On an API server /healthz is no probe of ours but the service's path, so
// it waits for a slot like any request: the limit has no way around it.
func TestAPIServerLimitsEveryPath(t *testing.T) {
	limits := ops.DefaultLimits
	limits.MaxInFlight = 1
	srv, err := ops.NewAPIWithLimits("127.0.0.1:0", limits)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, time.Second) }()
	defer func() {
		close(release)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	go func() {
		if resp, err := http.Post("http://"+srv.Addr()+"/", "text/plain", strings.NewReader("x")); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	// A request let past the limit would wait in the handler: bound it.
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatalf("/healthz on an API server at its limit: %v, want an answer of 503 at once", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz on an API server at its limit: %d, want 503", resp.StatusCode)
	}
}

// Profiles are served only when asked for: the probes port is open to the
// metrics scrapers.
func TestProfilesOnlyWhenServed(t *testing.T) {
	for _, serve := range []bool{false, true} {
		srv, err := ops.New("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if serve {
			srv.ServeProfiles()
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx, time.Second) }()
		code, body := get(t, "http://"+srv.Addr()+"/debug/pprof/heap?debug=1")
		if serve && (code != http.StatusOK || !strings.Contains(body, "heap profile")) {
			t.Errorf("served: /debug/pprof/heap answered %d %.80q", code, body)
		}
		if !serve && code != http.StatusNotFound {
			t.Errorf("not served: /debug/pprof/heap answered %d", code)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
