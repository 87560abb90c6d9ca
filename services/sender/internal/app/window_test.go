package app

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestCustomerServiceWindow(t *testing.T) {
	// The clock is real: the claim's lease bounds the WhatsApp call by it.
	now := time.Now()
	template := func() *wadispatchv1.SendTask {
		task := textTask()
		task.Type, task.TemplateType, task.Message = wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE, "vehicle_ready", ""
		return task
	}
	interactive := func() *wadispatchv1.SendTask {
		task := textTask()
		task.Type = wadispatchv1.MessageType_MESSAGE_TYPE_INTERACTIVE
		task.Interactive = &wadispatchv1.Interactive{Kind: wadispatchv1.InteractiveKind_INTERACTIVE_KIND_BUTTON,
			Buttons: []*wadispatchv1.InteractiveButton{{Id: "yes", Title: "Yes"}}}
		return task
	}
	cases := []struct {
		name     string
		task     *wadispatchv1.SendTask
		last     *timestamppb.Timestamp
		enforce  bool
		checked  bool
		wantSent bool
	}{
		{"text, never wrote", textTask(), nil, true, true, false},
		{"text, wrote an hour ago", textTask(), timestamppb.New(now.Add(-time.Hour)), true, true, true},
		{"text, wrote 24h ago", textTask(), timestamppb.New(now.Add(-24 * time.Hour)), true, true, false},
		{"text, wrote 25h ago", textTask(), timestamppb.New(now.Add(-25 * time.Hour)), true, true, false},
		{"template, never wrote", template(), nil, true, false, true},
		// Interactive messages are free-form: the same rule as text.
		{"interactive, never wrote", interactive(), nil, true, true, false},
		{"interactive, wrote an hour ago", interactive(), timestamppb.New(now.Add(-time.Hour)), true, true, true},
		{"interactive, wrote 25h ago", interactive(), timestamppb.New(now.Add(-25 * time.Hour)), true, true, false},
		{"text, never wrote, check off", textTask(), nil, false, true, true},
		// A recorder that predates the window: WhatsApp decides.
		{"text, recorder did not check", textTask(), nil, true, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(*wadispatchv1.ClaimSendRequest) (*wadispatchv1.ClaimSendResponse, error) {
				return &wadispatchv1.ClaimSendResponse{Decision: wadispatchv1.ClaimSendResponse_DECISION_SEND, ClaimId: "claim-1",
					DriverLastInboundAt: c.last, DriverWindowChecked: c.checked}, nil
			}, ok("wamid.W"))
			h.clock.now = now
			h.proc.cfg.EnforceWindow = c.enforce
			v := h.proc.Process(t.Context(), delivery(t, c.task))
			r := h.result()
			if c.wantSent {
				wantVerdict(t, v, true, OutcomeSent)
				if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT || h.calls() != 1 {
					t.Errorf("result %v after %d calls", r, h.calls())
				}
				return
			}
			wantVerdict(t, v, true, OutcomeFailed)
			if h.calls() != 0 {
				t.Errorf("WhatsApp called %d times for a free-form message outside the window", h.calls())
			}
			if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_FAILED || r.GetError().GetReason() != ReasonOutsideWindow ||
				!strings.Contains(r.GetError().GetMessage(), "24 hours") && c.last != nil || r.GetClaimId() != "claim-1" {
				t.Errorf("result %v", r)
			}
		})
	}
}
