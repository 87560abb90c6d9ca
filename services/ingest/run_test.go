package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/logging/logtest"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// run, wired from the environment as in production, serves events on
// HTTP_ADDR and returns nil once its context ends, after draining.
func TestRunFromEnvironmentAndShutdown(t *testing.T) {
	e := newEnv(t, nil) // emulators, and a receiver on the tasks subscription
	e.seedLeaseAndEnquiry(t)
	// Port 0, and the address from the start-up line: a port picked and
	// released here could be taken by another test before ingest listens.
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")
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
	var addr string
	for addr == "" {
		for _, l := range e.logs.Entries(t) {
			if l["message"] == "ingest starting" {
				addr, _ = l["addr"].(string)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no start-up line from ingest")
		}
		time.Sleep(10 * time.Millisecond)
	}
	url := "http://" + addr + "/events/firestore"
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
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

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
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
