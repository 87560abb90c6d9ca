package app_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/firestoretest"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

const (
	decSend     = wadispatchv1.ClaimSendResponse_DECISION_SEND
	decDone     = wadispatchv1.ClaimSendResponse_DECISION_DONE
	decInFlight = wadispatchv1.ClaimSendResponse_DECISION_IN_FLIGHT
	decUnknown  = wadispatchv1.ClaimSendResponse_DECISION_UNKNOWN
)

func TestConcurrentClaimsHaveOneWinner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	const n = 50
	decisions := make([]*wadispatchv1.ClaimSendResponse, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := e.rec.ClaimSend(context.Background(), &wadispatchv1.ClaimSendRequest{Task: task, Claimant: "sender-" + string(rune('a'+i%26))})
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
				return
			}
			decisions[i] = resp
		})
	}
	wg.Wait()
	var winners []string
	for _, d := range decisions {
		switch d.GetDecision() {
		case decSend:
			winners = append(winners, d.GetClaimId())
		case decInFlight:
			if d.GetLeaseExpiresAt() == nil {
				t.Error("IN_FLIGHT without lease_expires_at")
			}
		default:
			t.Errorf("decision %v", d.GetDecision())
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d claims got SEND, want exactly 1", len(winners))
	}
	st := doc(t, e.db, messagePath("m1")+"/dispatch/state")
	if st["claimId"] != winners[0] || st["status"] != "SENDING" {
		t.Errorf("state %v, winner %s", st, winners[0])
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENDING" || m["message"] != "Your load is ready" {
		t.Errorf("message document %v", m)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_claims_total", map[string]string{"decision": "send"}); got != 1 {
		t.Errorf("send claims metric %v", got)
	}
}

func TestSameResultRecordedFiveTimesCountsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	r := sent(task, c.GetClaimId(), "wamid.HBgLNDQ3NzAwOTAwMTIz")
	applied := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Redeliveries race each other as they do across recorder replicas.
	for range 5 {
		wg.Go(func() {
			resp, err := e.svc.RecordResult(context.Background(), &wadispatchv1.RecordResultRequest{Result: r})
			if err != nil {
				t.Errorf("RecordResult: %v", err)
				return
			}
			if resp.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT {
				t.Errorf("state %v", resp.GetState())
			}
			mu.Lock()
			defer mu.Unlock()
			if resp.GetApplied() {
				applied++
			}
		})
	}
	wg.Wait()
	if applied != 1 {
		t.Errorf("applied %d times, want 1", applied)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1", got)
	}
	anc := doc(t, e.anc, "whatsapp/"+driver+"/enquiryMessages/e1")
	if ids, _ := anc["arrayOfWhatsappMessageIds"].([]any); len(ids) != 1 || ids[0] != r.GetWhatsappMessageId() {
		t.Errorf("ancillary ids %v", anc["arrayOfWhatsappMessageIds"])
	}
	if anc["leaseId"] != "l1" || anc["enquiryId"] != "e1" || anc["driverPhoneNumber"] != driver || anc["lastMessagePath"] != messagePath("m1") {
		t.Errorf("ancillary record %v", anc)
	}
	if _, ok := anc["lastMessageAt"].(time.Time); !ok {
		t.Errorf("lastMessageAt %v", anc["lastMessageAt"])
	}
	m := doc(t, e.db, messagePath("m1"))
	if m["status"] != "SENT" || m["whatsappMessageId"] != r.GetWhatsappMessageId() {
		t.Errorf("message document %v", m)
	}
	if _, ok := m["sentAt"].(time.Time); !ok {
		t.Errorf("sentAt %v", m["sentAt"])
	}
	idx := doc(t, e.db, "whatsappMessageIndex/"+r.GetWhatsappMessageId())
	if idx["messagePath"] != messagePath("m1") {
		t.Errorf("wamid index %v", idx)
	}
	// A second message of the same user counts on.
	task2 := e.newMessage(t, "m2")
	e.record(t, sent(task2, e.claim(t, task2, 0).GetClaimId(), "wamid.second"))
	if got := e.sentCount(t); got != int64(2) {
		t.Errorf("after a second message: %v", got)
	}
	// A redelivered task meets the recorded outcome.
	again := e.claim(t, task, 0)
	if again.GetDecision() != decDone || again.GetResult().GetWhatsappMessageId() != r.GetWhatsappMessageId() ||
		again.GetResult().GetOutcome() != wadispatchv1.Outcome_OUTCOME_SENT {
		t.Errorf("claim after the result: %v", again)
	}
}

