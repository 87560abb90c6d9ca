package app

import (
	"context"
	"fmt"
	"path"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// A driver's media: the reply's document is created with media.status
// "pending" and a MediaFetch published (inbound.go); the sender, which
// holds the lease's token, stores the file in Cloud Storage and answers
// with a MediaStored, written here as media.status "stored" (with the
// gs:// URI, size and checksum) or "failed" (with the reason).

var schemaMediaStored = string(proto.MessageName(&wadispatchv1.MediaStored{}))

// Outcomes of a MediaStored, the consume.Verdict's reason.
const (
	MediaRecorded  = "media_recorded"
	MediaDuplicate = "media_duplicate"
	MediaNoReply   = "media_no_reply"
)

func (s *Service) handleMediaStored(ctx context.Context, data []byte) consume.Verdict {
	var m wadispatchv1.MediaStored
	if err := proto.Unmarshal(data, &m); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode MediaStored: %w", err))
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"wamid": m.GetWhatsappMessageId(), "messagePath": m.GetMessageDocId()})
	outcome, err := s.RecordMedia(ctx, &m)
	if err != nil {
		return verdictOf(log, err)
	}
	s.m.inbound.WithLabelValues(outcome).Inc()
	log.WithFields(logrus.Fields{"outcome": outcome, "failureReason": m.GetFailureReason()}).Info("driver's media outcome recorded")
	return consume.Verdict{Ack: true, Reason: outcome}
}

// RecordMedia writes where a driver's media ended on the reply it came
// with, in its enquiry or kept unmatched. Only a driver's reply document,
// the one the wamid became, takes it: a MediaStored cannot write anywhere
// else.
func (s *Service) RecordMedia(ctx context.Context, m *wadispatchv1.MediaStored) (string, error) {
	ref, err := dispatch.ParseReplyPath(m.GetMessageDocId())
	if err != nil {
		return "", invalid("media message_doc_id: %v", err)
	}
	if ref.DocID != dispatch.DriverReplyDocID(m.GetWhatsappMessageId()) {
		return "", invalid("media message_doc_id %q is not the reply of its wamid", dispatch.Clip(path.Base(m.GetMessageDocId()), 40))
	}
	if (m.GetUri() == "") == (m.GetFailureReason() == "") {
		return "", invalid("media: exactly one of uri and failure_reason is required")
	}
	written, found, err := s.replies.RecordMedia(ctx, ref.Path(), m)
	switch {
	case err != nil:
		return "", storeErr(ctx, err)
	case !found:
		return MediaNoReply, nil
	case !written:
		return MediaDuplicate, nil
	}
	return MediaRecorded, nil
}
