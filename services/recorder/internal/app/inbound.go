package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sirupsen/logrus"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

const (
	fLastInboundAt        = "lastInboundAt"
	fLastInboundByNumber  = "lastInboundAtByPhoneNumberId"
	fLastInboundMessageID = "lastInboundMessageId"
	fLastMessageAt        = "lastMessageAt"
	enquiryMessagesColl   = "enquiryMessages"
)

// Outcomes of a driver reply, the consume.Verdict's reason.
const (
	InboundRecorded  = "recorded"
	InboundDuplicate = "duplicate"
	// InboundNoEnquiry: the window is recorded but no enquiry of this
	// driver is known, so there is no conversation to put the reply in.
	InboundNoEnquiry = "no_enquiry"
)

var schemaInbound = string(proto.MessageName(&wadispatchv1.InboundMessage{}))

// driverRecordPath is the driver's document in the ancillary database,
// parent of the per-enquiry records.
func driverRecordPath(driver string) string { return "whatsapp/" + driver }

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
		_, err := s.db.Doc(path).Create(ctx, replyFields(in, at))
		switch {
		case err == nil:
			outcome = InboundRecorded
		case status.Code(err) == codes.AlreadyExists:
			outcome = InboundDuplicate
		default:
			return "", "", storeErr(ctx, "create driver reply", err)
		}
	}
	// After the reply document: a failure here is retried, and the retry
	// finds the document and carries on.
	if err := s.recordWindow(ctx, in, at, ref, found); err != nil {
		return "", "", storeErr(ctx, "record driver's window", err)
	}
	return outcome, path, nil
}

func replyFields(in *wadispatchv1.InboundMessage, at time.Time) map[string]any {
	m := map[string]any{
		"source":             "driver",
		"message":            in.GetText(),
		"type":               "text",
		"driverMobileNumber": in.GetFrom(),
		"whatsappMessageId":  in.GetWhatsappMessageId(),
		"whatsappType":       in.GetType(),
		"phoneNumberId":      in.GetPhoneNumberId(),
		"createdAt":          at,
		"receivedAt":         firestore.ServerTimestamp,
	}
	if c := in.GetContextMessageId(); c != "" {
		m["contextWhatsappMessageId"] = c
	}
	return m
}

// replyEnquiry finds the enquiry a reply belongs to: the one of the message
// it quotes (one read of the wamid index), else the driver's most recently
// messaged enquiry in the ancillary database.
func (s *Service) replyEnquiry(ctx context.Context, in *wadispatchv1.InboundMessage) (dispatch.MessageRef, bool, error) {
	if c := in.GetContextMessageId(); c != "" {
		snap, err := s.db.Doc(dispatch.IndexPath(c)).Get(ctx)
		switch {
		case err == nil:
			path, _ := snap.Data()["messagePath"].(string)
			to, _ := snap.Data()["driverMobileNumber"].(string)
			// Only a message sent to this driver places the reply: another
			// driver's enquiry is never theirs to write in.
			if ref, err := dispatch.ParseMessagePath(path); err == nil && to == in.GetFrom() {
				return ref, true, nil
			}
		case status.Code(err) != codes.NotFound:
			return dispatch.MessageRef{}, false, storeErr(ctx, "read wamid index", err)
		}
		// A quoted message the pipeline did not send (or a broken entry):
		// the driver's latest conversation is the best guess.
	}
	it := s.anc.Collection(driverRecordPath(in.GetFrom())+"/"+enquiryMessagesColl).
		OrderBy(fLastMessageAt, firestore.Desc).Limit(1).Documents(ctx)
	defer it.Stop()
	snap, err := it.Next()
	if err == iterator.Done {
		return dispatch.MessageRef{}, false, nil
	}
	if err != nil {
		return dispatch.MessageRef{}, false, storeErr(ctx, "query driver's enquiries", err)
	}
	lease, _ := snap.Data()["leaseId"].(string)
	if lease == "" || checkDocID("leaseId", lease) != nil {
		logging.WithContext(ctx, s.log).WithField("ancillaryPath", snap.Ref.Path).Warn("driver's latest enquiry record names no lease; reply not attached")
		return dispatch.MessageRef{}, false, nil
	}
	return dispatch.MessageRef{LeaseID: lease, EnquiryID: snap.Ref.ID}, true, nil
}

// recordWindow moves lastInboundAt forward on the driver's document and,
// when found, the enquiry's record, in one transaction: a late or repeated
// webhook never moves it back.
func (s *Service) recordWindow(ctx context.Context, in *wadispatchv1.InboundMessage, at time.Time, ref dispatch.MessageRef, found bool) error {
	driverDoc := s.anc.Doc(driverRecordPath(in.GetFrom()))
	var enquiryDoc *firestore.DocumentRef
	if found {
		enquiryDoc = s.anc.Doc(dispatch.AncillaryPath(in.GetFrom(), ref.EnquiryID))
	}
	phoneID := in.GetPhoneNumberId()
	return s.anc.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		refs := []*firestore.DocumentRef{driverDoc}
		if enquiryDoc != nil {
			refs = append(refs, enquiryDoc)
		}
		snaps, err := tx.GetAll(refs)
		if err != nil {
			return err
		}
		driver := map[string]any{"driverPhoneNumber": in.GetFrom()}
		if later(snaps[0], []string{fLastInboundAt}, at) {
			driver[fLastInboundAt] = at
		}
		if phoneID != "" && checkDocID("phone_number_id", phoneID) == nil && later(snaps[0], []string{fLastInboundByNumber, phoneID}, at) {
			driver[fLastInboundByNumber] = map[string]any{phoneID: at}
		}
		if len(driver) > 1 {
			if err := tx.Set(driverDoc, driver, firestore.MergeAll); err != nil {
				return err
			}
		}
		if enquiryDoc != nil && later(snaps[1], []string{fLastInboundAt}, at) {
			return tx.Set(enquiryDoc, map[string]any{
				fLastInboundAt: at, fLastInboundMessageID: in.GetWhatsappMessageId(),
				"driverPhoneNumber": in.GetFrom(), "leaseId": ref.LeaseID, "enquiryId": ref.EnquiryID,
			}, firestore.MergeAll)
		}
		return nil
	})
}

// later reports whether at is after the time at path in snap (or there is
// none).
func later(snap *firestore.DocumentSnapshot, path firestore.FieldPath, at time.Time) bool {
	if !snap.Exists() {
		return true
	}
	v, err := snap.DataAtPath(path)
	if err != nil {
		return true
	}
	t, ok := v.(time.Time)
	return !ok || at.After(t)
}

// lastInbound reads when driver last wrote to the business phone number
// phoneID (any number when the task names none); nil when never.
func (s *Service) lastInbound(ctx context.Context, driver, phoneID string) (*timestamppb.Timestamp, error) {
	snap, err := s.anc.Doc(driverRecordPath(driver)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(ctx, "read driver's ancillary record", err)
	}
	path := firestore.FieldPath{fLastInboundAt}
	if phoneID != "" {
		path = firestore.FieldPath{fLastInboundByNumber, phoneID}
	}
	v, err := snap.DataAtPath(path)
	if err != nil {
		return nil, nil
	}
	t, ok := v.(time.Time)
	if !ok {
		return nil, nil
	}
	return timestamppb.New(t), nil
}
