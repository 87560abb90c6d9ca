package stack_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/visn/wadispatch/tools/stack"
)

// Each service answers /healthz while running and exits 0 within a second
// of SIGTERM when it has nothing in flight.
func TestServicesAnswerHealthzAndStopWithinASecondOfSIGTERM(t *testing.T) {
	s := stack.StartForTest(t, stack.Options{})
	for name, url := range map[string]string{
		stack.Ingest:   s.IngestOpsURL,
		stack.Sender:   s.SenderURL,
		stack.Recorder: s.RecorderURL,
	} {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			t.Fatalf("%s /healthz: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s /healthz = %d", name, resp.StatusCode)
		}
	}
	for _, name := range []string{stack.Ingest, stack.Sender, stack.Recorder} {
		start := time.Now()
		if err := s.StopOne(name); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s took %s to exit after SIGTERM", name, took)
		}
	}
}
