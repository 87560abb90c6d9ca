package app_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/consume"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// handleRefusal delivers r as ingest publishes it, on the results topic.
func (e *env) handleRefusal(t testing.TB, r *wadispatchv1.Refusal) consume.Verdict {
	t.Helper()
	data, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return e.svc.HandleResult(context.Background(), consume.Message{Data: data, Attributes: map[string]string{
		"schema": string(proto.MessageName(r)), "messagePath": r.GetMessageDocId(),
	}})
}

func refusalOf(id string) *wadispatchv1.Refusal {
	return &wadispatchv1.Refusal{
		MessageDocId: messagePath(id), LeaseId: "l1", EnquiryId: "e1", MessageId: id, CreatedBy: "u1",
		Reason: "invalid_data", Field: "driverMobileNumber", Detail: "not a valid phone number for its region",
		EventId: "ev-" + id, CreatedAt: timestamppb.Now(), RefusedAt: timestamppb.Now(),
	}
}

// A refusal ends the message FAILED with its reason, on the document and
// in the state operators read, once however often it is delivered.
func TestRefusalIsWrittenOnceOnTheDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.newMessage(t, "m1")
	for i, want := range []string{"refusal_recorded", "refusal_duplicate", "refusal_duplicate"} {
		if v := e.handleRefusal(t, refusalOf("m1")); !v.Ack || v.Reason != want {
			t.Fatalf("delivery %d: verdict %+v, want acked %s", i+1, v, want)
		}
	}
	m := doc(t, e.db, messagePath("m1"))
	if m["status"] != "FAILED" || m["failureReason"] != "invalid_data" ||
		m["statusReason"] != "driverMobileNumber: not a valid phone number for its region" || m["failedAt"] == nil || m["statusUpdatedAt"] == nil {
		t.Errorf("message document %v", m)
	}
	if _, ok := m["whatsappError"]; ok {
		t.Errorf("a refused message has a WhatsApp error: %v", m["whatsappError"])
	}
	if m["message"] != "Your load is ready" || m["driverMobileNumber"] != driver {
		t.Errorf("the web app's fields changed: %v", m)
	}
	resp, err := e.rec.GetMessage(context.Background(), &wadispatchv1.GetMessageRequest{MessageDocId: messagePath("m1")})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.GetState()
	if st.GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED || st.GetCreatedBy() != "u1" || st.GetDriverMobileNumber() != "" ||
		st.GetReason() != "refused by ingest: invalid_data: driverMobileNumber: not a valid phone number for its region" {
		t.Errorf("state %v", st)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_refusals_total", map[string]string{"outcome": "recorded"}); got != 1 {
		t.Errorf("refusals recorded = %v", got)
	}
	// Nothing was sent, so there is nothing to resend: the document is
	// what must change.
	_, err = e.rec.Resend(context.Background(), &wadispatchv1.ResendRequest{MessageDocId: messagePath("m1")})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "never sent") {
		t.Errorf("resend of a refused message: %v", err)
	}
}

// A refusal never overwrites a message the pipeline has a state for: a
// claim (or a result) written before it wins, and the claim of a refused
// message republishes its FAILED outcome and sends nothing.
func TestRefusalLeavesAClaimedMessageAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	if v := e.handleRefusal(t, refusalOf("m1")); !v.Ack || v.Reason != "refusal_has_state" {
		t.Fatalf("verdict %+v", v)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENDING" || m["failureReason"] != nil {
		t.Errorf("claimed message document %v", m)
	}
	e.record(t, sent(task, c.GetClaimId(), "wamid.A"))
	if v := e.handleRefusal(t, refusalOf("m1")); v.Reason != "refusal_has_state" {
		t.Fatalf("verdict %+v", v)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENT" || m["failureReason"] != nil {
		t.Errorf("sent message document %v", m)
	}

	refused := e.newMessage(t, "m2")
	if v := e.handleRefusal(t, refusalOf("m2")); v.Reason != "refusal_recorded" {
		t.Fatalf("verdict %+v", v)
	}
	if got := e.claim(t, refused, 0); got.GetDecision() != decDone || got.GetResult().GetOutcome() != wadispatchv1.Outcome_OUTCOME_FAILED {
		t.Errorf("claim of a refused message: %v", got)
	}
	if m := doc(t, e.db, messagePath("m2")); m["status"] != "FAILED" || m["failureReason"] != "invalid_data" {
		t.Errorf("refused message document after a claim %v", m)
	}
}

// A refusal of a document that is gone writes nothing; one that does not
// decode, or names no message, is poison for the dead-letter topic.
func TestRefusalOfNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if v := e.handleRefusal(t, refusalOf("gone")); !v.Ack || v.Reason != "refusal_no_message" {
		t.Fatalf("verdict %+v", v)
	}
	if st := doc(t, e.db, messagePath("gone")+"/dispatch/state"); st != nil {
		t.Errorf("state written for a missing message: %v", st)
	}
	bad := refusalOf("m1")
	bad.MessageDocId = "leasecompany/l1"
	if v := e.handleRefusal(t, bad); !v.Poison || v.Reason != "invalid" {
		t.Errorf("refusal naming no message: %+v", v)
	}
	v := e.svc.HandleResult(context.Background(), consume.Message{Data: []byte("\xff\xff"), Attributes: map[string]string{"schema": "wadispatch.v1.Refusal"}})
	if !v.Poison || v.Reason != "undecodable" {
		t.Errorf("undecodable refusal: %+v", v)
	}
}
