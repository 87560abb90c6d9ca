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
	// Parameters, when HasParameters (a snapshot's entry), replace the
	// entry's declared parameters: only Graph API's listing has them.
	Parameters    []string
	HasParameters bool
}

// TemplateKey names a registry entry, with its status as recorded.
type TemplateKey struct {
	Name, Language, Status string
}

// Templates is the default database as the registry needs it; the
// Firestore Store implements it.
type Templates interface {
	// ApplyTemplate applies u to the lease's registry entry of the
	// template, each of status and category only when u is later than
	// what set it (the latest event wins; a repeat changes nothing), and
	// adds the language to the name's entry; true when anything changed.
	ApplyTemplate(ctx context.Context, leaseID string, u TemplateUpdate) (bool, error)
	// TemplateEntries lists the lease's registry entries.
	TemplateEntries(ctx context.Context, leaseID string) ([]TemplateKey, error)
	// TemplateAccounts lists the leases whose usable WhatsApp
	// configuration names a business account, in lease id order.
	TemplateAccounts(ctx context.Context) ([]*wadispatchv1.TemplateAccount, error)
}

// templateDeleted is the status of a template a complete snapshot no
// longer lists (Graph API's own word for a deleted template).
const templateDeleted = "DELETED"

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

var schemaTemplateSnapshot = string(proto.MessageName(&wadispatchv1.TemplateSnapshot{}))

func (s *Service) handleTemplateSnapshot(ctx context.Context, data []byte) consume.Verdict {
	var snap wadispatchv1.TemplateSnapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode TemplateSnapshot: %w", err))
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"leaseId": snap.GetLeaseId(), "templates": len(snap.GetTemplates()), "complete": snap.GetComplete()})
	changed, err := s.RecordTemplateSnapshot(ctx, &snap)
	if err != nil {
		return verdictOf(log, err)
	}
	outcome := "snapshot_unchanged"
	if changed > 0 {
		outcome = "snapshot_recorded"
	}
	s.m.templateEvents.WithLabelValues(outcome).Inc()
	log.WithFields(logrus.Fields{"outcome": outcome, "changed": changed}).Info("template snapshot recorded")
	return consume.Verdict{Ack: true, Reason: outcome}
}

// RecordTemplateSnapshot writes a lease's templates as Graph API listed
// them into its registry: each entry's parameters, and its status and
// category unless a later webhook set them; for a complete snapshot, the
// entries it does not list are marked DELETED. It reports how many
// entries changed.
func (s *Service) RecordTemplateSnapshot(ctx context.Context, snap *wadispatchv1.TemplateSnapshot) (int, error) {
	lease := snap.GetLeaseId()
	if err := checkDocID("lease_id", lease); err != nil {
		return 0, invalid("template snapshot %v", err)
	}
	at := s.now()
	if t := snap.GetTakenAt(); t.IsValid() {
		at = t.AsTime()
	}
	listed := map[TemplateKey]bool{}
	var updates []TemplateUpdate
	for _, t := range snap.GetTemplates() {
		if checkDocID("template", dispatch.TemplateDocID(t.GetName(), t.GetLanguage())) != nil || t.GetName() == "" || t.GetLanguage() == "" {
			continue // not a template ingest could look up either
		}
		listed[TemplateKey{Name: t.GetName(), Language: t.GetLanguage()}] = true
		updates = append(updates, TemplateUpdate{Name: t.GetName(), Language: t.GetLanguage(), Status: dispatch.Clip(t.GetStatus(), 40),
			Category: dispatch.Clip(t.GetCategory(), 40), TemplateID: dispatch.Clip(t.GetId(), 64), Source: "message_templates", At: at,
			Parameters: t.GetParameters(), HasParameters: true})
	}
	if snap.GetComplete() {
		existing, err := s.tmpl.TemplateEntries(ctx, lease)
		if err != nil {
			return 0, storeErr(ctx, err)
		}
		updates = append(updates, deletedTemplates(existing, listed, at)...)
	}
	changed := 0
	for _, u := range updates {
		applied, err := s.tmpl.ApplyTemplate(ctx, lease, u)
		if err != nil {
			return changed, storeErr(ctx, err)
		}
		if applied {
			changed++
		}
	}
	return changed, nil
}

// deletedTemplates are the updates marking DELETED the registry's entries
// a complete snapshot does not list (those marked already stay as they are).
func deletedTemplates(existing []TemplateKey, listed map[TemplateKey]bool, at time.Time) []TemplateUpdate {
	var out []TemplateUpdate
	for _, k := range existing {
		if k.Status == templateDeleted || listed[TemplateKey{Name: k.Name, Language: k.Language}] {
			continue
		}
		out = append(out, TemplateUpdate{Name: k.Name, Language: k.Language, Status: templateDeleted, Source: "message_templates", At: at})
	}
	return out
}

// ListTemplateAccounts implements wadispatchv1.RecorderServer.
func (s *Service) ListTemplateAccounts(ctx context.Context, _ *wadispatchv1.ListTemplateAccountsRequest) (*wadispatchv1.ListTemplateAccountsResponse, error) {
	accounts, err := s.tmpl.TemplateAccounts(ctx)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	return &wadispatchv1.ListTemplateAccountsResponse{Accounts: accounts}, nil
}
