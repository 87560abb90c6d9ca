package app

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Schema attribute values of the messages the recorder consumes.
var (
	schemaSendResult  = string(proto.MessageName(&wadispatchv1.SendResult{}))
	schemaStatusEvent = string(proto.MessageName(&wadispatchv1.StatusEvent{}))
)

// HandleResult records a SendResult from whatsapp-message-results through
// RecordResult.
func (s *Service) HandleResult(ctx context.Context, m consume.Message) consume.Verdict {
	log := logging.WithContext(ctx, s.log).WithField("messagePath", m.Attributes["messagePath"])
	if m.Attributes["schema"] == schemaRefusal {
		// Ingest's refusals are outcomes of messages too (refusal.go).
		return s.handleRefusal(ctx, m.Data)
	}
	if sc := m.Attributes["schema"]; sc != "" && sc != schemaSendResult {
		return poison(log, "unknown_schema", fmt.Errorf("schema %q on the results topic", sc))
	}
	var r wadispatchv1.SendResult
	if err := proto.Unmarshal(m.Data, &r); err != nil {
		return poison(log, "undecodable", fmt.Errorf("decode SendResult: %w", err))
	}
	resp, err := s.RecordResult(ctx, &wadispatchv1.RecordResultRequest{Result: &r})
	if err != nil {
		return verdictOf(log, err)
	}
	if !resp.GetApplied() {
		return consume.Verdict{Ack: true, Reason: "duplicate"}
	}
	return consume.Verdict{Ack: true, Reason: "recorded"}
}

// statusHandlers maps the schema attribute of whatsapp-status-events to the
// handler of that payload. A schema without a handler is rejected.
func (s *Service) statusHandlers() map[string]func(context.Context, []byte) consume.Verdict {
	return map[string]func(context.Context, []byte) consume.Verdict{
		schemaStatusEvent:      s.handleStatusEvent,
		schemaInbound:          s.handleInbound,
		schemaMediaStored:      s.handleMediaStored,
		schemaPreference:       s.handlePreference,
		schemaTemplateEvent:    s.handleTemplateEvent,
		schemaTemplateSnapshot: s.handleTemplateSnapshot,
	}
}

// HandleStatusTopic handles a message of whatsapp-status-events, which
// carries more than one payload type, told apart by the schema attribute.
func (s *Service) HandleStatusTopic(ctx context.Context, m consume.Message) consume.Verdict {
	sc := m.Attributes["schema"]
	h, ok := s.statusHandlers()[sc]
	if !ok {
		return poison(logging.WithContext(ctx, s.log).WithField("schema", sc), "unknown_schema", fmt.Errorf("no handler for schema %q on the status events topic", sc))
	}
	return h(ctx, m.Data)
}

func (s *Service) handleStatusEvent(ctx context.Context, data []byte) consume.Verdict {
	var ev wadispatchv1.StatusEvent
	if err := proto.Unmarshal(data, &ev); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode StatusEvent: %w", err))
	}
	resp, err := s.ApplyStatus(ctx, &wadispatchv1.ApplyStatusRequest{Event: &ev})
	if err != nil {
		return verdictOf(logging.WithContext(ctx, s.log).WithField("wamid", ev.GetWhatsappMessageId()), err)
	}
	switch {
	case resp.GetApplied():
		return consume.Verdict{Ack: true, Reason: "applied"}
	case resp.GetKept():
		return consume.Verdict{Ack: true, Reason: "kept"}
	}
	return consume.Verdict{Ack: true, Reason: "ignored"}
}

func poison(log *logrus.Entry, reason string, err error) consume.Verdict {
	log.WithError(err).WithField("reason", reason).Error("poison message; nacking until the subscription dead-letters it")
	return consume.Verdict{Reason: reason, Poison: true}
}

// verdictOf classifies the error of a handled message.
func verdictOf(log *logrus.Entry, err error) consume.Verdict {
	switch status.Code(err) {
	case codes.InvalidArgument:
		return poison(log, "invalid", err)
	case codes.FailedPrecondition, codes.NotFound:
		// Decided and final (e.g. the message document is gone); a retry
		// would meet the same answer.
		log.WithError(err).Warn("message cannot be applied; acked")
		return consume.Verdict{Ack: true, Reason: "permanent"}
	case codes.Unavailable, codes.DeadlineExceeded:
		// Firestore (or the recorder's budget for it) did not answer: an
		// outage, which holds the message instead of spending its
		// delivery attempts.
		log.WithError(err).Warn("a dependency is unavailable; message held")
		return consume.Verdict{Reason: "unavailable", Unavailable: true}
	}
	log.WithError(err).Warn("transient failure; nacked for redelivery")
	return consume.Verdict{Reason: "transient"}
}
