package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/recordertest"
)

const driver = "+447700900123"

// operatorToken is the credential wadispatchctl presents in these tests,
// which recorder(t) sets.
var operatorToken string

func path(id string) string {
	return "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + id
}

// recorder starts a real recorder on the emulators and returns its address,
// with m1 FAILED, m2 SENT, m3 UNKNOWN, m4 SENDING under a released claim
// and m5 refused by ingest.
func recorder(t *testing.T) string {
	ctx := context.Background()
	fs := firestoreemu.StartForTest(t, firestoreemu.Options{Indexes: recordertest.DeployedIndexes(t)})
	db, err := firestore.NewClient(ctx, pubsubemu.TestProject, fs.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	anc, err := firestore.NewClientWithDatabase(ctx, pubsubemu.TestProject, "ancillary", fs.ClientOptions()...)
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
	for _, id := range []string{"m1", "m2", "m3", "m4"} {
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
	time.Sleep(5 * time.Millisecond)
	if n, err := recorder.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	return addr
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
		strings.Count(out, path("")) != 4 || !strings.Contains(out, "MESSAGE") {
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
