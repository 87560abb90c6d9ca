package app

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func invalidNumberRefusal() *wadispatchv1.Refusal {
	return &wadispatchv1.Refusal{
		MessageDocId: "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1", LeaseId: "l1", EnquiryId: "e1", MessageId: "m1",
		CreatedBy: "u1", Reason: "invalid_data", Field: "driverMobileNumber", Detail: "not a valid phone number for its region",
		EventId: "ev-1", CreatedAt: timestamppb.New(t0.Add(-time.Minute)), RefusedAt: timestamppb.New(t0.Add(-time.Second)),
	}
}

func TestDecideRefusal(t *testing.T) {
	r := invalidNumberRefusal()
	ref, err := validateRefusal(r)
	if err != nil {
		t.Fatal(err)
	}
	outcome, p := decideRefusal(nil, true, r, ref, t0)
	if outcome != RefusalRecorded || p.State == nil || p.Message == nil || p.CountSentIn != "" || p.Index != nil {
		t.Fatalf("%s %+v", outcome, p)
	}
	st := p.State
	if st.Status != "FAILED" || st.Outcome != "FAILED" || st.MessagePath != ref.Path() || st.LeaseID != "l1" || st.EnquiryID != "e1" ||
		st.MessageID != "m1" || st.CreatedBy != "u1" || st.Claims != 0 || st.Error != nil || st.DriverMobileNumber != "" ||
		!st.CreatedAt.Equal(t0.Add(-time.Minute)) || !st.FailedAt.Equal(t0.Add(-time.Second)) || !st.UpdatedAt.Equal(t0) {
		t.Errorf("state %+v", st)
	}
	if want := "refused by ingest: invalid_data: driverMobileNumber: not a valid phone number for its region"; st.Reason != want {
		t.Errorf("state reason %q, want %q", st.Reason, want)
	}
	want := MessageUpdate{Status: dispatch.StatusFailed, StatusUpdatedAt: t0, FailureReason: "invalid_data",
		StatusReason: "driverMobileNumber: not a valid phone number for its region", FailedAt: t0.Add(-time.Second)}
	if *p.Message != want {
		t.Errorf("message update %+v, want %+v", *p.Message, want)
	}
	if !refusedState(st) {
		t.Error("the state written is not recognised as a refusal's")
	}

	// Written once: again, or on anything else's state, it changes nothing.
	for name, tc := range map[string]struct {
		st     *State
		exists bool
		want   string
	}{
		"refused before":       {st, true, RefusalDuplicate},
		"claimed":              {&State{Status: "SENDING", Claims: 1, ClaimID: "c1"}, true, RefusalHasState},
		"sent":                 {&State{Status: "SENT", Outcome: "SENT", Claims: 1}, true, RefusalHasState},
		"failed at WhatsApp":   {&State{Status: "FAILED", Outcome: "FAILED", Claims: 1, Error: &errorDoc{Code: 131026}}, true, RefusalHasState},
		"result without claim": {&State{Status: "FAILED", Outcome: "FAILED", Error: &errorDoc{}}, true, RefusalHasState},
		"unknown":              {&State{Status: "UNKNOWN", Claims: 1}, true, RefusalHasState},
		"document deleted":     {nil, false, RefusalNoMessage},
	} {
		got, p := decideRefusal(tc.st, tc.exists, r, ref, t0)
		if got != tc.want || p.State != nil || p.Message != nil {
			t.Errorf("%s: %s %+v, want %s and no write", name, got, p, tc.want)
		}
	}
}

// What ingest sends is bounded before it is written, and a refusal without
// a field or times still explains itself.
func TestDecideRefusalBoundsWhatItWrites(t *testing.T) {
	r := &wadispatchv1.Refusal{MessageDocId: "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1",
		Reason: "no_whatsapp_config", Detail: strings.Repeat("d", 5000), CreatedBy: strings.Repeat("u", 5000)}
	ref, err := validateRefusal(r)
	if err != nil {
		t.Fatal(err)
	}
	_, p := decideRefusal(nil, true, r, ref, t0)
	if len(p.State.Reason) > 1200 || len(p.State.CreatedBy) > 1100 || len(p.Message.StatusReason) > 1100 {
		t.Errorf("reason %d, createdBy %d, statusReason %d bytes", len(p.State.Reason), len(p.State.CreatedBy), len(p.Message.StatusReason))
	}
	if !p.State.FailedAt.Equal(t0) || !p.State.CreatedAt.IsZero() || p.Message.FailureReason != "no_whatsapp_config" {
		t.Errorf("state %+v, message %+v", p.State, p.Message)
	}
}

func TestValidateRefusal(t *testing.T) {
	for name, mutate := range map[string]func(*wadispatchv1.Refusal){
		"no path":       func(r *wadispatchv1.Refusal) { r.MessageDocId = "" },
		"not a message": func(r *wadispatchv1.Refusal) { r.MessageDocId = "leasecompany/l1" },
		"no reason":     func(r *wadispatchv1.Refusal) { r.Reason = "" },
		"other lease":   func(r *wadispatchv1.Refusal) { r.LeaseId = "l2" },
		"other enquiry": func(r *wadispatchv1.Refusal) { r.EnquiryId = "e2" },
	} {
		r := invalidNumberRefusal()
		mutate(r)
		if _, err := validateRefusal(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
