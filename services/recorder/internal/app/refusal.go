package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Refusals (wadispatch.v1.Refusal, from ingest, on the results topic).
//
// A message ingest refuses for a reason the V-Customer can act on (invalid
// data, no WhatsApp configuration) would otherwise show nothing on its
// document. The recorder writes it FAILED there, with the reason, and
// creates its state so operators see the same. It does so only for a
// message without a state: one claimed, sent or refused before is never
// overwritten, so a late or repeated refusal changes nothing.

var schemaRefusal = string(proto.MessageName(&wadispatchv1.Refusal{}))

// Outcomes of a refusal: the refusals metric's label, and with "refusal_"
// the consume.Verdict's reason.
const (
	RefusalRecorded = "recorded"
	// RefusalDuplicate: the message was refused before (a redelivery, or
	// a second ingest pod's reconciler).
	RefusalDuplicate = "duplicate"
	// RefusalHasState: the message has a pipeline state of its own (a
	// claim, an outcome), which a refusal never replaces.
	RefusalHasState = "has_state"
	// RefusalNoMessage: the document is gone; there is nothing to explain.
	RefusalNoMessage = "no_message"
)

// maxRefusalText bounds what a refusal writes of ingest's text.
const maxRefusalText = 1000

func (s *Service) handleRefusal(ctx context.Context, data []byte) consume.Verdict {
	var r wadispatchv1.Refusal
	if err := proto.Unmarshal(data, &r); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode Refusal: %w", err))
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": r.GetMessageDocId(), "reason": r.GetReason(), "eventId": r.GetEventId()})
	outcome, err := s.RecordRefusal(ctx, &r)
	if err != nil {
		return verdictOf(log, err)
	}
	s.m.refusals.WithLabelValues(outcome).Inc()
	log.WithField("outcome", outcome).Info("refusal handled")
	return consume.Verdict{Ack: true, Reason: "refusal_" + outcome}
}

// RecordRefusal writes a refusal on its message and returns the outcome.
func (s *Service) RecordRefusal(ctx context.Context, r *wadispatchv1.Refusal) (string, error) {
	ref, err := validateRefusal(r)
	if err != nil {
		return "", invalid("refusal: %v", err)
	}
	var outcome string
	// Assumed absent: a refused message normally has no state, so the
	// common case is one commit; any other case reads and decides again.
	err = s.update(ctx, "record refusal", ref, absent, func(st *State, exists bool, _ []*wadispatchv1.StatusEvent) (Plan, error) {
		var p Plan
		outcome, p = decideRefusal(st, exists, r, ref, s.now())
		return p, nil
	})
	if err != nil {
		return "", err
	}
	return outcome, nil
}

// validateRefusal checks what recording needs; the error is ingest's fault.
func validateRefusal(r *wadispatchv1.Refusal) (dispatch.MessageRef, error) {
	ref, err := dispatch.ParseMessagePath(r.GetMessageDocId())
	if err != nil {
		return ref, fmt.Errorf("message_doc_id: %w", err)
	}
	if r.GetReason() == "" {
		return ref, errors.New("reason is required")
	}
	if r.GetLeaseId() != "" && r.GetLeaseId() != ref.LeaseID || r.GetEnquiryId() != "" && r.GetEnquiryId() != ref.EnquiryID {
		return ref, errors.New("lease_id/enquiry_id do not match message_doc_id")
	}
	return ref, nil
}

// decideRefusal plans writing r on a message whose state is st (nil when
// none) and whose document exists or not.
func decideRefusal(st *State, messageExists bool, r *wadispatchv1.Refusal, ref dispatch.MessageRef, now time.Time) (string, Plan) {
	switch {
	case !messageExists:
		return RefusalNoMessage, Plan{}
	case st != nil && refusedState(st):
		return RefusalDuplicate, Plan{}
	case st != nil:
		return RefusalHasState, Plan{}
	}
	at := now
	if t := r.GetRefusedAt(); t != nil && t.CheckValid() == nil {
		at = t.AsTime()
	}
	why := dispatch.Clip(r.GetDetail(), maxRefusalText)
	if f := r.GetField(); f != "" {
		why = dispatch.Clip(f, maxRefusalText) + ": " + why
	}
	reason := dispatch.Clip(r.GetReason(), 100)
	next := State{
		MessagePath: ref.Path(), LeaseID: ref.LeaseID, EnquiryID: ref.EnquiryID, MessageID: ref.MessageID,
		CreatedBy: dispatch.Clip(r.GetCreatedBy(), maxRefusalText),
		Status:    string(dispatch.StatusFailed), Outcome: string(dispatch.StatusFailed),
		Reason:   refusedPrefix + reason + ": " + why,
		FailedAt: at, UpdatedAt: now,
	}
	if t := r.GetCreatedAt(); t != nil && t.CheckValid() == nil {
		next.CreatedAt = t.AsTime()
	}
	// failureReason is machine-readable, as for WhatsApp's refusals;
	// statusReason says what to correct.
	msg := &MessageUpdate{Status: dispatch.StatusFailed, StatusUpdatedAt: now, FailureReason: reason, StatusReason: why, FailedAt: at}
	return RefusalRecorded, Plan{State: &next, Message: msg}
}

// refusedPrefix starts the reason of a refused message's state, which
// tells operators that nothing was ever sent for it.
const refusedPrefix = "refused by ingest: "

// refusedState reports whether st is a refusal's: FAILED with no claim
// ever made and no WhatsApp error.
func refusedState(st *State) bool {
	return st.Status == string(dispatch.StatusFailed) && st.Claims == 0 && st.Error == nil && len(st.Task) == 0
}
