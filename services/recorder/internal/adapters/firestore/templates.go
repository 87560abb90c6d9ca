package firestore

import (
	"context"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/dispatch"
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
