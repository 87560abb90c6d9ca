package stack_test

import (
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/stack"
)

// With two recorders the sender's claims go to both; while one is down
// the other takes them all, and once it is back it gets its share again.
func TestTwoRecordersShareTheClaims(t *testing.T) {
	s, fs, ctx := setupFor(t, stack.Options{Recorders: 2}, 2*time.Minute)
	first, second := stack.RecorderName(0), stack.RecorderName(1)
	claims := func(recorder string) float64 {
		t.Helper()
		n, err := s.Metric(ctx, recorder, "wadispatch_recorder_claims_total", nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	batch := 0
	// send writes n template messages, each to its own driver (WhatsApp's
	// pair limit), and waits until each is sent.
	send := func(n int) {
		t.Helper()
		batch++
		var paths []string
		for i := range n {
			ref := dispatch.MessageRef{LeaseID: stack.DemoLease, EnquiryID: stack.DemoEnquiry, MessageID: fmt.Sprintf("lb-%d-%d", batch, i)}
			if _, err := fs.Doc(ref.Path()).Create(ctx, map[string]any{
				"type": "template", "message": "", "templateType": "vehicle_delivery",
				"driverMobileNumber": fmt.Sprintf("+4479111%02d%03d", batch, i), "createdBy": stack.DemoUser,
				"createdAt": firestore.ServerTimestamp,
			}); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, ref.Path())
		}
		for _, p := range paths {
			waitForStatus(t, ctx, fs, p, "SENT")
		}
	}

	send(20)
	a, b := claims(first), claims(second)
	t.Logf("20 messages: %v claims at %s, %v at %s", a, first, b, second)
	if a < 5 || b < 5 {
		t.Fatalf("20 messages claimed %v times at %s and %v at %s, want both", a, first, b, second)
	}

	s.Kill(second)
	send(10)
	if got := claims(first) - a; got < 10 {
		t.Errorf("with %s down, %s answered %v claims for 10 messages", second, first, got)
	}

	if err := s.Restart(ctx, second); err != nil {
		t.Fatal(err)
	}
	// The sender connects again after its reconnect backoff.
	restarted := time.Now()
	for claims(second) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("%s restarted, and no claim reached it", second)
		}
		send(5)
	}
	t.Logf("%s answered claims again %s after its restart", second, time.Since(restarted).Round(time.Millisecond))
}