func TestFailureResultRecordsTheWhatsAppError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	resp := e.record(t, failed(task, c.GetClaimId()))
	if !resp.GetApplied() || resp.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED || resp.GetState().GetReason() != "undeliverable" {
		t.Fatalf("response %v", resp)
	}
	m := doc(t, e.db, messagePath("m1"))
	werr, _ := m["whatsappError"].(map[string]any)
	if m["status"] != "FAILED" || m["failureReason"] != "undeliverable" || werr["code"] != int64(131026) ||
		werr["message"] != "Message undeliverable" || werr["details"] != "Unable to deliver message" {
		t.Errorf("message document %v", m)
	}
	if metrics := doc(t, e.db, "leasecompany/l1/performanceMetrics/u1"); metrics != nil {
		t.Errorf("a failure was counted: %v", metrics)
	}
	if anc := doc(t, e.anc, "whatsapp/"+driver+"/enquiryMessages/e1"); anc != nil {
		t.Errorf("ancillary record for a failure: %v", anc)
	}
	again := e.claim(t, task, 0)
	if again.GetDecision() != decDone || again.GetResult().GetError().GetCode() != 131026 {
		t.Errorf("claim after failure: %v", again)
	}
	// A late SENT for the same claim does not undo the recorded failure.
	if late := e.record(t, sent(task, c.GetClaimId(), "wamid.late")); late.GetApplied() {
		t.Errorf("SENT applied over FAILED: %v", late)
	}
}

func TestStatusNeverMovesBackward(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	r := sent(task, e.claim(t, task, 0).GetClaimId(), "wamid.A")
	e.record(t, r)
	apply := func(s wadispatchv1.MessageStatus) *wadispatchv1.ApplyStatusResponse {
		t.Helper()
		resp, err := e.svc.ApplyStatus(context.Background(), &wadispatchv1.ApplyStatusRequest{Event: &wadispatchv1.StatusEvent{
			WhatsappMessageId: "wamid.A", Status: s, Timestamp: timestamppb.Now(), RecipientId: "447700900123",
			Errors: []*wadispatchv1.WhatsAppError{{Code: 131049, Message: "ecosystem"}},
		}})
		if err != nil {
			t.Fatalf("ApplyStatus %v: %v", s, err)
		}
		return resp
	}
	steps := []struct {
		status  wadispatchv1.MessageStatus
		applied bool
		want    string
	}{
		{wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, true, "DELIVERED"},
		{wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT, false, "DELIVERED"},
		{wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED, false, "DELIVERED"},
		{wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, true, "READ"},
		{wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, false, "READ"},
	}
	for _, s := range steps {
		got := apply(s.status)
		if got.GetApplied() != s.applied {
			t.Errorf("%v: applied %v, want %v", s.status, got.GetApplied(), s.applied)
		}
		if st := got.GetState(); st.GetStatus().String() != "MESSAGE_STATUS_"+s.want || st.GetWhatsappMessageId() != "wamid.A" {
			t.Errorf("%v: answered state %v", s.status, st)
		}
		if m := doc(t, e.db, messagePath("m1")); m["status"] != s.want {
			t.Errorf("after %v: status %v, want %s", s.status, m["status"], s.want)
		}
	}
	// The SENT result redelivered after READ.
	if resp := e.record(t, r); resp.GetApplied() || resp.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_READ {
		t.Errorf("redelivered result: %v", resp)
	}
	m := doc(t, e.db, messagePath("m1"))
	if _, ok := m["deliveredAt"].(time.Time); !ok || m["status"] != "READ" {
		t.Errorf("message document %v", m)
	}
	if _, ok := m["readAt"].(time.Time); !ok {
		t.Errorf("readAt %v", m["readAt"])
	}
	// A webhook for a wamid not recorded yet is kept, not retried.
	resp, err := e.svc.ApplyStatus(context.Background(), &wadispatchv1.ApplyStatusRequest{Event: &wadispatchv1.StatusEvent{
		WhatsappMessageId: "wamid.unrecorded", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED}})
	if err != nil || !resp.GetKept() || resp.GetApplied() {
		t.Errorf("unindexed wamid: %v, %v; want kept", resp, err)
	}
}

func TestFailedStatusAfterSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.sentMessage(t, "m1", "wamid.A")
	resp, err := e.svc.ApplyStatus(context.Background(), &wadispatchv1.ApplyStatusRequest{Event: &wadispatchv1.StatusEvent{
		WhatsappMessageId: "wamid.A", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED,
		Errors: []*wadispatchv1.WhatsAppError{{Code: 131047, Message: "Re-engagement message", Reason: "outside_window"}},
	}})
	if err != nil || !resp.GetApplied() {
		t.Fatalf("%v %v", resp, err)
	}
	m := doc(t, e.db, messagePath("m1"))
	werr, _ := m["whatsappError"].(map[string]any)
	if m["status"] != "FAILED" || m["failureReason"] != "outside_window" || werr["code"] != int64(131047) {
		t.Errorf("message document %v", m)
	}
	// The message was sent and is counted, whatever happened after.
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("counter %v", got)
	}
}

