package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func (e *env) driverRecord(t *testing.T, lease, driver string) *wadispatchv1.GetDriverResponse {
	t.Helper()
	r, err := e.rec.GetDriver(context.Background(), &wadispatchv1.GetDriverRequest{LeaseId: lease, DriverMobileNumber: driver})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A driver's stop and resume are kept per lease, the latest winning
// whatever order they come in; WhatsApp's 131050 is a stop too.
func TestDriverChoicesLatestWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	// In the past: the 131050 below is decided at its call, now.
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	pref := func(choice wadispatchv1.DriverPreference_Choice, at time.Time) *wadispatchv1.DriverPreference {
		return &wadispatchv1.DriverPreference{Driver: driver, LeaseIds: []string{"l1", "l2"}, Choice: choice, Source: "keyword", Detail: "STOP", Timestamp: timestamppb.New(at)}
	}
	for _, c := range []struct {
		p    *wadispatchv1.DriverPreference
		want string
	}{
		{pref(wadispatchv1.DriverPreference_CHOICE_STOP, base.Add(2*time.Second)), "preference_recorded"},
		{pref(wadispatchv1.DriverPreference_CHOICE_RESUME, base.Add(time.Second)), "preference_stale"},
		{pref(wadispatchv1.DriverPreference_CHOICE_STOP, base.Add(2*time.Second)), "preference_stale"},
	} {
		if v := e.handle(t, c.p); !v.Ack || v.Reason != c.want {
			t.Errorf("%v at %v: %+v, want %s", c.p.GetChoice(), c.p.GetTimestamp().AsTime(), v, c.want)
		}
	}
	for _, lease := range []string{"l1", "l2"} {
		if r := e.driverRecord(t, lease, driver); !r.GetOptedOut() || r.GetOptOutSource() != "keyword" || !r.GetPreferenceAt().AsTime().Equal(base.Add(2*time.Second)) {
			t.Errorf("%s: %v", lease, r)
		}
	}
	if v := e.handle(t, pref(wadispatchv1.DriverPreference_CHOICE_RESUME, base.Add(3*time.Second))); v.Reason != "preference_recorded" {
		t.Fatalf("resume: %+v", v)
	}
	if r := e.driverRecord(t, "l1", driver); r.GetOptedOut() {
		t.Errorf("after START: %v", r)
	}
	// WhatsApp's whole seconds cannot order a STOP written in the second of
	// the START: it is a message of its own, so it wins; its redelivery
	// changes nothing.
	sameSecond := pref(wadispatchv1.DriverPreference_CHOICE_STOP, base.Add(3*time.Second))
	sameSecond.WhatsappMessageId = "wamid.stop-again"
	for _, want := range []string{"preference_recorded", "preference_stale"} {
		if v := e.handle(t, sameSecond); v.Reason != want {
			t.Errorf("a STOP of the START's second: %+v, want %s", v, want)
		}
	}
	if r := e.driverRecord(t, "l1", driver); !r.GetOptedOut() {
		t.Errorf("after a STOP of the START's second: %v", r)
	}

	// WhatsApp refusing a marketing template (131050) stops them too.
	task := e.newMessage(t, "m1")
	r := failed(task, e.claim(t, task, 0).GetClaimId())
	r.Error = &wadispatchv1.WhatsAppError{Code: 131050, Message: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.", Reason: "marketing_opt_out"}
	e.record(t, r)
	if rec := e.driverRecord(t, "l1", driver); !rec.GetOptedOut() || rec.GetOptOutSource() != "whatsapp_131050" {
		t.Errorf("after 131050: %v", rec)
	}
}

// Three messages WhatsApp cannot deliver (131026) mark the driver
// unreachable, a repeat counts once, and the driver writing clears it.
func TestDriverUnreachableAfterRepeatedUndeliverable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for i := range 3 {
		task := e.newMessage(t, fmt.Sprintf("m%d", i))
		r := failed(task, e.claim(t, task, 0).GetClaimId())
		r.Error = &wadispatchv1.WhatsAppError{Code: 131026, Message: "Message undeliverable", Reason: "undeliverable"}
		e.record(t, r)
		e.record(t, r) // redelivered: the same message counts once
		if got := e.driverRecord(t, "l1", driver); got.GetUndeliverable() != int32(i+1) || got.GetUnreachable() != (i == 2) {
			t.Fatalf("after %d: %v", i+1, got)
		}
	}
	if v := e.handle(t, inboundMsg("wamid.IN1", driver, "", time.Now())); !v.Ack {
		t.Fatalf("reply: %+v", v)
	}
	if got := e.driverRecord(t, "l1", driver); got.GetUnreachable() || got.GetUndeliverable() != 0 {
		t.Errorf("after the driver wrote: %v", got)
	}
}

// A user_changed_number system message links the numbers' records, keeps
// the BSUID, and a reply from the new number lands in the old number's
// enquiry.
func TestDriverChangedNumber(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	const moved = "+447911000042"
	sys := inboundMsg("wamid.SYS", driver, "", time.Now())
	sys.Type, sys.NewNumber, sys.UserId = "system", moved, "GB.bsuid-1"
	if v := e.handle(t, sys); !v.Ack {
		t.Fatalf("system message: %+v", v)
	}
	if r := e.driverRecord(t, "l1", driver); r.GetChangedTo() != moved {
		t.Errorf("old number's record %v", r)
	}
	if r := e.driverRecord(t, "l1", moved); r.GetChangedFrom() != driver {
		t.Errorf("new number's record %v", r)
	}
	if d := doc(t, e.anc, "whatsapp/"+driver); d["bsuid"] != "GB.bsuid-1" || d["changedTo"] != moved {
		t.Errorf("ancillary driver document %v", d)
	}
	if v := e.handle(t, inboundMsg("wamid.NEW", moved, "", time.Now())); v.Reason != "inbound_recorded" {
		t.Fatalf("reply from the new number: %+v", v)
	}
	if doc(t, e.db, replyPath("e1", "wamid.NEW")) == nil {
		t.Error("the new number's reply is not in the driver's enquiry")
	}
	if doc(t, e.anc, dispatch.AncillaryPath(moved, "e1")) == nil {
		t.Error("the enquiry record was not moved to the new number")
	}
}
