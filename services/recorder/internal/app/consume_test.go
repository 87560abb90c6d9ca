package app

import (
	"io"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/consume"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestVerdictOf(t *testing.T) {
	l := logrus.New()
	l.SetOutput(io.Discard)
	log := logrus.NewEntry(l)
	for code, want := range map[codes.Code]consume.Verdict{
		codes.InvalidArgument:    {Reason: "invalid", Poison: true},
		codes.FailedPrecondition: {Ack: true, Reason: "permanent"},
		codes.NotFound:           {Ack: true, Reason: "permanent"},
		codes.Unavailable:        {Reason: "unavailable", Unavailable: true},
		codes.DeadlineExceeded:   {Reason: "unavailable", Unavailable: true},
		codes.Aborted:            {Reason: "transient"},
		codes.Canceled:           {Reason: "transient"},
	} {
		if got := verdictOf(log, status.Error(code, "x")); got != want {
			t.Errorf("%v: %+v, want %+v", code, got, want)
		}
	}
}

func TestSentIDs(t *testing.T) {
	sentR := &wadispatchv1.SendResult{Outcome: wadispatchv1.Outcome_OUTCOME_SENT, WhatsappMessageId: "w2"}
	failedR := &wadispatchv1.SendResult{Outcome: wadispatchv1.Outcome_OUTCOME_FAILED}
	cases := []struct {
		st   *State
		r    *wadispatchv1.SendResult
		want []string
	}{
		{&State{Outcome: "SENT", WhatsappMessageID: "w2"}, sentR, []string{"w2"}},
		{&State{Outcome: "SENT", WhatsappMessageID: "w1"}, sentR, []string{"w1", "w2"}},
		{&State{Outcome: "SENT", WhatsappMessageID: "w1"}, failedR, []string{"w1"}},
		{&State{Outcome: "FAILED"}, failedR, nil},
		{&State{Outcome: "FAILED"}, sentR, []string{"w2"}},
	}
	for _, c := range cases {
		got := sentIDs(c.st, c.r)
		if !slices.Equal(got, c.want) {
			t.Errorf("%+v %v: %v, want %v", c.st, c.r, got, c.want)
		}
	}
}
