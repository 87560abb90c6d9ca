package stack_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/visn/wadispatch/tools/stack"
)

// In `make run`, a service that dies is reported and started again.
func TestSuperviseRestartsAServiceThatDies(t *testing.T) {
	s := stack.StartForTest(t, stack.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	type restart struct {
		name          string
		exit, restart error
	}
	reports := make(chan restart, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Supervise(ctx, func(name string, exit, err error) { reports <- restart{name, exit, err} })
	}()
	defer func() { cancel(); <-done }()

	before := s.PID(stack.Sender)
	s.Kill(stack.Sender)
	select {
	case r := <-reports:
		if r.name != stack.Sender || r.exit == nil || r.restart != nil {
			t.Fatalf("report %+v, want the sender's death and a restart", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sender's death was not reported")
	}
	if after := s.PID(stack.Sender); after == before || after == 0 {
		t.Errorf("sender pid %d after the restart, %d before", after, before)
	}
	resp, err := http.Get(s.SenderURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("restarted sender /healthz = %d", resp.StatusCode)
	}
}
