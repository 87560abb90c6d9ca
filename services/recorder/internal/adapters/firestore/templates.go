package firestore

import (
	"context"
	"slices"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// Fields of a template registry entry (dispatch.TemplatePath) beside
// those ingest reads: when its status and its category were last set.
const (
	fTemplateStatusAt   = "statusAt"
	fTemplateCategoryAt = "categoryAt"
)

// ApplyTemplate implements app.Templates in one transaction on the entry:
// status and category each keep the latest event's; the name's entry
// gains the language in the same commit.
func (s *Store) ApplyTemplate(ctx context.Context, leaseID string, u app.TemplateUpdate) (bool, error) {
	doc := s.db.Doc(dispatch.TemplatePath(leaseID, u.Name, u.Language))
	name := s.db.Doc(dispatch.TemplateNamePath(leaseID, u.Name))
	applied := false
	err := s.db.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		applied = false
		snap, err := tx.Get(doc)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		data := map[string]any{
			dispatch.TemplateName: u.Name, dispatch.TemplateLanguage: u.Language, "leaseId": leaseID,
		}
		if u.Status != "" && later(snap, []string{fTemplateStatusAt}, u.At) {
			data[dispatch.TemplateStatus], data[fTemplateStatusAt], data["statusReason"] = u.Status, u.At, u.Reason
			applied = true
		}
		if u.Category != "" && later(snap, []string{fTemplateCategoryAt}, u.At) {
			data[dispatch.TemplateCategory], data[fTemplateCategoryAt] = u.Category, u.At
			applied = true
		}
		if u.HasParameters {
			params := make([]any, len(u.Parameters))
			for i, p := range u.Parameters {
				params[i] = p
			}
			if !snap.Exists() || !sameStrings(snap.Data()[dispatch.TemplateParameters], params) {
				data[dispatch.TemplateParameters] = params
				applied = true
			}
		}
		if !applied {
			return nil
		}
		if u.TemplateID != "" {
			data["templateId"] = u.TemplateID
		}
		data["source"], data[dispatch.TemplateUpdatedAt] = u.Source, firestore.ServerTimestamp
		if err := tx.Set(doc, data, firestore.MergeAll); err != nil {
			return err
		}
		return tx.Set(name, map[string]any{
			dispatch.TemplateName: u.Name, dispatch.TemplateLanguages: firestore.ArrayUnion(u.Language), dispatch.TemplateUpdatedAt: firestore.ServerTimestamp,
		}, firestore.MergeAll)
	})
	if err != nil {
		return false, unavailable("record template event", err)
	}
	return applied, nil
}

func sameStrings(v any, want []any) bool {
	got, ok := v.([]any)
	return ok && slices.Equal(got, want)
}

// TemplateEntries implements app.Templates.
func (s *Store) TemplateEntries(ctx context.Context, leaseID string) ([]app.TemplateKey, error) {
	snaps, err := s.db.Collection("leasecompany").Doc(leaseID).Collection("whatsappTemplates").
		Select(dispatch.TemplateName, dispatch.TemplateLanguage, dispatch.TemplateStatus).Documents(ctx).GetAll()
	if err != nil {
		return nil, unavailable("list template registry", err)
	}
	out := make([]app.TemplateKey, 0, len(snaps))
	for _, snap := range snaps {
		t := chatmessage.ParseTemplate(snap.Data())
		out = append(out, app.TemplateKey{Name: t.Name, Language: t.Language, Status: t.Status})
	}
	return out, nil
}

// TemplateAccounts implements app.Templates with one read of the leases'
// configurations (a lease document's other fields are not read).
func (s *Store) TemplateAccounts(ctx context.Context) ([]*wadispatchv1.TemplateAccount, error) {
	snaps, err := s.db.Collection("leasecompany").Select("whatsappConfig").OrderBy(firestore.DocumentID, firestore.Asc).Documents(ctx).GetAll()
	if err != nil {
		return nil, unavailable("list leases' business accounts", err)
	}
	var out []*wadispatchv1.TemplateAccount
	for _, snap := range snaps {
		cfg, err := chatmessage.ParseWhatsAppConfig(snap.Data(), chatmessage.ConfigDefaults{})
		if err != nil || cfg.BusinessAccountID == "" {
			continue
		}
		out = append(out, &wadispatchv1.TemplateAccount{LeaseId: snap.Ref.ID, BusinessAccountId: cfg.BusinessAccountID, TokenRef: cfg.TokenRef, ApiVersion: cfg.APIVersion})
	}
	return out, nil
}
