package app_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/consume"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Any bytes on whatsapp-message-results or whatsapp-status-events: the
// handlers never panic and return within their deadline; what does not
// decode is poison and never acked (so the subscription dead-letters it
// intact); nothing is both acked and poison.
func FuzzHandlers(f *testing.F) {
	e := newEnv(f, envOptions{})
	task := e.newMessage(f, "fuzz-m1")
	claim := e.claim(f, task, time.Minute)
	for _, m := range []proto.Message{
		sent(task, claim.GetClaimId(), "wamid.FUZZ1"),
		failed(task, claim.GetClaimId()),
		sent(task, "not-the-claim", "wamid.FUZZ2"),
		&wadispatchv1.SendResult{MessageDocId: "leasecompany/../x"},
		&wadispatchv1.StatusEvent{WhatsappMessageId: "wamid.FUZZ1", Status: wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED},
		// A status of a claim whose result is not recorded: the callback path.
		callbackStatus(f, task, claim.GetClaimId(), "wamid.FUZZ3", wadispatchv1.MessageStatus_MESSAGE_STATUS_READ, time.Now()),
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte{0xff, 0xff, 0xff}, false)
	f.Add([]byte("garbage"), true)
	f.Fuzz(func(t *testing.T, data []byte, statusTopic bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var undecodable, ack, poison bool
		if statusTopic {
			undecodable = proto.Unmarshal(data, &wadispatchv1.StatusEvent{}) != nil
			v := e.svc.HandleStatusTopic(ctx, consume.Message{Data: data, Attributes: map[string]string{"schema": "wadispatch.v1.StatusEvent"}})
			ack, poison = v.Ack, v.Poison
		} else {
			undecodable = proto.Unmarshal(data, &wadispatchv1.SendResult{}) != nil
			v := e.svc.HandleResult(ctx, consume.Message{Data: data, Attributes: map[string]string{"schema": "wadispatch.v1.SendResult"}})
			ack, poison = v.Ack, v.Poison
		}
		if ctx.Err() != nil {
			t.Fatal("handler outlived its deadline")
		}
		if ack && poison {
			t.Fatal("verdict both acks and dead-letters")
		}
		if undecodable && !poison {
			t.Fatalf("undecodable payload: ack=%v poison=%v, want poison", ack, poison)
		}
	})
}

// Any request a caller can send to the network API's methods: the recorder
// never panics, answers within the deadline, and a malformed request is
// InvalidArgument, never an outage (Unavailable) that would be retried
// forever.
func FuzzRecorderMethods(f *testing.F) {
	e := newEnv(f, envOptions{})
	task := e.newMessage(f, "fuzz-m1")
	claim := e.claim(f, task, time.Minute)
	for method, m := range map[uint8]proto.Message{
		0: &wadispatchv1.ClaimSendRequest{Task: task, Claimant: "fuzz"},
		1: &wadispatchv1.ReleaseClaimRequest{MessageDocId: task.GetMessageDocId(), ClaimId: claim.GetClaimId()},
		2: &wadispatchv1.GetMessageRequest{MessageDocId: task.GetMessageDocId()},
		3: &wadispatchv1.ResendRequest{MessageDocId: task.GetMessageDocId()},
		4: &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: task.GetDriverMobileNumber(), EnquiryId: task.GetEnquiryId()},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(method, b)
	}
	f.Add(uint8(0), []byte{0x0a, 0x02, 0x42, 0x00})
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		switch method % 5 {
		case 0:
			var req wadispatchv1.ClaimSendRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			_, err = e.svc.ClaimSend(ctx, &req)
		case 1:
			var req wadispatchv1.ReleaseClaimRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			_, err = e.svc.ReleaseClaim(ctx, &req)
		case 2:
			var req wadispatchv1.GetMessageRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			_, err = e.svc.GetMessage(ctx, &req)
		case 3:
			var req wadispatchv1.ResendRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			_, err = e.svc.Resend(ctx, &req)
		case 4:
			var req wadispatchv1.ListEnquiryMessagesRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			_, err = e.svc.ListEnquiryMessages(ctx, &req)
		}
		if ctx.Err() != nil {
			t.Fatal("the method outlived its deadline")
		}
		if c := status.Code(err); c == codes.Unavailable || c == codes.Internal || c == codes.Unknown {
			t.Fatalf("method %d: %v; a bad request must not look like an outage", method%5, err)
		}
	})
}
