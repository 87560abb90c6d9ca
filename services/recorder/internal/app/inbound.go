package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
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
// Ingest has given each part the leases of the business number it was
// written to (usually one); a reply is placed only in those: in the
// enquiry of the message it quotes (when that message was sent to this
// driver), else the driver's latest enquiry of those leases. A part no
// enquiry takes is kept in the first lease's whatsappUnmatchedReplies,
// where an operator finds it.
// Reactions, edits and revokes change the message they name instead of
// becoming messages.
//
// The customer-service window is WhatsApp's per business number and user,
// not per enquiry, so it is kept on the driver's own ancillary document,
// whatsapp/{driverE164}: lastInboundAt, and lastInboundAtByPhoneNumberId.
// {phoneNumberId} for the number the driver wrote to. It is recorded for
// every part, even one that no enquiry can take.

// Outcomes of a driver reply, the consume.Verdict's reason.
const (
	InboundRecorded  = "recorded"
	InboundDuplicate = "duplicate"
	// InboundUnmatched: no enquiry of the lease is known for the driver
	// (or the message a change names is not known): kept for operators.
	InboundUnmatched = "unmatched"
	// InboundApplied: a reaction, edit or revoke changed its message.
	InboundApplied = "applied"
	// InboundStale: a change older than the one its message holds.
	InboundStale = "stale"
)

// Why a part is kept unmatched.
const (
	UnmatchedNoEnquiry = "no_enquiry"
	UnmatchedNoTarget  = "target_not_found"
)

// Reply is a driver's part as the store writes it.
type Reply struct {
	In *wadispatchv1.InboundMessage
	// Path is the document the part becomes (in an enquiry, or kept
	// unmatched); ContextPath the document of the message it quotes, ""
	// when not one of the lease's.
	Path, ContextPath string
	At                time.Time
	// UnmatchedReason is set for a part kept unmatched.
	UnmatchedReason string
}

// Change is a reaction, edit or revoke as applied to the message it names.
type Change struct {
	Kind  string // "reaction", "edit" or "revoke"
	Wamid string // of the change itself
	Emoji string
	// Text replaces an edited message's text.
	Text string
	At   time.Time
}

// Replies is the default database as driver replies need it; the
// Firestore Store implements it.
type Replies interface {
	// IndexedMessage reads wamid's index entry (a message we sent);
	// false when there is none.
	IndexedMessage(ctx context.Context, wamid string) (IndexedMessage, bool, error)
	// IndexedReply reads the inbound index: the document a driver's wamid
	// became; false when none.
	IndexedReply(ctx context.Context, wamid string) (IndexedMessage, bool, error)
	// CreateReply creates r's document and its inbound index entry, in one
	// commit, unless the document is there already; true when it did.
	CreateReply(ctx context.Context, r Reply) (bool, error)
	// ApplyChange applies c to the document at path unless the document
	// holds a later change of the same kind; true when it did.
	ApplyChange(ctx context.Context, path string, c Change) (bool, error)
	// RecordMedia writes a media outcome on the reply at path, unless its
	// media is stored already; true when it did, false with found false
	// when there is no such reply.
	RecordMedia(ctx context.Context, path string, m *wadispatchv1.MediaStored) (written, found bool, err error)
	// Unmatched lists up to limit of a lease's unmatched replies after the
	// cursor (from the first when nil), the latest first (Cursor.At:
	// createdAt), and where the next page starts (nil on the last).
	Unmatched(ctx context.Context, leaseID string, after *Cursor, limit int) ([]*wadispatchv1.UnmatchedReply, *Cursor, error)
}

// MediaFetches asks for a driver's media to be fetched into Cloud Storage.
type MediaFetches interface {
	PublishMediaFetch(ctx context.Context, f *wadispatchv1.MediaFetch) error
}

var schemaInbound = string(proto.MessageName(&wadispatchv1.InboundMessage{}))

func (s *Service) handleInbound(ctx context.Context, data []byte) consume.Verdict {
	var in wadispatchv1.InboundMessage
	if err := proto.Unmarshal(data, &in); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode InboundMessage: %w", err))
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{
		"wamid": in.GetWhatsappMessageId(), "contextWamid": in.GetContextMessageId(), "type": in.GetType(), "leaseIds": in.GetLeaseIds(),
	})
	outcome, path, err := s.RecordInbound(ctx, &in)
	if err != nil {
		return verdictOf(log, err)
	}
	if path != "" {
		log = log.WithField("messagePath", path)
	}
	s.m.inbound.WithLabelValues(outcome).Inc()
	if outcome == InboundUnmatched {
		log.WithField("reason", outcome).Warn("driver's message matched no enquiry of its lease; kept as unmatched")
	} else {
		log.WithField("outcome", outcome).Info("driver's message recorded")
	}
	return consume.Verdict{Ack: true, Reason: "inbound_" + outcome}
}