func TestAncillaryWriteRetriedUntilItLands(t *testing.T) {
	t.Parallel()
	var px *proxy
	e := newEnv(t, envOptions{
		cfg: app.Config{AncillaryAttemptTimeout: 300 * time.Millisecond},
		ancillary: func(fs *firestoretest.Emulator) []option.ClientOption {
			px = startProxy(t, fs.Addr)
			return px.clientOptions()
		},
	})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	px.down()

	done := make(chan error, 1)
	go func() {
		_, err := e.svc.RecordResult(context.Background(), &wadispatchv1.RecordResultRequest{Result: sent(task, c.GetClaimId(), "wamid.A")})
		done <- err
	}()
	// The default database has the outcome while the ancillary one is out...
	deadline := time.Now().Add(10 * time.Second)
	for doc(t, e.db, messagePath("m1"))["status"] != "SENT" {
		if time.Now().After(deadline) {
			t.Fatal("outcome never committed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ...but the result is not recorded until both hold it.
	select {
	case err := <-done:
		t.Fatalf("RecordResult returned during the outage: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	// The first try is counted when its 300 ms timeout ends it, which a busy
	// machine can delay past the wait above.
	deadline = time.Now().Add(10 * time.Second)
	for metricValue(t, e.reg, "wadispatch_recorder_ancillary_write_retries_total", nil) < 1 {
		if time.Now().After(deadline) {
			t.Error("no ancillary retry counted during the outage")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	px.up(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RecordResult after the outage: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RecordResult did not finish after the ancillary database came back")
	}
	anc := doc(t, e.anc, "whatsapp/"+driver+"/enquiryMessages/e1")
	if ids, _ := anc["arrayOfWhatsappMessageIds"].([]any); len(ids) != 1 || ids[0] != "wamid.A" {
		t.Errorf("ancillary record %v", anc)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("counter %v", got)
	}
}

func TestRedeliveredResultRepairsTheAncillaryRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	r := sent(task, e.claim(t, task, 0).GetClaimId(), "wamid.A")
	e.record(t, r)
	// As if the recorder had died between the two databases' writes.
	if _, err := e.anc.Doc("whatsapp/" + driver + "/enquiryMessages/e1").Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp := e.record(t, r); resp.GetApplied() {
		t.Errorf("applied twice")
	}
	if ids, _ := doc(t, e.anc, "whatsapp/"+driver+"/enquiryMessages/e1")["arrayOfWhatsappMessageIds"].([]any); len(ids) != 1 {
		t.Errorf("ancillary ids %v", ids)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("counter %v", got)
	}
}

// Operators see the longest-standing UNKNOWN messages first, not the
// documents' name order.
func TestListUnknownOldestFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, id := range []string{"m2", "m1"} {
		task := e.newMessage(t, id)
		e.claim(t, task, 20*time.Millisecond)
		time.Sleep(40 * time.Millisecond)
		if c := e.claim(t, task, 0); c.GetDecision() != decUnknown {
			t.Fatalf("%s: claim after expiry: %v", id, c)
		}
	}
	list, err := e.rec.ListUnknown(context.Background(), &wadispatchv1.ListUnknownRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list.GetMessages() {
		got = append(got, m.GetMessageDocId())
	}
	if want := []string{messagePath("m2"), messagePath("m1")}; !slices.Equal(got, want) {
		t.Errorf("ListUnknown %v, want %v", got, want)
	}
	one, err := e.rec.ListUnknown(context.Background(), &wadispatchv1.ListUnknownRequest{PageSize: 1})
	if err != nil || len(one.GetMessages()) != 1 || one.GetMessages()[0].GetMessageDocId() != messagePath("m2") {
		t.Errorf("ListUnknown page_size 1: %v, %v", one, err)
	}
}

// On a project whose indexes were never created, operators are told which
// index is missing, not that the service is unavailable.
func TestListsNameAMissingIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{undeployedIndexes: true})
	e.fs.SkipOnGoogle(t, "it serves queries no index serves")
	_, err := e.rec.ListUnknown(context.Background(), &wadispatchv1.ListUnknownRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "requires an index") ||
		!strings.Contains(err.Error(), "status") || !strings.Contains(err.Error(), "updatedAt") {
		t.Errorf("ListUnknown without its index: %v, want FAILED_PRECONDITION naming status and updatedAt", err)
	}
	_, err = e.rec.ListEnquiryMessages(context.Background(), &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: "+447911123456", EnquiryId: "e1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ListEnquiryMessages without its index: %v, want FAILED_PRECONDITION", err)
	}
}

func TestExpiredClaimBecomesUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	first := e.claim(t, task, 50*time.Millisecond)
	if first.GetDecision() != decSend {
		t.Fatalf("first claim %v", first)
	}
	time.Sleep(100 * time.Millisecond)
	for range 2 {
		if c := e.claim(t, task, 0); c.GetDecision() != decUnknown || c.GetReason() == "" {
			t.Fatalf("claim after expiry: %v", c)
		}
	}
	m := doc(t, e.db, messagePath("m1"))
	if m["status"] != "UNKNOWN" || m["statusReason"] == nil {
		t.Errorf("message document %v", m)
	}
	list, err := e.rec.ListUnknown(context.Background(), &wadispatchv1.ListUnknownRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetMessages()) != 1 || list.GetMessages()[0].GetMessageDocId() != messagePath("m1") {
		t.Errorf("ListUnknown %v", list)
	}
	// The dead sender's result arrives after all: it resolves the message.
	resp := e.record(t, sent(task, first.GetClaimId(), "wamid.late"))
	if !resp.GetApplied() || resp.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT {
		t.Errorf("late result %v", resp)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENT" || m["statusReason"] != nil {
		t.Errorf("message document %v", m)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("counter %v", got)
	}
}

func TestExpiredClaimWithPolicyResendIsTakenOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: app.Config{ExpiredClaimPolicy: app.PolicyResend}})
	task := e.newMessage(t, "m1")
	first := e.claim(t, task, time.Second)
	if c := e.claim(t, task, 0); c.GetDecision() != decInFlight {
		t.Fatalf("claim while the first is live: %v", c)
	}
	time.Sleep(time.Until(first.GetLeaseExpiresAt().AsTime()) + 50*time.Millisecond)
	second := e.claim(t, task, 0)
	if second.GetDecision() != decSend || second.GetClaimId() == first.GetClaimId() {
		t.Fatalf("claim after expiry: %v (first %s)", second, first.GetClaimId())
	}
	if st := doc(t, e.db, messagePath("m1")+"/dispatch/state"); st["claimId"] != second.GetClaimId() || st["claims"] != int64(2) {
		t.Errorf("state %v", st)
	}
	// The first sender was not dead after all: both sends reached the driver.
	if r := e.record(t, sent(task, first.GetClaimId(), "wamid.first")); !r.GetApplied() {
		t.Errorf("first result not applied: %v", r)
	}
	if r := e.record(t, sent(task, second.GetClaimId(), "wamid.second")); r.GetApplied() || r.GetState().GetWhatsappMessageId() != "wamid.first" {
		t.Errorf("second result: %v", r)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("counter %v: one message, counted once", got)
	}
	ids, _ := doc(t, e.anc, "whatsapp/"+driver+"/enquiryMessages/e1")["arrayOfWhatsappMessageIds"].([]any)
	if len(ids) != 2 {
		t.Errorf("ancillary ids %v, want both sends", ids)
	}
	// Webhooks of the duplicate find their message.
	resp, err := e.svc.ApplyStatus(context.Background(), &wadispatchv1.ApplyStatusRequest{Event: &wadispatchv1.StatusEvent{
		WhatsappMessageId: "wamid.second", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED}})
	if err != nil || !resp.GetApplied() {
		t.Errorf("status of the duplicate: %v %v", resp, err)
	}
}

func TestSweeperMarksExpiredClaimsUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	expiring, live := e.newMessage(t, "m1"), e.newMessage(t, "m2")
	e.claim(t, expiring, 50*time.Millisecond)
	e.claim(t, live, time.Minute)
	done := e.newMessage(t, "m3")
	e.record(t, sent(done, e.claim(t, done, 50*time.Millisecond).GetClaimId(), "wamid.3"))
	time.Sleep(100 * time.Millisecond)
	n, err := e.svc.Sweep(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	for id, want := range map[string]string{"m1": "UNKNOWN", "m2": "SENDING", "m3": "SENT"} {
		if got := doc(t, e.db, messagePath(id))["status"]; got != want {
			t.Errorf("%s: %v, want %s", id, got, want)
		}
	}
	if n, err := e.svc.Sweep(context.Background()); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v", n, err)
	}
	if c := e.claim(t, expiring, 0); c.GetDecision() != decUnknown {
		t.Errorf("claim after the sweep: %v", c)
	}
}

func (e *env) release(task *wadispatchv1.SendTask, claimID string) (*wadispatchv1.ReleaseClaimResponse, error) {
	return e.rec.ReleaseClaim(context.Background(), &wadispatchv1.ReleaseClaimRequest{
		MessageDocId: task.GetMessageDocId(), ClaimId: claimID, Reason: "server_error"})
}

func TestReleasedClaimIsTakenOverAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	first := e.claim(t, task, time.Hour)
	if first.GetDecision() != decSend {
		t.Fatalf("first claim %v", first)
	}
	if _, err := e.release(task, "not-the-claim"); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("release with a wrong claim id: %v, want FailedPrecondition", err)
	}
	if c := e.claim(t, task, 0); c.GetDecision() != decInFlight {
		t.Fatalf("claim after a refused release: %v, want IN_FLIGHT", c)
	}
	resp, err := e.release(task, first.GetClaimId())
	if err != nil || !resp.GetApplied() || !resp.GetState().GetReleased() || resp.GetState().GetReleaseReason() != "server_error" {
		t.Fatalf("release: %v, %v", resp, err)
	}
	if again, err := e.release(task, first.GetClaimId()); err != nil || again.GetApplied() {
		t.Fatalf("second release: %v, %v; want success without a write", again, err)
	}
	second := e.claim(t, task, time.Hour)
	if second.GetDecision() != decSend || second.GetClaimId() == first.GetClaimId() {
		t.Fatalf("claim after release: %v, want SEND with a new claim id", second)
	}
	st := doc(t, e.db, messagePath("m1")+"/dispatch/state")
	if st["released"] != nil || st["claimId"] != second.GetClaimId() || st["claims"] != int64(2) {
		t.Errorf("state after takeover %v", st)
	}
	// The first claim was taken over: it may not release the new one.
	if _, err := e.release(task, first.GetClaimId()); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("release of a superseded claim: %v, want FailedPrecondition", err)
	}
	e.record(t, sent(task, second.GetClaimId(), "wamid.1"))
	if _, err := e.release(task, second.GetClaimId()); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("release after the outcome: %v, want FailedPrecondition", err)
	}
	if got := metricValue(t, e.reg, "wadispatch_recorder_claim_releases_total", map[string]string{"result": "released"}); got != 1 {
		t.Errorf("released counter %v", got)
	}
}

func TestSweeperLeavesReleasedClaimsAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 50*time.Millisecond)
	if _, err := e.release(task, c.GetClaimId()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n, err := e.svc.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want 0", n, err)
	}
	if got := doc(t, e.db, messagePath("m1"))["status"]; got != "SENDING" {
		t.Errorf("message status %v, want SENDING", got)
	}
	// Its task may never come back: an operator can have it sent.
	if _, err := e.rec.Resend(context.Background(), &wadispatchv1.ResendRequest{MessageDocId: messagePath("m1"), RequestedBy: "ops"}); err != nil {
		t.Errorf("resend of a released claim: %v", err)
	}
	if next := e.claim(t, task, 0); next.GetDecision() != decSend {
		t.Errorf("claim of a released claim past its lease: %v, want SEND", next)
	}
}

