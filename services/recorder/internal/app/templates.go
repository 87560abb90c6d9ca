package app

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// A lease's template registry, leasecompany/{leaseId}/whatsappTemplates/
// {name}__{language}: what WhatsApp says of each template of the lease's
// business account (status, category, declared parameters), kept where
// ingest reads it with the message before a template send
// (chatmessage.CheckTemplate), and the entry of each name
// (whatsappTemplateNames/{name}: its languages). The recorder is its only
// writer: from the template webhooks (TemplateEvent) here.

// TemplateUpdate is what one template webhook says of a template: its
// Status or Category after the event ("" for what it does not say).
type TemplateUpdate struct {
	Name, Language     string
	Status, Category   string
	TemplateID, Reason string
	Source             string
	At                 time.Time
}

// Templates is the default database as the registry needs it; the
// Firestore Store implements it.
type Templates interface {
	// ApplyTemplate applies u to the lease's registry entry of the
	// template, each of status and category only when u is later than
	// what set it (the latest event wins; a repeat changes nothing), and
	// adds the language to the name's entry; true when anything changed.
	ApplyTemplate(ctx context.Context, leaseID string, u TemplateUpdate) (bool, error)
}

var schemaTemplateEvent = string(proto.MessageName(&wadispatchv1.TemplateEvent{}))

func (s *Service) handleTemplateEvent(ctx context.Context, data []byte) consume.Verdict {
	var ev wadispatchv1.TemplateEvent
	if err := proto.Unmarshal(data, &ev); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode TemplateEvent: %w", err))
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"leaseIds": ev.GetLeaseIds(), "template": ev.GetName(),
		"language": ev.GetLanguage(), "templateStatus": ev.GetStatus(), "category": ev.GetCategory(), "source": ev.GetSource()})
	applied, err := s.RecordTemplateEvent(ctx, &ev)
	if err != nil {
		return verdictOf(log, err)
	}
	outcome, reason := "stale", "template_stale"
	if applied {
		outcome, reason = "recorded", "template_recorded"
	}
	s.m.templateEvents.WithLabelValues(outcome).Inc()
	log.WithField("outcome", reason).Info("template event recorded")
	return consume.Verdict{Ack: true, Reason: reason}
}

// RecordTemplateEvent applies a template webhook to the registry of each
// lease of its business account; it reports whether any entry changed.
func (s *Service) RecordTemplateEvent(ctx context.Context, ev *wadispatchv1.TemplateEvent) (bool, error) {
	if err := checkDocID("template", dispatch.TemplateDocID(ev.GetName(), ev.GetLanguage())); err != nil || ev.GetName() == "" || ev.GetLanguage() == "" {
		return false, invalid("template event: name and language must name a document")
	}
	if ev.GetStatus() == "" && ev.GetCategory() == "" {
		return false, invalid("template event: neither status nor category")
	}
	if len(ev.GetLeaseIds()) == 0 {
		return false, invalid("template event lease_ids: an event needs the leases of its business account")
	}
	u := TemplateUpdate{Name: ev.GetName(), Language: ev.GetLanguage(), Status: dispatch.Clip(ev.GetStatus(), 40), Category: dispatch.Clip(ev.GetCategory(), 40),
		TemplateID: dispatch.Clip(ev.GetTemplateId(), 64), Reason: dispatch.Clip(ev.GetReason(), 200), Source: dispatch.Clip(ev.GetSource(), 40), At: s.now()}
	if t := ev.GetTimestamp(); t.IsValid() {
		u.At = t.AsTime()
	}
	any := false
	for _, lease := range ev.GetLeaseIds() {
		if err := checkDocID("lease_ids", lease); err != nil {
			return false, invalid("template event %v", err)
		}
		applied, err := s.tmpl.ApplyTemplate(ctx, lease, u)
		if err != nil {
			return false, storeErr(ctx, err)
		}
		any = any || applied
	}
	return any, nil
}
