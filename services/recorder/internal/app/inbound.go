package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Driver replies (InboundMessage from WhatsApp's webhooks).
//
// The customer-service window is WhatsApp's per business number and user,
// not per enquiry, so it is kept on the driver's own ancillary document,
// whatsapp/{driverE164}: lastInboundAt, and lastInboundAtByPhoneNumberId.
// {phoneNumberId} for the number the driver wrote to. It is recorded for
// every reply, even one that no enquiry can take. The enquiry's ancillary
// record gets lastInboundAt and lastInboundMessageId too.

// Outcomes of a driver reply, the consume.Verdict's reason.
const (
	InboundRecorded  = "recorded"
	InboundDuplicate = "duplicate"
	// InboundNoEnquiry: the window is recorded but no enquiry of this
	// driver is known, so there is no conversation to put the reply in.
	InboundNoEnquiry = "no_enquiry"
)

var schemaInbound = string(proto.MessageName(&wadispatchv1.InboundMessage{}))

func (s *Service) handleInbound(ctx context.Context, data []byte) consume.Verdict {
	var in wadispatchv1.InboundMessage
	if err := proto.Unmarshal(data, &in); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode InboundMessage: %w", err))
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"wamid": in.GetWhatsappMessageId(), "contextWamid": in.GetContextMessageId()})
	outcome, path, err := s.RecordInbound(ctx, &in)
	if err != nil {
		return verdictOf(log, err)
	}
	if path != "" {
		log = log.WithField("messagePath", path)
	}
	s.m.inbound.WithLabelValues(outcome).Inc()
	if outcome == InboundNoEnquiry {
		log.WithField("reason", outcome).Warn("driver reply has no enquiry to attach it to; window recorded, reply acked")
	} else {
		log.WithField("outcome", outcome).Info("driver reply recorded")
	}
	return consume.Verdict{Ack: true, Reason: "inbound_" + outcome}
}

// RecordInbound records a driver's reply: the 24-hour window on the
// ancillary records and, when an enquiry is found, a chatMessages document
// with source "driver" (which ingest skips, so nothing is sent for it). It
// returns the outcome and the document's path.
func (s *Service) RecordInbound(ctx context.Context, in *wadispatchv1.InboundMessage) (string, string, error) {
	wamid, from := in.GetWhatsappMessageId(), in.GetFrom()
	if wamid == "" || len(wamid) > 1500 {
		return "", "", invalid("inbound whatsapp_message_id is required")
	}
	if !strings.HasPrefix(from, "+") {
		return "", "", invalid("inbound from %q is not E.164", dispatch.Clip(from, 20))
	}
	if err := checkDocID("from", from); err != nil {
		return "", "", invalid("%v", err)
	}
	at := s.now()
	if t := in.GetTimestamp(); t != nil && t.CheckValid() == nil {
		at = t.AsTime()
	}
	ref, found, err := s.replyEnquiry(ctx, in)
	if err != nil {
		return "", "", err
	}
	outcome, path := InboundNoEnquiry, ""
	if found {
		ref.MessageID = dispatch.DriverReplyDocID(wamid)
		path = ref.Path()
		created, err := s.store.CreateReply(ctx, path, in, at)
		if err != nil {
			return "", "", storeErr(ctx, err)
		}
		outcome = InboundDuplicate
		if created {
			outcome = InboundRecorded
		}
	}
	w := Window{Driver: from, Wamid: wamid, PhoneNumberID: in.GetPhoneNumberId(), At: at}
	if checkDocID("phone_number_id", w.PhoneNumberID) != nil {
		w.PhoneNumberID = ""
	}
	if found {
		w.Enquiry = &ref
	}
	// After the reply document: a failure here is retried, and the retry
	// finds the document and carries on.
	if err := s.anc.RecordWindow(ctx, w); err != nil {
		return "", "", storeErr(ctx, err)
	}
	return outcome, path, nil
}

// replyEnquiry finds the enquiry a reply belongs to: the one of the message
// it quotes (one read of the wamid index), else the driver's most recently
// messaged enquiry in the ancillary database.
func (s *Service) replyEnquiry(ctx context.Context, in *wadispatchv1.InboundMessage) (dispatch.MessageRef, bool, error) {
	if c := in.GetContextMessageId(); c != "" {
		e, found, err := s.store.IndexedMessage(ctx, c)
		if err != nil {
			return dispatch.MessageRef{}, false, storeErr(ctx, err)
		}
		// Only a message sent to this driver places the reply: another
		// driver's enquiry is never theirs to write in.
		if ref, err := dispatch.ParseMessagePath(e.MessagePath); found && err == nil && e.Driver == in.GetFrom() {
			return ref, true, nil
		}
		// A quoted message the pipeline did not send (or a broken entry):
		// the driver's latest conversation is the best guess.
	}
	rec, found, err := s.anc.LatestEnquiry(ctx, in.GetFrom())
	if err != nil {
		return dispatch.MessageRef{}, false, storeErr(ctx, err)
	}
	if !found {
		return dispatch.MessageRef{}, false, nil
	}
	if rec.LeaseID == "" || checkDocID("leaseId", rec.LeaseID) != nil {
		logging.WithContext(ctx, s.log).WithField("ancillaryPath", rec.Path).Warn("driver's latest enquiry record names no lease; reply not attached")
		return dispatch.MessageRef{}, false, nil
	}
	return dispatch.MessageRef{LeaseID: rec.LeaseID, EnquiryID: rec.EnquiryID}, true, nil
}

// lastInbound reads when driver last wrote to the business phone number
// phoneID (any number when the task names none); nil when never.
func (s *Service) lastInbound(ctx context.Context, driver, phoneID string) (*timestamppb.Timestamp, error) {
	t, ok, err := s.anc.LastInbound(ctx, driver, phoneID)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	if !ok {
		return nil, nil
	}
	return timestamppb.New(t), nil
}