// A released claim whose task never came back is listed once it is old
// enough, oldest first, and no longer once a claim takes it over.
func TestListStalledReleasedClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	stalled := func(olderThan time.Duration) []string {
		t.Helper()
		resp, err := e.rec.ListStalled(context.Background(), &wadispatchv1.ListStalledRequest{OlderThan: durationpb.New(olderThan)})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range resp.GetMessages() {
			ids = append(ids, m.GetMessageId())
		}
		return ids
	}
	tasks := map[string]*wadispatchv1.SendTask{}
	for _, id := range []string{"m2", "m1"} {
		tasks[id] = e.newMessage(t, id)
		if _, err := e.release(tasks[id], e.claim(t, tasks[id], time.Hour).GetClaimId()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	held := e.newMessage(t, "m3") // claimed, not released: in flight, not stalled
	e.claim(t, held, time.Hour)

	if got := stalled(time.Hour); len(got) != 0 {
		t.Errorf("released less than an hour ago, listed as stalled for an hour: %v", got)
	}
	if got := stalled(0); !slices.Equal(got, []string{"m2", "m1"}) {
		t.Errorf("stalled %v, want [m2 m1] (longest released first)", got)
	}
	if c := e.claim(t, tasks["m2"], time.Hour); c.GetDecision() != decSend {
		t.Fatalf("takeover of m2: %v", c)
	}
	if got := stalled(0); !slices.Equal(got, []string{"m1"}) {
		t.Errorf("stalled after m2's takeover %v, want [m1]", got)
	}
	def, err := e.rec.ListStalled(context.Background(), &wadispatchv1.ListStalledRequest{})
	if err != nil || len(def.GetMessages()) != 0 {
		t.Errorf("default age (10 minutes): %v, %v; want none", def, err)
	}
	if _, err := e.rec.ListStalled(context.Background(), &wadispatchv1.ListStalledRequest{OlderThan: durationpb.New(-time.Second)}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative older_than: %v, want InvalidArgument", err)
	}
}

// The sweeper's count of stalled claims feeds the gauge an alert watches.
func TestCountStalled(t *testing.T) {
	t.Parallel()
	// A second, so that the count just after the release falls within the
	// age also on a busy machine.
	const age = time.Second
	e := newEnv(t, envOptions{cfg: app.Config{StalledAge: age}})
	task := e.newMessage(t, "m1")
	rel, err := e.release(task, e.claim(t, task, time.Hour).GetClaimId())
	if err != nil {
		t.Fatal(err)
	}
	count := func() float64 {
		t.Helper()
		if _, err := e.svc.CountStalled(context.Background()); err != nil {
			t.Fatal(err)
		}
		return metricValue(t, e.reg, "wadispatch_recorder_stalled_claims", nil)
	}
	if n := count(); n != 0 {
		t.Errorf("just released: gauge %v, want 0", n)
	}
	time.Sleep(time.Until(rel.GetState().GetReleasedAt().AsTime().Add(age)) + 50*time.Millisecond)
	if n := count(); n != 1 {
		t.Errorf("released past RECORDER_STALLED_AGE: gauge %v, want 1", n)
	}
	if def, err := e.rec.ListStalled(context.Background(), &wadispatchv1.ListStalledRequest{}); err != nil || len(def.GetMessages()) != 1 {
		t.Errorf("ListStalled with the configured age: %v, %v; want m1", def, err)
	}
	e.claim(t, task, time.Hour) // its task came back after all
	if n := count(); n != 0 {
		t.Errorf("after a takeover: gauge %v, want 0", n)
	}
}

func TestResend(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	e.record(t, failed(task, e.claim(t, task, 0).GetClaimId()))

	ps, err := pubsubemu.NewClient(context.Background(), e.pubsub, project)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	resp, err := e.rec.Resend(context.Background(), &wadispatchv1.ResendRequest{MessageDocId: messagePath("m1"), RequestedBy: "ops@visn"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED {
		t.Errorf("state %v", resp.GetState())
	}
	msg := receiveOne(t, ps, topology.TasksSubscription)
	var got wadispatchv1.SendTask
	if err := proto.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, task) {
		t.Errorf("republished task %v, want %v", &got, task)
	}
	if msg.OrderingKey != sendtask.OrderingKey(driver) || msg.Attributes["messagePath"] != messagePath("m1") || msg.Attributes["schema"] != "wadispatch.v1.SendTask" {
		t.Errorf("message key %q attributes %v", msg.OrderingKey, msg.Attributes)
	}
	// The republished task goes through the same claim.
	c := e.claim(t, &got, 0)
	if c.GetDecision() != decSend {
		t.Fatalf("claim of the resent task: %v", c)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENDING" || m["whatsappError"] != nil {
		t.Errorf("message document %v", m)
	}
	e.record(t, sent(&got, c.GetClaimId(), "wamid.resent"))
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENT" || m["failureReason"] != nil {
		t.Errorf("message document %v", m)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("counter %v", got)
	}
	// Only UNKNOWN or FAILED messages may be resent.
	_, err = e.rec.Resend(context.Background(), &wadispatchv1.ResendRequest{MessageDocId: messagePath("m1")})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("resend of a SENT message: %v", err)
	}
	_, err = e.rec.Resend(context.Background(), &wadispatchv1.ResendRequest{MessageDocId: messagePath("nope")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("resend of an unknown message: %v", err)
	}
}

func receiveOne(t testing.TB, ps *pubsub.Client, sub string) *pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got *pubsub.Message
	err := ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if got == nil {
			got = m
			cancel()
		}
	})
	if err != nil || got == nil {
		t.Fatalf("receive from %s: %v (got %v)", sub, err, got)
	}
	return got
}

func TestListEnquiryMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, id := range []string{"m1", "m2"} {
		task := e.newMessage(t, id)
		e.record(t, sent(task, e.claim(t, task, 0).GetClaimId(), "wamid."+id))
	}
	task := e.newMessage(t, "m3")
	e.record(t, failed(task, e.claim(t, task, 0).GetClaimId()))
	resp, err := e.rec.ListEnquiryMessages(context.Background(), &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: driver, EnquiryId: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	ids := resp.GetWhatsappMessageIds()
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"wamid.m1", "wamid.m2"}) {
		t.Errorf("ids %v", ids)
	}
	if len(resp.GetMessages()) != 3 {
		t.Errorf("messages %v", resp.GetMessages())
	}
	other, err := e.rec.ListEnquiryMessages(context.Background(), &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: "+447700900999", EnquiryId: "e1"})
	if err != nil || len(other.GetMessages()) != 0 || len(other.GetWhatsappMessageIds()) != 0 {
		t.Errorf("another driver: %v %v", other, err)
	}
}

func TestGetMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	e.record(t, sent(task, c.GetClaimId(), "wamid.A"))
	resp, err := e.rec.GetMessage(context.Background(), &wadispatchv1.GetMessageRequest{MessageDocId: messagePath("m1")})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.GetState()
	// The claim id is all ReleaseClaim needs: only its holder knows it.
	if st.GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT || st.GetWhatsappMessageId() != "wamid.A" || st.GetClaimId() != "" ||
		st.GetDriverMobileNumber() != driver || st.GetCreatedBy() != "u1" || st.GetSentAt() == nil || st.GetClaimedAt() == nil {
		t.Errorf("state %v", st)
	}
	_, err = e.rec.GetMessage(context.Background(), &wadispatchv1.GetMessageRequest{MessageDocId: messagePath("none")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("missing: %v", err)
	}
}

func TestClaimOfDeletedMessageIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	if _, err := e.db.Doc(messagePath("m1")).Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := e.rec.ClaimSend(context.Background(), &wadispatchv1.ClaimSendRequest{Task: task})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("claim of a deleted message: %v, want NotFound", err)
	}
	if st := doc(t, e.db, messagePath("m1")+"/dispatch/state"); st != nil {
		t.Errorf("state written: %v", st)
	}
}

func TestMalformedRequestsAreInvalidArgument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	good := e.newMessage(t, "m1")
	badPath := proto.Clone(good).(*wadispatchv1.SendTask)
	badPath.MessageDocId = "leasecompany/l1/other/m1"
	noDriver := proto.Clone(good).(*wadispatchv1.SendTask)
	noDriver.DriverMobileNumber = ""
	calls := map[string]func() error{
		"claim without task": func() error { _, err := e.rec.ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{}); return err },
		"claim bad path": func() error {
			_, err := e.rec.ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{Task: badPath})
			return err
		},
		"claim without phone": func() error {
			_, err := e.rec.ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{Task: noDriver})
			return err
		},
		"claim negative lease": func() error {
			_, err := e.rec.ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{Task: good, Lease: durationpbNeg()})
			return err
		},
		"record without result": func() error { _, err := e.svc.RecordResult(ctx, &wadispatchv1.RecordResultRequest{}); return err },
		"record sent without wamid": func() error {
			_, err := e.svc.RecordResult(ctx, &wadispatchv1.RecordResultRequest{Result: sent(good, "c", "")})
			return err
		},
		"status without wamid": func() error {
			_, err := e.svc.ApplyStatus(ctx, &wadispatchv1.ApplyStatusRequest{Event: &wadispatchv1.StatusEvent{Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_READ}})
			return err
		},
		"status UNKNOWN": func() error {
			_, err := e.svc.ApplyStatus(ctx, &wadispatchv1.ApplyStatusRequest{Event: &wadispatchv1.StatusEvent{WhatsappMessageId: "w", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_UNKNOWN}})
			return err
		},
		"get bad path": func() error {
			_, err := e.rec.GetMessage(ctx, &wadispatchv1.GetMessageRequest{MessageDocId: "x"})
			return err
		},
		"list without driver": func() error {
			_, err := e.rec.ListEnquiryMessages(ctx, &wadispatchv1.ListEnquiryMessagesRequest{EnquiryId: "e1"})
			return err
		},
		"list unknown page_size": func() error {
			_, err := e.rec.ListUnknown(ctx, &wadispatchv1.ListUnknownRequest{PageSize: -1})
			return err
		},
		"resend bad path": func() error { _, err := e.rec.Resend(ctx, &wadispatchv1.ResendRequest{MessageDocId: ""}); return err },
	}
	for name, call := range calls {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if st := doc(t, e.db, messagePath("m1")+"/dispatch/state"); st != nil {
		t.Errorf("a malformed request wrote state: %v", st)
	}
}

func durationpbNeg() *durationpb.Duration { return durationpb.New(-time.Second) }

func TestMetricsContentionNeverReachesTheCaller(t *testing.T) {
	t.Parallel()
	c := &contention{every: 2}
	e := newEnv(t, envOptions{defaultDB: func(fs *firestoretest.Emulator) []option.ClientOption {
		return append(fs.ClientOptions(), c.interceptors()...)
	}})
	const n = 20
	results := make([]*wadispatchv1.SendResult, n)
	for i := range n {
		task := e.newMessage(t, fmt.Sprint("m", i))
		results[i] = sent(task, e.claim(t, task, 0).GetClaimId(), fmt.Sprint("wamid.", i))
	}
	var wg sync.WaitGroup
	for _, r := range results {
		wg.Go(func() {
			if _, err := e.svc.RecordResult(context.Background(), &wadispatchv1.RecordResultRequest{Result: r}); err != nil {
				t.Errorf("RecordResult: %v", err)
			}
		})
	}
	wg.Wait()
	if c.fired.Load() == 0 {
		t.Fatal("no commit was aborted: the test tests nothing")
	}
	// Before the fold, whose transaction the client library retries itself.
	if got := metricValue(t, e.reg, "wadispatch_recorder_firestore_commit_retries_total", map[string]string{"reason": "aborted"}); got != float64(c.fired.Load()) {
		t.Errorf("aborted retries metric %v, aborts %d", got, c.fired.Load())
	}
	if got := e.sentCount(t); got != int64(n) {
		t.Errorf("counter %v, want %d", got, n)
	}
}

// A sender may ask for a shorter lease than the recorder's, never a longer
// one: a claim held for hours would hide a dead sender's send.
func TestRequestedLeaseIsCappedByTheRecorder(t *testing.T) {
	e := newEnv(t, envOptions{cfg: app.Config{ClaimLease: time.Minute}})
	for id, asked := range map[string]time.Duration{"m1": 10 * time.Hour, "m2": 10 * time.Second} {
		task := e.newMessage(t, id)
		before := time.Now()
		c := e.claim(t, task, asked)
		got := c.GetLeaseExpiresAt().AsTime().Sub(before)
		if want := min(asked, time.Minute); got > want+5*time.Second || got < want-5*time.Second {
			t.Errorf("asked for %s: lease of %s, want about %s", asked, got.Round(time.Second), want)
		}
	}
}