// RecordInbound records a driver's part: the 24-hour window on the
// ancillary records and the part where it belongs (a chatMessages document
// with source "driver", which ingest skips, so nothing is sent for it; a
// change to the message it names; or kept unmatched). It returns the
// outcome and the path of the document written or changed.
func (s *Service) RecordInbound(ctx context.Context, in *wadispatchv1.InboundMessage) (string, string, error) {
	wamid, from, leases := in.GetWhatsappMessageId(), in.GetFrom(), in.GetLeaseIds()
	if wamid == "" || len(wamid) > 1500 {
		return "", "", invalid("inbound whatsapp_message_id is required")
	}
	if !strings.HasPrefix(from, "+") {
		return "", "", invalid("inbound from %q is not E.164", dispatch.Clip(from, 20))
	}
	if err := checkDocID("from", from); err != nil {
		return "", "", invalid("%v", err)
	}
	// Ingest decides the leases by the business number; a part without
	// one has no place it may be written.
	if len(leases) == 0 {
		return "", "", invalid("inbound lease_ids: a part needs the leases of its business number")
	}
	for _, l := range leases {
		if err := checkDocID("lease_ids", l); err != nil {
			return "", "", invalid("inbound %v", err)
		}
	}
	at := s.now()
	if t := in.GetTimestamp(); t != nil && t.CheckValid() == nil {
		at = t.AsTime()
	}
	var (
		outcome, path string
		enquiry       *dispatch.MessageRef
		err           error
	)
	if kind := changeKind(in); kind != "" {
		outcome, path, err = s.applyChange(ctx, in, kind, at)
	} else {
		outcome, path, enquiry, err = s.placeReply(ctx, in, at)
	}
	if err != nil {
		return "", "", err
	}
	if err := s.noteDriverWrote(ctx, in, at); err != nil {
		return "", "", err
	}
	w := Window{Driver: from, Wamid: wamid, PhoneNumberID: in.GetPhoneNumberId(), At: at, Enquiry: enquiry, UserID: in.GetUserId()}
	if checkDocID("phone_number_id", w.PhoneNumberID) != nil {
		w.PhoneNumberID = ""
	}
	// After the part's own write: a failure here is retried, and the
	// retry finds that write done and carries on.
	if err := s.anc.RecordWindow(ctx, w); err != nil {
		return "", "", storeErr(ctx, err)
	}
	return outcome, path, nil
}

// changeKind names the change a part is ("" when it is a message of its
// own). One without a target it can name is kept as a message: what the
// driver sent is not dropped.
func changeKind(in *wadispatchv1.InboundMessage) string {
	switch t := in.GetType(); t {
	case "reaction", "edit", "revoke":
		if in.GetTargetMessageId() != "" {
			return t
		}
	}
	return ""
}

// placeReply writes the part as a reply in its enquiry, or kept unmatched,
// and asks for its media.
func (s *Service) placeReply(ctx context.Context, in *wadispatchv1.InboundMessage, at time.Time) (string, string, *dispatch.MessageRef, error) {
	ref, contextPath, found, err := s.replyEnquiry(ctx, in)
	if err != nil {
		return "", "", nil, err
	}
	r := unmatched(in, at, UnmatchedNoEnquiry)
	if found {
		ref.MessageID = dispatch.DriverReplyDocID(in.GetWhatsappMessageId())
		r = Reply{In: in, At: at, ContextPath: contextPath, Path: ref.Path()}
	}
	created, err := s.replies.CreateReply(ctx, r)
	if err != nil {
		return "", "", nil, storeErr(ctx, err)
	}
	if in.GetMedia().GetId() != "" {
		// Every time, not only when created: a crash between the document
		// and the publish must not leave the media pending for ever, and
		// the fetch of stored media is a no-op. An unmatched reply's media
		// is fetched too: WhatsApp keeps it only about a week, and a driver's
		// photo is no less wanted for arriving before its enquiry's message.
		fetch := &wadispatchv1.MediaFetch{
			MessageDocId: r.Path, LeaseId: in.GetLeaseIds()[0], WhatsappMessageId: in.GetWhatsappMessageId(),
			Media: in.GetMedia(), LeaseWhatsappDetails: in.GetLeaseWhatsappDetails(),
		}
		if found {
			fetch.LeaseId, fetch.EnquiryId = ref.LeaseID, ref.EnquiryID
		}
		if err := s.media.PublishMediaFetch(ctx, fetch); err != nil {
			// Pub/Sub did not take it: an outage, held like Firestore's.
			return "", "", nil, status.Errorf(codes.Unavailable, "publish media fetch: %v", err)
		}
	}
	switch {
	case !found:
		return InboundUnmatched, r.Path, nil, nil
	case created:
		return InboundRecorded, r.Path, &ref, nil
	}
	return InboundDuplicate, r.Path, &ref, nil
}

