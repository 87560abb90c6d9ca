package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/firestoretest"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/recordertest"
)

const driver = "+447911123401"

// operatorToken is the credential wadispatchctl presents in these tests,
// which recorder(t) sets.
var operatorToken string

func path(id string) string {
	return "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + id
}

// recorder starts a real recorder on the emulators and returns its address,
// with m1 FAILED, m2 SENT, m3 UNKNOWN, m4 SENDING under a released claim
// m5 refused by ingest and m6 FAILED by the sender without calling WhatsApp.
func recorder(t *testing.T) string {
	_, addr := recorderFor(t)
	return addr
}

// recorderFor is recorder, with the recorder itself for tests that play
// the sender.
func recorderFor(t *testing.T) (*recordertest.Recorder, string) {
	ctx := context.Background()
	fs := firestoretest.Start(t, pubsubemu.TestProject, firestoreemu.Options{Indexes: recordertest.DeployedIndexes(t)})
	db, err := firestore.NewClient(ctx, fs.Project, fs.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	anc, err := firestore.NewClientWithDatabase(ctx, fs.Project, "ancillary", fs.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = anc.Close() })
	ps, err := pubsubemu.NewClient(ctx, pubsubemu.StartForTest(t), pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	log := logrus.New()
	log.SetOutput(io.Discard)
	recorder := recordertest.Start(t, db, anc, ps, logrus.NewEntry(log))
	t.Cleanup(recorder.StopPublishing)
	rec, addr := recorder.ClientAs(t, recordertest.SenderIdentity), recorder.Addr
	operatorToken = recorder.Token(t, recordertest.OperatorIdentity)
	for _, id := range []string{"m1", "m2", "m3", "m4", "m6"} {
		if _, err := db.Doc(path(id)).Set(ctx, map[string]any{"message": "hi"}); err != nil {
			t.Fatal(err)
		}
		task := &wadispatchv1.SendTask{LeaseId: "l1", EnquiryId: "e1", MessageId: id, MessageDocId: path(id), DriverMobileNumber: driver, CreatedBy: "u1", Message: "hi"}
		req := &wadispatchv1.ClaimSendRequest{Task: task, Claimant: "sender-0"}
		if id == "m3" {
			req.Lease = durationpb.New(time.Millisecond)
		}
		c, err := rec.ClaimSend(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		r := &wadispatchv1.SendResult{MessageDocId: path(id), DriverMobileNumber: driver, CreatedBy: "u1", ClaimId: c.GetClaimId()}
		switch id {
		case "m1":
			r.Outcome, r.Error = wadispatchv1.Outcome_OUTCOME_FAILED, &wadispatchv1.WhatsAppError{Code: 131026, Message: "Message undeliverable", Reason: "undeliverable"}
		case "m2":
			r.Outcome, r.WhatsappMessageId = wadispatchv1.Outcome_OUTCOME_SENT, "wamid.m2"
		case "m3":
			continue
		case "m6":
			r.Outcome, r.Error = wadispatchv1.Outcome_OUTCOME_FAILED, &wadispatchv1.WhatsAppError{Reason: "token_unavailable", Message: "secret wa-token has no version"}
		case "m4":
			if _, err := rec.ReleaseClaim(ctx, &wadispatchv1.ReleaseClaimRequest{MessageDocId: path(id), ClaimId: c.GetClaimId(), Reason: "server_error"}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := recorder.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// m5 never reached the sender: ingest refused it.
	if _, err := db.Doc(path("m5")).Set(ctx, map[string]any{"message": "hi", "driverMobileNumber": "12345"}); err != nil {
		t.Fatal(err)
	}
	if outcome, err := recorder.Refuse(ctx, &wadispatchv1.Refusal{MessageDocId: path("m5"), CreatedBy: "u1", Reason: "invalid_data",
		Field: "driverMobileNumber", Detail: "not a valid phone number for its region"}); err != nil || outcome != "recorded" {
		t.Fatalf("refusal: %s %v", outcome, err)
	}
	// A stranger writes to lease l1's number: kept unmatched.
	if outcome, err := recorder.Inbound(ctx, &wadispatchv1.InboundMessage{WhatsappMessageId: "wamid.in1", From: "+447911000077", LeaseIds: []string{"l1"},
		Type: "text", Text: "Who is this?", Timestamp: timestamppb.Now()}); err != nil || outcome != "unmatched" {
		t.Fatalf("inbound: %s %v", outcome, err)
	}
	time.Sleep(5 * time.Millisecond)
	if n, err := recorder.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	return recorder, addr
}

func ctl(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut, func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "WADISPATCH_ID_TOKEN" {
			return operatorToken
		}
		return ""
	})
	return code, out.String(), errOut.String()
}

func TestCommands(t *testing.T) {
	addr := recorder(t)

	code, out, errOut := ctl(t, nil, "--addr", addr, "status", path("m1"))
	if code != 0 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "undeliverable") || !strings.Contains(out, "code 131026") {
		t.Errorf("status: %d\n%s%s", code, out, errOut)
	}

	// A refused message says why it was never sent.
	code, out, errOut = ctl(t, nil, "--addr", addr, "status", path("m5"))
	if code != 0 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "refused by ingest: invalid_data: driverMobileNumber: not a valid phone number") {
		t.Errorf("status of a refused message: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ctl(t, nil, "--addr", addr, "resend", path("m5"))
	if code != 1 || !strings.Contains(errOut, "never sent") {
		t.Errorf("resend of a refused message: %d %s", code, errOut)
	}
	code, _, errOut = ctl(t, nil, "--addr", addr, "status", path("m9"))
	if code != 1 || !strings.Contains(errOut, "NotFound") || !strings.Contains(errOut, "from a driver") {
		t.Errorf("status of a message without state: %d %s", code, errOut)
	}

	// The address from the environment, --json after the arguments.
	env := map[string]string{"WADISPATCH_RECORDER_ADDR": addr, "USER": "ops"}
	code, out, errOut = ctl(t, env, "status", path("m2"), "--json")
	var get wadispatchv1.GetMessageResponse
	if code != 0 || protojson.Unmarshal([]byte(out), &get) != nil || get.GetState().GetWhatsappMessageId() != "wamid.m2" {
		t.Errorf("status --json: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = ctl(t, env, "list", driver, "e1")
	if code != 0 || !strings.Contains(out, "1 WhatsApp message id(s)") || !strings.Contains(out, "wamid.m2") ||
		strings.Count(out, path("")) != 5 || !strings.Contains(out, "MESSAGE") {
		t.Errorf("list: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = ctl(t, env, "--json", "unknown")
	var unknown wadispatchv1.ListUnknownResponse
	if code != 0 || protojson.Unmarshal([]byte(out), &unknown) != nil || len(unknown.GetMessages()) != 1 || unknown.GetMessages()[0].GetMessageDocId() != path("m3") {
		t.Errorf("unknown --json: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl(t, env, "unknown")
	if code != 0 || !strings.Contains(out, path("m3")) || !strings.Contains(out, "UNKNOWN") || !strings.Contains(out, "expired") {
		t.Errorf("unknown: %d\n%s", code, out)
	}

	code, out, errOut = ctl(t, env, "stalled", "--older-than", "0s")
	if code != 0 || !strings.Contains(out, path("m4")) || !strings.Contains(out, "SENDING") || strings.Count(out, path("")) != 1 {
		t.Errorf("stalled: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl(t, env, "stalled")
	if code != 0 || !strings.Contains(out, "no messages") {
		t.Errorf("stalled for 10 minutes (the default): %d\n%s", code, out)
	}

	code, out, errOut = ctl(t, env, "unmatched", "l1")
	if code != 0 || !strings.Contains(out, "leasecompany/l1/whatsappUnmatchedReplies/wa-in-") || !strings.Contains(out, "no_enquiry") ||
		!strings.Contains(out, "Who is this?") || !strings.Contains(out, "+447911000077") {
		t.Errorf("unmatched: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl(t, env, "unmatched", "l2")
	if code != 0 || !strings.Contains(out, "no unmatched replies") {
		t.Errorf("unmatched of another lease: %d\n%s", code, out)
	}

	code, out, errOut = ctl(t, env, "resend", path("m3"))
	if code != 0 || !strings.Contains(out, "resend requested") {
		t.Errorf("resend: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ctl(t, env, "resend", path("m2"))
	if code != 1 || !strings.Contains(errOut, "only UNKNOWN or FAILED") || !strings.Contains(errOut, "FailedPrecondition") {
		t.Errorf("resend of a SENT message: %d %s", code, errOut)
	}
	code, _, errOut = ctl(t, env, "status", "leasecompany/l1")
	if code != 1 || !strings.Contains(errOut, "InvalidArgument") {
		t.Errorf("status of a bad path: %d %s", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"status"}, {"list", driver}, {"--nope", "unknown"}} {
		if code, _, errOut := ctl(t, nil, args...); code != 2 || !strings.Contains(errOut, "usage") && !strings.Contains(errOut, "flag provided but not defined") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}

// wadispatchctl calls as the operator its credential names: a sender's
// token is refused, and with no credential at all it says how to get one.
func TestOperatorCredential(t *testing.T) {
	addr := recorder(t)
	env := map[string]string{"WADISPATCH_RECORDER_ADDR": addr, "WADISPATCH_ID_TOKEN": "not a token"}
	if code, _, errOut := ctl(t, env, "unknown"); code != 1 || !strings.Contains(errOut, "Unauthenticated") {
		t.Errorf("a made-up token: %d %s", code, errOut)
	}
	env["WADISPATCH_ID_TOKEN"] = ""
	env["WADISPATCH_ID_TOKEN_FILE"] = filepath.Join(t.TempDir(), "missing.token")
	if code, _, errOut := ctl(t, env, "unknown"); code != 1 || !strings.Contains(errOut, "print-identity-token") {
		t.Errorf("an unreadable token file: %d %s", code, errOut)
	}
}

// A failure that is not WhatsApp's shows as what it is, not as WhatsApp
// error code 0.
func TestFailureNotWhatsApps(t *testing.T) {
	addr := recorder(t)
	code, out, errOut := ctl(t, nil, "--addr", addr, "status", path("m6"))
	if code != 0 || !strings.Contains(out, "failed: token_unavailable: secret wa-token has no version") || strings.Contains(out, "code 0") {
		t.Errorf("status of a sender's failure: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := ctl(t, nil, "--addr", addr, "status", path("m5")); code != 0 || strings.Contains(out, "code 0") {
		t.Errorf("status of a refusal: %d\n%s", code, out)
	}
}

// list takes the driver's number as an operator has it, normalised like
// ingest does, and refuses one that is no number.
func TestListNormalisesNumber(t *testing.T) {
	addr := recorder(t)
	env := map[string]string{"WADISPATCH_RECORDER_ADDR": addr}
	for _, args := range [][]string{{"list", "07911123401", "e1"}, {"list", "+44 7911 123401", "e1"}, {"list", "7911123401", "e1", "--region", "GB"}} {
		// 7911123401 without a trunk prefix is still a GB mobile number.
		code, out, errOut := ctl(t, env, args...)
		if code != 0 || strings.Count(out, path("")) != 5 || !strings.Contains(out, "whatsapp/"+driver+"/enquiryMessages/e1") {
			t.Errorf("%v: %d\n%s%s", args, code, out, errOut)
		}
	}
	// With the region from the environment: a US number is not GB's.
	env["WADISPATCH_DEFAULT_REGION"] = "US"
	if code, out, _ := ctl(t, env, "list", "07911123401", "e1"); code != 2 || out != "" {
		t.Errorf("a GB national number under region US: %d %s", code, out)
	}
	if code, _, errOut := ctl(t, env, "list", "07911123401", "e1", "--region", "UK"); code != 2 || !strings.Contains(errOut, `--region "UK" is not a region`) {
		t.Errorf("an unknown region: %d %s", code, errOut)
	}
	delete(env, "WADISPATCH_DEFAULT_REGION")
	code, out, errOut := ctl(t, env, "list", "not-a-number", "e1")
	if code != 2 || out != "" || !strings.Contains(errOut, `driver number "not-a-number" (default region GB): not a phone number`) {
		t.Errorf("not a number: %d %s%s", code, out, errOut)
	}
}

// An empty list is [] in JSON, the same field a full one fills.
func TestEmptyListsJSON(t *testing.T) {
	addr := recorder(t)
	env := map[string]string{"WADISPATCH_RECORDER_ADDR": addr}
	for _, c := range []struct {
		args   []string
		fields []string
	}{
		{[]string{"stalled", "--json"}, []string{"messages"}},
		{[]string{"stalled", "--json", "--all"}, []string{"messages"}},
		{[]string{"list", "+447911123499", "e1", "--json"}, []string{"messages", "whatsappMessageIds"}},
	} {
		code, out, errOut := ctl(t, env, c.args...)
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
			t.Errorf("%v: %d %v\n%s%s", c.args, code, err, out, errOut)
			continue
		}
		for _, f := range c.fields {
			if l, ok := got[f].([]any); !ok || len(l) != 0 {
				t.Errorf("%v: %s is %#v, want []\n%s", c.args, f, got[f], out)
			}
		}
		if got["nextPageToken"] != "" {
			t.Errorf("%v: nextPageToken is %#v, want \"\" (the last page)\n%s", c.args, got["nextPageToken"], out)
		}
	}
}

// A recorder that does not answer gets a hint naming the address used and
// how to reach the recorder on GKE.
func TestUnreachableHint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	env := map[string]string{"WADISPATCH_ID_TOKEN": "t"}
	code, _, errOut := ctl(t, env, "--addr", addr, "--timeout", "2s", "unknown")
	if code != 1 || !strings.Contains(errOut, "did not answer at "+addr) || !strings.Contains(errOut, "port-forward svc/wadispatch-recorder 9090:9090") {
		t.Errorf("unreachable: %d %s", code, errOut)
	}
	// A call the recorder answers with an error gets no such hint.
	code, _, errOut = ctl(t, map[string]string{"WADISPATCH_RECORDER_ADDR": recorder(t)}, "status", path("m9"))
	if code != 1 || strings.Contains(errOut, "port-forward") {
		t.Errorf("an answered call: %d %s", code, errOut)
	}
}

// resend --wait returns once the resend's outcome is recorded, with it.
func TestResendWait(t *testing.T) {
	pollEvery = 50 * time.Millisecond
	rec, addr := recorderFor(t)
	ctx := context.Background()
	op, sender := rec.ClientAs(t, recordertest.OperatorIdentity), rec.ClientAs(t, recordertest.SenderIdentity)
	before, err := op.GetMessage(ctx, &wadispatchv1.GetMessageRequest{MessageDocId: path("m3")})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := ctl(t, nil, "--addr", addr, "resend", path("m3"), "--wait", "--timeout", "20s")
		done <- result{code, out, errOut}
	}()
	// The sender's part, once the resend is marked: a claim (SENDING, not
	// yet an outcome), then SENT.
	for {
		st, err := op.GetMessage(ctx, &wadispatchv1.GetMessageRequest{MessageDocId: path("m3")})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetState().GetUpdatedAt().AsTime().After(before.GetState().GetUpdatedAt().AsTime()) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	task := &wadispatchv1.SendTask{LeaseId: "l1", EnquiryId: "e1", MessageId: "m3", MessageDocId: path("m3"), DriverMobileNumber: driver, CreatedBy: "u1", Message: "hi"}
	c, err := sender.ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{Task: task, Claimant: "sender-1"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("resend --wait returned on SENDING: %d\n%s%s", r.code, r.out, r.err)
	default:
	}
	if err := rec.Record(ctx, &wadispatchv1.SendResult{MessageDocId: path("m3"), DriverMobileNumber: driver, CreatedBy: "u1", ClaimId: c.GetClaimId(),
		Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "wamid.m3"}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.out, "new outcome") || !strings.Contains(r.out, "SENT") || !strings.Contains(r.out, "wamid.m3") {
		t.Errorf("resend --wait: %d\n%s%s", r.code, r.out, r.err)
	}

	// Nothing claims m1's resend: --wait gives up at --timeout, saying so.
	code, _, errOut := ctl(t, nil, "--addr", addr, "resend", path("m1"), "--wait", "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, "no new outcome within --timeout (still FAILED)") || strings.Contains(errOut, "port-forward") {
		t.Errorf("resend --wait with no sender: %d %s", code, errOut)
	}
}

// A listing prints one page and the token of the next; --page-token reads
// that page, --all every page, and --json carries the token (empty once
// every page is read).
func TestListPaging(t *testing.T) {
	env := map[string]string{"WADISPATCH_RECORDER_ADDR": recorder(t)}
	code, out, errOut := ctl(t, env, "list", driver, "e1", "--page-size", "2")
	_, token, found := strings.Cut(out, "--page-token ")
	token, _, _ = strings.Cut(token, " ")
	if code != 0 || strings.Count(out, path("")) != 2 || !found || token == "" {
		t.Fatalf("first page: %d\n%s%s", code, out, errOut)
	}
	code, second, errOut := ctl(t, env, "list", driver, "e1", "--page-size", "2", "--page-token", token)
	if code != 0 || strings.Count(second, path("")) != 2 {
		t.Fatalf("second page: %d\n%s%s", code, second, errOut)
	}
	for _, id := range []string{"m1", "m2", "m3", "m4", "m6"} {
		if n := strings.Count(out+second, path(id)+" "); n > 1 {
			t.Errorf("%s on both pages:\n%s%s", id, out, second)
		}
	}
	code, out, errOut = ctl(t, env, "list", driver, "e1", "--page-size", "2", "--all")
	if code != 0 || strings.Count(out, path("")) != 5 || strings.Contains(out, "--page-token") {
		t.Errorf("--all: %d\n%s%s", code, out, errOut)
	}

	var page wadispatchv1.ListEnquiryMessagesResponse
	code, out, errOut = ctl(t, env, "list", driver, "e1", "--page-size", "2", "--json")
	if code != 0 || protojson.Unmarshal([]byte(out), &page) != nil || len(page.GetMessages()) != 2 || page.GetNextPageToken() == "" {
		t.Errorf("--json: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ctl(t, env, "list", driver, "e1", "--page-size", "2", "--json", "--all")
	var all map[string]any
	if err := json.Unmarshal([]byte(out), &all); code != 0 || err != nil || len(all["messages"].([]any)) != 5 || all["nextPageToken"] != "" {
		t.Errorf("--json --all: %d %v\n%s%s", code, err, out, errOut)
	}

	code, out, errOut = ctl(t, env, "stalled", "--older-than", "0s", "--page-token", token)
	if code != 1 || out != "" || !strings.Contains(errOut, "InvalidArgument") || !strings.Contains(errOut, "another method or filter") {
		t.Errorf("a list's token for stalled: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ctl(t, env, "unknown", "--page-token", "garbage")
	if code != 1 || !strings.Contains(errOut, "page_token") || !strings.Contains(errOut, "InvalidArgument") {
		t.Errorf("a malformed token: %d %s", code, errOut)
	}
	if code, _, errOut := ctl(t, env, "unknown", "--limit", "5"); code != 2 || !strings.Contains(errOut, "--page-size") {
		t.Errorf("--limit on a list: %d %s", code, errOut)
	}
	if code, _, errOut := ctl(t, env, "unknown", "--page-size", "-1"); code != 2 || !strings.Contains(errOut, "--page-size -1") {
		t.Errorf("a negative --page-size: %d %s", code, errOut)
	}
}