// A resend is recorded under the caller the credential names, whatever the
// request says.
func TestResendIsRecordedUnderTheCaller(t *testing.T) {
	e := newEnv(t, envOptions{})
	task := e.newMessage(t, "m1")
	e.record(t, failed(task, e.claim(t, task, 0).GetClaimId()))
	ctx := auth.WithIdentity(context.Background(), auth.Identity{Email: "operator@visn.example"})
	if _, err := e.svc.Resend(ctx, &wadispatchv1.ResendRequest{MessageDocId: messagePath("m1"), RequestedBy: "somebody-else"}); err != nil {
		t.Fatal(err)
	}
	if got := doc(t, e.db, messagePath("m1")+"/dispatch/state")["resendRequestedBy"]; got != "operator@visn.example" {
		t.Errorf("resendRequestedBy %v, want the caller's name", got)
	}
}

// A result carrying the state version its first claim was answered with
// is recorded with one commit and no read of the default database, and
// writes what a read would have: outcome, lease cleared, the claim's task
// kept, counted once. A replay of it, and a result whose state changed
// since its claim (a status kept early, a release and a takeover), fail
// that commit's precondition and are read and decided as before.
func TestResultOfAFirstClaimIsRecordedWithoutARead(t *testing.T) {
	t.Parallel()
	counter := &rpcCounter{calls: map[string]int{}}
	e := newEnv(t, envOptions{defaultDB: func(fs *firestoretest.Emulator) []option.ClientOption {
		return append(fs.ClientOptions(), counter.interceptors()...)
	}})
	task := e.newMessage(t, "m1")
	c := e.claim(t, task, 0)
	if c.GetStateVersion() == nil {
		t.Fatalf("first claim answered no state version: %v", c)
	}
	counter.reset()
	r := sentUnder(task, c, "wamid.1")
	if got := e.record(t, r); !got.GetApplied() {
		t.Fatalf("result %v", got)
	}
	if calls, _ := counter.snapshot(); calls["BatchGetDocuments"] != 0 || calls["Commit"] != 1 {
		t.Errorf("default database RPCs %v, want one Commit", calls)
	}
	st := doc(t, e.db, messagePath("m1")+"/dispatch/state")
	if st["outcome"] != "SENT" || st["whatsappMessageId"] != "wamid.1" || st["leaseExpiresAt"] != nil || st["task"] == nil || st["claimant"] != "test" {
		t.Errorf("state %v", st)
	}
	if m := doc(t, e.db, messagePath("m1")); m["status"] != "SENT" || m["whatsappMessageId"] != "wamid.1" {
		t.Errorf("message document %v", m)
	}
	if again := e.record(t, r); again.GetApplied() {
		t.Errorf("replay applied: %v", again)
	}
	if got := e.sentCount(t); got != int64(1) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 1", got)
	}

	task2 := e.newMessage(t, "m2")
	c2 := e.claim(t, task2, 0)
	at := time.Now().Truncate(time.Second)
	e.apply(t, callbackStatus(t, task2, c2.GetClaimId(), "wamid.2", wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, at))
	if got := e.record(t, sentUnder(task2, c2, "wamid.2")); got.GetState().GetStatus() != wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED {
		t.Errorf("result after an early status: %v", got)
	}

	task3 := e.newMessage(t, "m3")
	c3 := e.claim(t, task3, 0)
	if _, err := e.rec.ReleaseClaim(context.Background(), &wadispatchv1.ReleaseClaimRequest{MessageDocId: task3.GetMessageDocId(), ClaimId: c3.GetClaimId(), Reason: "server_error"}); err != nil {
		t.Fatal(err)
	}
	takeover := e.claim(t, task3, 0)
	if takeover.GetDecision() != decSend || takeover.GetStateVersion() != nil {
		t.Fatalf("takeover %v: want SEND without a state version", takeover)
	}
	// The first claim's failure, carrying its version, is superseded.
	stale := failed(task3, c3.GetClaimId())
	stale.ClaimStateVersion = c3.GetStateVersion()
	if got := e.record(t, stale); got.GetApplied() {
		t.Errorf("superseded claim's failure applied: %v", got)
	}
	if got := e.record(t, sentUnder(task3, takeover, "wamid.3")); !got.GetApplied() || got.GetState().GetClaimId() != takeover.GetClaimId() {
		t.Errorf("takeover's result %v", got)
	}
	if got := e.sentCount(t); got != int64(3) {
		t.Errorf("numberOfWhatsappMessagesSent = %v, want 3", got)
	}
}