// unmatched is in kept for operators in its first lease, for reason.
func unmatched(in *wadispatchv1.InboundMessage, at time.Time, reason string) Reply {
	return Reply{In: in, At: at, UnmatchedReason: reason,
		Path: dispatch.UnmatchedReplyPath(in.GetLeaseIds()[0], dispatch.DriverReplyDocID(in.GetWhatsappMessageId()))}
}

// replyEnquiry finds the enquiry of in's lease a reply belongs to: the one
// of the message it quotes (one read of the wamid index), else the driver's
// most recently messaged enquiry of the lease in the ancillary database.
// It also returns the quoted message's path when it is the lease's.
func (s *Service) replyEnquiry(ctx context.Context, in *wadispatchv1.InboundMessage) (dispatch.MessageRef, string, bool, error) {
	if c := in.GetContextMessageId(); c != "" {
		ref, _, ok, err := s.ownMessage(ctx, c, in)
		if err != nil || ok {
			return ref, ref.Path(), ok, err
		}
		// A quoted message the pipeline did not send (or a broken entry):
		// the driver's latest conversation is the best guess.
	}
	rec, found, err := s.anc.LatestEnquiry(ctx, in.GetFrom(), in.GetLeaseIds())
	if err != nil {
		return dispatch.MessageRef{}, "", false, storeErr(ctx, err)
	}
	if !found {
		return dispatch.MessageRef{}, "", false, nil
	}
	return dispatch.MessageRef{LeaseID: rec.LeaseID, EnquiryID: rec.EnquiryID}, "", true, nil
}

// ownMessage finds the message wamid names among those sent to in's driver
// in in's leases, or among the driver's own replies there (reply true):
// another driver's or another lease's message is never theirs to write in.
func (s *Service) ownMessage(ctx context.Context, wamid string, in *wadispatchv1.InboundMessage) (ref dispatch.MessageRef, reply, found bool, err error) {
	for i, read := range []func(context.Context, string) (IndexedMessage, bool, error){s.replies.IndexedMessage, s.replies.IndexedReply} {
		e, ok, err := read(ctx, wamid)
		if err != nil {
			return dispatch.MessageRef{}, false, false, storeErr(ctx, err)
		}
		if !ok {
			continue
		}
		ref, err := dispatch.ParseMessagePath(e.MessagePath)
		if err != nil || e.Driver != in.GetFrom() || !slices.Contains(in.GetLeaseIds(), ref.LeaseID) {
			return dispatch.MessageRef{}, false, false, nil
		}
		return ref, i == 1, true, nil
	}
	return dispatch.MessageRef{}, false, false, nil
}

// applyChange applies a reaction, edit or revoke to the message it names.
// One whose message is not known is kept unmatched with its target, so
// nothing the driver did is lost. A driver edits and revokes only their
// own messages: those name the driver's replies, never ours.
func (s *Service) applyChange(ctx context.Context, in *wadispatchv1.InboundMessage, kind string, at time.Time) (string, string, error) {
	target := in.GetTargetMessageId()
	ref, reply, found, err := s.ownMessage(ctx, target, in)
	if err != nil {
		return "", "", err
	}
	if kind != "reaction" && !reply {
		found = false
	}
	if !found {
		r := unmatched(in, at, UnmatchedNoTarget)
		if _, err := s.replies.CreateReply(ctx, r); err != nil {
			return "", "", storeErr(ctx, err)
		}
		return InboundUnmatched, r.Path, nil
	}
	applied, err := s.replies.ApplyChange(ctx, ref.Path(), Change{
		Kind: kind, Wamid: in.GetWhatsappMessageId(), Emoji: in.GetEmoji(), Text: in.GetText(), At: at,
	})
	if err != nil {
		return "", "", storeErr(ctx, err)
	}
	if !applied {
		return InboundStale, ref.Path(), nil
	}
	return InboundApplied, ref.Path(), nil
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

// noteDriverWrote keeps on the driver's records what a part of theirs says
// of them: they are reachable, and a user_changed_number system message
// moves them to their new number, in each lease of the business number and
// in the ancillary records, so their replies from it land in the same
// enquiries.
func (s *Service) noteDriverWrote(ctx context.Context, in *wadispatchv1.InboundMessage, at time.Time) error {
	from, moved := in.GetFrom(), in.GetNewNumber()
	if moved != "" && (!strings.HasPrefix(moved, "+") || checkDocID("new_number", moved) != nil || moved == from) {
		moved = ""
	}
	for _, lease := range in.GetLeaseIds() {
		if err := s.drivers.ClearUndeliverable(ctx, lease, from); err != nil {
			return storeErr(ctx, err)
		}
		if moved != "" {
			if err := s.drivers.RecordNumberChange(ctx, lease, from, moved, at); err != nil {
				return storeErr(ctx, err)
			}
		}
	}
	if moved != "" {
		if err := s.anc.MoveDriver(ctx, from, moved, at); err != nil {
			return storeErr(ctx, err)
		}
	}
	return nil
}
