package app

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestDecideClaim(t *testing.T) {
	live := t0.Add(time.Minute)
	expired := t0.Add(-time.Second)
	cases := []struct {
		name   string
		st     *State
		policy ExpiredClaimPolicy
		want   claimAction
	}{
		{"no state", nil, PolicyUnknown, claimCreate},
		{"live claim", &State{Status: "SENDING", LeaseExpiresAt: live}, PolicyUnknown, claimInFlight},
		{"live claim, policy resend", &State{Status: "SENDING", LeaseExpiresAt: live}, PolicyResend, claimInFlight},
		{"lease ends now", &State{Status: "SENDING", LeaseExpiresAt: t0}, PolicyUnknown, claimMarkUnknown},
		{"expired claim", &State{Status: "SENDING", LeaseExpiresAt: expired}, PolicyUnknown, claimMarkUnknown},
		{"expired claim, policy resend", &State{Status: "SENDING", LeaseExpiresAt: expired}, PolicyResend, claimTakeover},
		{"unknown", &State{Status: "UNKNOWN"}, PolicyUnknown, claimUnknown},
		{"unknown, policy resend", &State{Status: "UNKNOWN"}, PolicyResend, claimTakeover},
		{"sent", &State{Status: "SENT", Outcome: "SENT"}, PolicyResend, claimDone},
		{"delivered", &State{Status: "DELIVERED", Outcome: "SENT"}, PolicyUnknown, claimDone},
		{"failed", &State{Status: "FAILED", Outcome: "FAILED"}, PolicyUnknown, claimDone},
		{"failed, resend requested", &State{Status: "FAILED", Outcome: "FAILED", ResendRequested: true}, PolicyUnknown, claimTakeover},
		{"unknown, resend requested", &State{Status: "UNKNOWN", ResendRequested: true}, PolicyUnknown, claimTakeover},
		// A late result resolved the message after the operator asked.
		{"sent after resend requested", &State{Status: "SENT", Outcome: "SENT", ResendRequested: true}, PolicyUnknown, claimDone},
		// Released: nothing was in flight, so neither the lease nor the
		// policy matters.
		{"released, lease gone", &State{Status: "SENDING", Released: true}, PolicyUnknown, claimTakeover},
		{"released, lease live", &State{Status: "SENDING", Released: true, LeaseExpiresAt: live}, PolicyUnknown, claimTakeover},
		{"released, outcome recorded", &State{Status: "SENT", Outcome: "SENT", Released: true}, PolicyUnknown, claimDone},
	}
	for _, c := range cases {
		got, _ := decideClaim(c.st, t0, c.policy)
		if got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func sentResult() *wadispatchv1.SendResult {
	return &wadispatchv1.SendResult{
		MessageDocId:       "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1",
		DriverMobileNumber: "+447700900123",
		CreatedBy:          "u1",
		ClaimId:            "c1",
		Outcome:            wadispatchv1.Outcome_OUTCOME_SENT,
		WhatsappMessageId:  "wamid.A",
		Attempts:           1,
		CompletedAt:        timestamppb.New(t0.Add(-time.Second)),
	}
}

func failedResult() *wadispatchv1.SendResult {
	r := sentResult()
	r.Outcome, r.WhatsappMessageId = wadispatchv1.Outcome_OUTCOME_FAILED, ""
	r.Error = &wadispatchv1.WhatsAppError{Code: 131026, Message: "Message undeliverable", Reason: "undeliverable"}
	return r
}

func TestValidateResult(t *testing.T) {
	if _, err := validateResult(sentResult()); err != nil {
		t.Fatal(err)
	}
	if _, err := validateResult(failedResult()); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*wadispatchv1.SendResult){
		"bad path":        func(r *wadispatchv1.SendResult) { r.MessageDocId = "leasecompany/l1" },
		"no outcome":      func(r *wadispatchv1.SendResult) { r.Outcome = wadispatchv1.Outcome_OUTCOME_UNSPECIFIED },
		"sent, no wamid":  func(r *wadispatchv1.SendResult) { r.WhatsappMessageId = "" },
		"sent, no driver": func(r *wadispatchv1.SendResult) { r.DriverMobileNumber = "" },
		"driver slash":    func(r *wadispatchv1.SendResult) { r.DriverMobileNumber = "+44/7" },
		"other lease":     func(r *wadispatchv1.SendResult) { r.LeaseId = "l2" },
	} {
		r := sentResult()
		mutate(r)
		if _, err := validateResult(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := validateResult(nil); err == nil {
		t.Error("nil result accepted")
	}
}

func TestDecideRecord(t *testing.T) {
	r := sentResult()
	ref, _ := validateResult(r)

	t.Run("claimed, sent", func(t *testing.T) {
		st := &State{Status: "SENDING", ClaimID: "c1", LeaseExpiresAt: t0.Add(time.Minute)}
		p := decideRecord(st, true, r, ref, "rec", nil, t0)
		if !p.apply || !p.countSent {
			t.Fatalf("plan %+v", p)
		}
		state, message := p.state, p.message
		if state.Status != "SENT" || state.Outcome != "SENT" || state.WhatsappMessageID != "wamid.A" || state.RecordID != "rec" {
			t.Errorf("state %+v", state)
		}
		// A zero time is deleted from the document (adapters/firestore).
		if !state.LeaseExpiresAt.IsZero() {
			t.Error("lease not cleared: the sweeper would find the message")
		}
		if message.Status != "SENT" || message.WhatsappMessageID != "wamid.A" || message.SentAt != t0.Add(-time.Second) {
			t.Errorf("message update %+v", message)
		}
	})
	t.Run("recorded before", func(t *testing.T) {
		for _, st := range []*State{
			{Status: "SENT", Outcome: "SENT"},
			{Status: "READ", Outcome: "SENT"},
			{Status: "FAILED", Outcome: "FAILED"},
		} {
			if p := decideRecord(st, true, r, ref, "rec", nil, t0); p.apply {
				t.Errorf("%+v: applied again", st)
			}
		}
	})
	t.Run("late result resolves UNKNOWN", func(t *testing.T) {
		p := decideRecord(&State{Status: "UNKNOWN", Reason: "expired"}, true, r, ref, "rec", nil, t0)
		if !p.apply || !p.countSent || !p.message.ClearStatusReason || p.message.StatusReason != "" {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("no state: created", func(t *testing.T) {
		p := decideRecord(nil, true, r, ref, "rec", nil, t0)
		// That a create holds no delete is the adapter's (createFields).
		if !p.apply || p.state.MessagePath != ref.Path() || p.state.DriverMobileNumber != "+447700900123" {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("superseded claim", func(t *testing.T) {
		st := &State{Status: "SENDING", ClaimID: "c2"}
		if p := decideRecord(st, true, failedResult(), ref, "rec", nil, t0); p.apply {
			t.Error("the failure of claim c1 decided the send claim c2 holds")
		}
		if p := decideRecord(st, true, r, ref, "rec", nil, t0); !p.apply || !p.countSent {
			t.Error("a SENT of a superseded claim was not recorded: that message went out")
		}
	})
	t.Run("message document gone", func(t *testing.T) {
		p := decideRecord(&State{Status: "SENDING"}, false, r, ref, "rec", nil, t0)
		if !p.apply || p.message != nil {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("failed", func(t *testing.T) {
		p := decideRecord(&State{Status: "SENDING", ClaimID: "c1"}, true, failedResult(), ref, "rec", nil, t0)
		if !p.apply || p.countSent {
			t.Fatalf("plan %+v", p)
		}
		message := p.message
		e := message.Error
		if e == nil || e.Code != 131026 || e.Message != "Message undeliverable" || message.FailureReason != "undeliverable" || message.Status != "FAILED" {
			t.Errorf("message update %+v", message)
		}
	})
}

func TestDecideStatus(t *testing.T) {
	ev := func(s wadispatchv1.MessageStatus) *wadispatchv1.StatusEvent {
		return &wadispatchv1.StatusEvent{WhatsappMessageId: "wamid.A", Status: s, Timestamp: timestamppb.New(t0)}
	}
	delivered, read, failed := wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED
	cases := []struct {
		from  dispatch.Status
		to    wadispatchv1.MessageStatus
		apply bool
	}{
		{dispatch.StatusSent, delivered, true},
		{dispatch.StatusSent, read, true},
		{dispatch.StatusDelivered, read, true},
		{dispatch.StatusRead, delivered, false},
		{dispatch.StatusDelivered, delivered, false},
		{dispatch.StatusDelivered, failed, false},
		{dispatch.StatusSent, failed, true},
		{dispatch.StatusFailed, delivered, true},
		{dispatch.StatusSent, wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, false},
	}
	for _, c := range cases {
		st := &State{Status: string(c.from)}
		if c.from == dispatch.StatusDelivered || c.from == dispatch.StatusRead {
			st.DeliveredAt = t0
		}
		p := decideStatus(st, ev(c.to), t0.Add(time.Second))
		if p.apply != c.apply {
			t.Errorf("%s → %v: apply %v, want %v (%s)", c.from, c.to, p.apply, c.apply, p.reason)
		}
	}
	// Read came before delivered: the delivery time is filled in, the
	// status stays READ.
	p := decideStatus(&State{Status: "READ"}, ev(delivered), t0.Add(time.Second))
	if moves := p.message.Status != ""; !p.apply || moves || p.message.DeliveredAt != t0 || p.state.Status != "READ" {
		t.Errorf("delivered after read: plan %+v", p)
	}
	p = decideStatus(&State{Status: "SENT"}, ev(read), t0.Add(time.Second))
	if p.message.ReadAt != t0 || p.state.ReadAt != t0 || p.message.Status != "READ" {
		t.Errorf("read plan %+v", p)
	}
}

func TestMetricsPath(t *testing.T) {
	p, err := metricsPath(DefaultMetricsDocPath, "l1", "u1")
	if err != nil || p != "leasecompany/l1/performanceMetrics/u1" {
		t.Fatalf("%q %v", p, err)
	}
	for _, c := range [][3]string{
		{DefaultMetricsDocPath, "l1", ""},
		{DefaultMetricsDocPath, "l1", "a/b"},
		{"leasecompany/{leaseId}/performanceMetrics", "l1", "u1"},
		{"users/{userId}", "l1", "u1"},
	} {
		if p, err := metricsPath(c[0], c[1], c[2]); err == nil {
			t.Errorf("%v accepted as %q", c, p)
		}
	}
}

func TestIndexPathKeepsOneSegment(t *testing.T) {
	if got := dispatch.IndexPath("wamid.HBgL/ab%2F=="); got != "whatsappMessageIndex/wamid.HBgL%2Fab%252F==" {
		t.Errorf("indexPath = %s", got)
	}
}

func TestTaskRoundTrip(t *testing.T) {
	task := &wadispatchv1.SendTask{
		LeaseId: "l1", EnquiryId: "e1", MessageDocId: "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1",
		DriverMobileNumber: "+447700900123", Message: "Hello", Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{PhoneNumberId: "123", TokenRef: "lease-l1"},
		Payload:              map[string]string{"name": "Ann"}, Eta: 1764072000, CreatedAt: timestamppb.New(t0),
		TemplateButtonPayloads: []string{"confirm", "later"},
	}
	// A resend republishes the stored task: an interactive one keeps its
	// buttons and list.
	interactive := proto.Clone(task).(*wadispatchv1.SendTask)
	interactive.Type, interactive.TemplateButtonPayloads = wadispatchv1.MessageType_MESSAGE_TYPE_INTERACTIVE, nil
	interactive.Interactive = &wadispatchv1.Interactive{Kind: wadispatchv1.InteractiveKind_INTERACTIVE_KIND_LIST, Header: "h", Footer: "f", ButtonText: "Pick",
		Sections: []*wadispatchv1.InteractiveSection{{Title: "A", Rows: []*wadispatchv1.InteractiveRow{{Id: "r1", Title: "One", Description: "d"}}}}}
	for _, task := range []*wadispatchv1.SendTask{task, interactive} {
		m, err := taskFields(task)
		if err != nil {
			t.Fatal(err)
		}
		back, err := storedTask(m)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(task, back) {
			t.Errorf("round trip: %v != %v", back, task)
		}
	}
	if _, err := storedTask(nil); err == nil {
		t.Error("empty task accepted")
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]ExpiredClaimPolicy{"unknown": PolicyUnknown, "RESEND": PolicyResend} {
		if got, err := ParsePolicy(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if _, err := ParsePolicy("retry"); err == nil {
		t.Error("retry accepted")
	}
}

func TestDecideRelease(t *testing.T) {
	cases := []struct {
		name string
		st   *State
		want releaseAction
	}{
		{"no state", nil, releaseRefuse},
		{"current claim", &State{Status: "SENDING", ClaimID: "c1", LeaseExpiresAt: t0}, releaseApply},
		{"another claim", &State{Status: "SENDING", ClaimID: "c2"}, releaseRefuse},
		{"outcome recorded", &State{Status: "SENT", Outcome: "SENT", ClaimID: "c1"}, releaseRefuse},
		{"marked unknown", &State{Status: "UNKNOWN", ClaimID: "c1"}, releaseRefuse},
		{"released before", &State{Status: "SENDING", ClaimID: "c1", Released: true}, releaseAlready},
		{"released, taken over", &State{Status: "SENDING", ClaimID: "c2", Released: false}, releaseRefuse},
	}
	for _, c := range cases {
		got, why := decideRelease(c.st, "c1")
		if got != c.want {
			t.Errorf("%s: got %v (%s), want %v", c.name, got, why, c.want)
		}
		if got == releaseRefuse && why == "" {
			t.Errorf("%s: refused without a reason", c.name)
		}
	}
}

func TestReleaseFieldsHideTheClaimFromTheSweeper(t *testing.T) {
	claimedBefore := &State{Status: "SENDING", ClaimID: "c1", LeaseExpiresAt: t0.Add(time.Minute)}
	rel := released(claimedBefore, "server_error", t0)
	// Zero values are deleted from the document (adapters/firestore).
	if !rel.LeaseExpiresAt.IsZero() {
		t.Error("lease kept: the sweeper would mark a released claim UNKNOWN")
	}
	if !rel.Released || rel.ReleaseReason != "server_error" {
		t.Errorf("state %+v", rel)
	}
	takeover := claimed(&rel, claim{ID: "c2", Lease: time.Minute}, nil, t0)
	for k, zero := range map[string]bool{"released": !takeover.Released, "releasedAt": takeover.ReleasedAt.IsZero(), "releaseReason": takeover.ReleaseReason == ""} {
		if !zero {
			t.Errorf("takeover keeps %s: the new claim would look released", k)
		}
	}
}

func TestResendable(t *testing.T) {
	for _, c := range []struct {
		st   State
		want bool
	}{
		{State{Status: "UNKNOWN"}, true},
		{State{Status: "FAILED", Outcome: "FAILED"}, true},
		{State{Status: "SENDING", Released: true}, true},
		{State{Status: "SENDING"}, false},
		{State{Status: "SENT", Outcome: "SENT", Released: true}, false},
		{State{Status: "READ", Outcome: "SENT"}, false},
	} {
		if got := resendable(&c.st); got != c.want {
			t.Errorf("resendable(%+v) = %v, want %v", c.st, got, c.want)
		}
	}
}

// A status's pricing prices a message once, whether or not the status
// moves it; a status without one, or one after the first, prices nothing.
func TestDecideStatusPricesOnce(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	at := now.Add(-time.Minute)
	ev := func(s wadispatchv1.MessageStatus, category string) *wadispatchv1.StatusEvent {
		e := &wadispatchv1.StatusEvent{WhatsappMessageId: "w", Status: s, Timestamp: timestamppb.New(at)}
		if category != "" {
			e.Pricing = &wadispatchv1.StatusPricing{PricingModel: "PMP", Category: category, Type: "regular"}
		}
		return e
	}
	sentSt := &State{Status: "SENT", Outcome: "SENT"}
	p := decideStatus(sentSt, ev(wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, "utility"), now)
	want := &Pricing{PricingModel: "PMP", Category: "utility", Type: "regular", FirstSeenAt: at}
	if !p.apply || p.state.Status != "DELIVERED" || !reflect.DeepEqual(p.state.Pricing, want) || !reflect.DeepEqual(p.message.Pricing, want) {
		t.Errorf("delivered with pricing: %+v", p)
	}
	// A repeat of sent moves nothing, but prices.
	if p := decideStatus(sentSt, ev(wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, "utility"), now); !p.apply || p.state.Status != "SENT" || p.state.Pricing == nil || p.message.Status != "" {
		t.Errorf("sent again with pricing: %+v", p)
	}
	priced := &State{Status: "DELIVERED", Outcome: "SENT", Pricing: want}
	if p := decideStatus(priced, ev(wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, "marketing"), now); p.apply {
		t.Errorf("priced message priced again: %+v", p)
	}
	if p := decideStatus(sentSt, ev(wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, ""), now); p.apply {
		t.Errorf("a repeat without pricing applied: %+v", p)
	}
	ref := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}
	if e := costEntry(ref, sentSt, &p.state); e == nil || e.Month != "2026-12" || e.LeaseID != "l1" || e.Pricing.Category != "utility" {
		t.Errorf("cost entry of the first pricing: %+v", e)
	}
	if e := costEntry(ref, priced, priced); e != nil {
		t.Errorf("cost entry of a message priced before: %+v", e)
	}
}
