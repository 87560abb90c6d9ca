package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/logging/logtest"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// run, wired from the environment as in production, serves events on
// INGEST_ADDR and probes and metrics on HTTP_ADDR, each only on its own
// port, and returns nil once its context ends, after draining.
func TestRunFromEnvironmentAndShutdown(t *testing.T) {
	e := newEnv(t, nil) // emulators, and a receiver on the tasks subscription
	e.seedLeaseAndEnquiry(t)
	// Port 0, and the address from the start-up line: a port picked and
	// released here could be taken by another test before ingest listens.
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("INGEST_ADDR", "127.0.0.1:0")
	t.Setenv("SHUTDOWN_GRACE", "5s")
	var cfg spec
	if err := config.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	log, err := logging.NewTo(e.logs, "ingest", project, "info")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, log) }()

	deadline := time.Now().Add(5 * time.Second)
	var addr, opsAddr string
	for addr == "" {
		for _, l := range e.logs.Entries(t) {
			if l["message"] == "ingest starting" {
				addr, _ = l["addr"].(string)
				opsAddr, _ = l["opsAddr"].(string)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no start-up line from ingest")
		}
		time.Sleep(10 * time.Millisecond)
	}
	url := "http://" + addr + "/events/firestore"
	for {
		resp, err := http.Get("http://" + opsAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest not serving: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := e.post(t, e.chatEvent(t, "ev-run", msgPath, textMessage()).Binary(url)); a.code != http.StatusOK || a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("answer %d %v", a.code, a.body)
	}
	e.onlyTask(t, "ev-run")
	// Each port serves only its own endpoints: no metrics where events
	// come in, no events where metrics are scraped.
	for _, c := range []struct{ addr, path string }{{addr, "/metrics"}, {opsAddr, "/events/firestore"}} {
		resp, err := http.Get("http://" + c.addr + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusMethodNotAllowed && c.addr == opsAddr || strings.Contains(string(b), "go_goroutines") {
			t.Errorf("GET %s on %s: HTTP %d %.80s", c.path, c.addr, resp.StatusCode, b)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	for _, a := range []string{addr, opsAddr} {
		if _, err := http.Get("http://" + a + "/"); err == nil {
			t.Fatalf("%s still serving after shutdown", a)
		}
	}
}

func TestRunRejectsUnknownRegion(t *testing.T) {
	var cfg spec
	if err := config.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.DefaultRegion = "XX"
	log, _ := logging.NewTo(&logtest.Buffer{}, "ingest", project, "info")
	if err := run(context.Background(), cfg, log); err == nil {
		t.Fatal("run accepted region XX")
	}
}

func TestRunRejectsBadReconcileSettings(t *testing.T) {
	for name, tune := range map[string]func(*spec){
		"negative interval":       func(s *spec) { s.ReconcileInterval = -time.Second },
		"no grace":                func(s *spec) { s.ReconcileGrace = 0 },
		"window within the grace": func(s *spec) { s.ReconcileWindow = s.ReconcileGrace },
		"no time field":           func(s *spec) { s.ReconcileTimeField = "" },
	} {
		var cfg spec
		if err := config.Load(&cfg); err != nil {
			t.Fatal(err)
		}
		tune(&cfg)
		if err := cfg.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var off spec
	if err := config.Load(&off); err != nil {
		t.Fatal(err)
	}
	off.ReconcileInterval, off.ReconcileTimeField = 0, ""
	if err := off.check(); err != nil {
		t.Errorf("reconciler off: %v", err)
	}
}
