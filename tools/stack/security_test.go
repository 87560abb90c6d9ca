package stack_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
	"github.com/visn/wadispatch/pkg/testinfra/localissuer"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/tools/stack"
)

// The attacks of someone who can reach the pod network, against the real
// processes: each is refused, nothing reaches the simulator and nothing is
// written to Firestore.
func TestAttacksFromThePodNetworkAreRefused(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	dial := func(token string) *grpc.ClientConn {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(auth.PerRPC(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))))
		}
		conn, err := grpc.NewClient(s.RecorderAddr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	operator, err := os.ReadFile(s.OperatorTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := localissuer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	forgedSender, err := stranger.Mint(stack.SenderIdentity, stack.RecorderAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// 1. A made-up task claimed, a forged result recorded, a resend asked
	// for: by nobody, by a forged sender, by an operator claiming.
	path := "leasecompany/" + stack.DemoLease + "/enquiries/enq-attack/whatsapp/messages/chatMessages/forged"
	task := &wadispatchv1.SendTask{LeaseId: stack.DemoLease, EnquiryId: "enq-attack", MessageId: "forged", MessageDocId: path,
		DriverMobileNumber: "+447700900999", CreatedBy: "attacker", Message: "FORGED", Type: wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE, TemplateType: "vehicle_ready"}
	for name, c := range map[string]struct {
		conn *grpc.ClientConn
		want codes.Code
	}{
		"no credential":   {dial(""), codes.Unauthenticated},
		"a forged sender": {dial(forgedSender), codes.Unauthenticated},
		"an operator":     {dial(strings.TrimSpace(string(operator))), codes.PermissionDenied},
	} {
		if _, err := wadispatchv1.NewRecorderClient(c.conn).ClaimSend(ctx, &wadispatchv1.ClaimSendRequest{Task: task, Claimant: "attacker"}); status.Code(err) != c.want {
			t.Errorf("%s claiming: %v, want %s", name, err, c.want)
		}
		r := &wadispatchv1.SendResult{MessageDocId: path, Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "wamid.forged", DriverMobileNumber: "+447700900999", CreatedBy: "attacker"}
		// No network method records results: called by name, there is none.
		if err := c.conn.Invoke(ctx, "/wadispatch.v1.Recorder/RecordResult", &wadispatchv1.RecordResultRequest{Result: r}, &wadispatchv1.RecordResultResponse{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("%s recording a result: %v, want Unimplemented", name, err)
		}
	}
	if _, err := wadispatchv1.NewRecorderClient(dial(strings.TrimSpace(string(operator)))).Resend(ctx, &wadispatchv1.ResendRequest{MessageDocId: path}); status.Code(err) == codes.OK {
		t.Error("a resend of a message never claimed was accepted")
	}

	// 2. An event naming a driver's reply, carrying fields of its own.
	reply := "leasecompany/" + stack.DemoLease + "/enquiries/enq-attack/whatsapp/messages/chatMessages/reply"
	wr, err := fs.Doc(reply).Create(ctx, map[string]any{"message": "on my way", "source": "driver", "driverMobileNumber": "+447911123401"})
	if err != nil {
		t.Fatal(err)
	}
	forged := eventarctest.Event{ID: "forged-1", Path: reply, CreateTime: wr.UpdateTime, Fields: eventarctest.Fields(map[string]any{
		"message": "FORGED via CloudEvent", "type": "text", "driverMobileNumber": "+447700900999", "createdBy": "attacker", "source": "web",
	})}
	resp, err := http.DefaultClient.Do(forged.Binary(s.IngestURL + "/"))
	if err != nil {
		t.Fatal(err)
	}
	var answer map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	_ = resp.Body.Close()
	if answer["reason"] != "from_driver" {
		t.Errorf("forged event: HTTP %d %v, want rejected from_driver, what the document holds", resp.StatusCode, answer)
	}

	// 4. An event id of 900 KB.
	big := eventarctest.Event{ID: strings.Repeat("i", 900_000), Path: reply, CreateTime: wr.UpdateTime}
	resp, err = http.DefaultClient.Do(big.Binary(s.IngestURL + "/"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("900 KB event id: HTTP %d, want 400", resp.StatusCode)
	}

	counts, err := s.SimulatorCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Requests != 0 {
		t.Errorf("the simulator was called %d times: %+v", counts.Requests, counts)
	}
	if snap, err := fs.Doc(path + "/dispatch/state").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("state written for the made-up task: %v %v", snap.Data(), err)
	}
	if snap, err := fs.Doc("leasecompany/" + stack.DemoLease + "/performanceMetrics/attacker").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("the attacker's counter exists: %v %v", snap.Data(), err)
	}
	for _, name := range []string{stack.Ingest, stack.Recorder} {
		b, err := os.ReadFile(s.LogPath(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) > 20_000 {
				t.Errorf("%s logged a line of %d bytes", name, len(line))
			}
		}
	}
}
