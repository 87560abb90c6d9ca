package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Template webhooks reach each lease's registry as ingest reads it: the
// latest event's status and the latest category win whatever order they
// come in, a repeat changes nothing, and the name's entry lists the
// language.
func TestTemplateEventsLatestWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	ev := func(status, category string, at time.Time) *wadispatchv1.TemplateEvent {
		return &wadispatchv1.TemplateEvent{BusinessAccountId: "102290129340398", LeaseIds: []string{"l1", "l2"}, TemplateId: "594425479261596",
			Name: "eta_update", Language: "en_US", Status: status, Category: category, Timestamp: timestamppb.New(at), Source: "message_template_status_update"}
	}
	for i, c := range []struct {
		ev   *wadispatchv1.TemplateEvent
		want string
	}{
		{ev("PAUSED", "UTILITY", base.Add(2*time.Second)), "template_recorded"},
		{ev("APPROVED", "", base.Add(time.Second)), "template_stale"},
		{ev("PAUSED", "UTILITY", base.Add(2*time.Second)), "template_stale"},
		{ev("", "MARKETING", base.Add(3*time.Second)), "template_recorded"},
		{ev("", "UTILITY", base.Add(time.Second)), "template_stale"},
	} {
		if v := e.handle(t, c.ev); !v.Ack || v.Reason != c.want {
			t.Errorf("event %d: %+v, want %s", i, v, c.want)
		}
	}
	for _, lease := range []string{"l1", "l2"} {
		snap, err := e.db.Doc(dispatch.TemplatePath(lease, "eta_update", "en_US")).Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := chatmessage.ParseTemplate(snap.Data())
		if got.Status != "PAUSED" || got.Category != chatmessage.TemplateMarketing || got.Name != "eta_update" || got.Language != "en_US" {
			t.Errorf("%s: entry %+v", lease, got)
		}
		names, err := e.db.Doc(dispatch.TemplateNamePath(lease, "eta_update")).Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if l := chatmessage.TemplateLanguages(names.Data()); len(l) != 1 || l[0] != "en_US" {
			t.Errorf("%s: languages %v", lease, l)
		}
	}
	if v := e.handle(t, &wadispatchv1.TemplateEvent{LeaseIds: []string{"l1"}, Name: "a/b", Language: "en", Status: "PAUSED"}); !v.Poison || v.Reason != "invalid" {
		t.Errorf("a name that is no document id: %+v", v)
	}
}

// A snapshot writes each listed template's parameters, status and
// category, keeps a later webhook's status, and, complete, marks DELETED
// what it no longer lists; ListTemplateAccounts names the leases with a
// business account.
func TestTemplateSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for id, cfg := range map[string]map[string]any{
		"l1": {"phoneNumberId": "1001", "tokenRef": "t1", "businessAccountId": "2001", "apiVersion": "v23.0"},
		"l2": {"phoneNumberId": "1002", "tokenRef": "t2"},
		"l3": {"phoneNumberId": "1003", "tokenRef": "t3", "businessAccountId": int64(2003)},
	} {
		if _, err := e.db.Doc("leasecompany/"+id).Set(ctx, map[string]any{"whatsappConfig": cfg}); err != nil {
			t.Fatal(err)
		}
	}
	accounts, err := e.rec.ListTemplateAccounts(ctx, &wadispatchv1.ListTemplateAccountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := accounts.GetAccounts(); len(got) != 2 || got[0].GetLeaseId() != "l1" || got[0].GetBusinessAccountId() != "2001" || got[0].GetTokenRef() != "t1" ||
		got[0].GetApiVersion() != "v23.0" || got[1].GetBusinessAccountId() != "2003" {
		t.Fatalf("accounts %v", got)
	}
	// A webhook paused eta_update after the snapshot below was taken.
	e.handle(t, &wadispatchv1.TemplateEvent{LeaseIds: []string{"l1"}, Name: "eta_update", Language: "en_US", Status: "PAUSED", Timestamp: timestamppb.New(base.Add(time.Minute))})
	e.handle(t, &wadispatchv1.TemplateEvent{LeaseIds: []string{"l1"}, Name: "old_one", Language: "en_US", Status: "APPROVED", Timestamp: timestamppb.New(base)})
	snap := &wadispatchv1.TemplateSnapshot{LeaseId: "l1", BusinessAccountId: "2001", Complete: true, TakenAt: timestamppb.New(base.Add(30 * time.Second)),
		Templates: []*wadispatchv1.TemplateSnapshotEntry{
			{Name: "eta_update", Language: "en_US", Category: "UTILITY", Status: "APPROVED", Parameters: []string{"driver_name", "eta"}},
			{Name: "welcome", Language: "de", Category: "MARKETING", Status: "APPROVED"},
		}}
	if v := e.handle(t, snap); !v.Ack || v.Reason != "snapshot_recorded" {
		t.Fatalf("snapshot: %+v", v)
	}
	entry := func(name, lang string) *chatmessage.Template {
		s, err := e.db.Doc(dispatch.TemplatePath("l1", name, lang)).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return chatmessage.ParseTemplate(s.Data())
	}
	if got := entry("eta_update", "en_US"); got.Status != "PAUSED" || got.Category != "UTILITY" || fmt.Sprint(got.Parameters) != "[driver_name eta]" {
		t.Errorf("eta_update %+v", got)
	}
	if got := entry("welcome", "de"); got.Status != "APPROVED" || got.Category != chatmessage.TemplateMarketing || len(got.Parameters) != 0 {
		t.Errorf("welcome %+v", got)
	}
	if got := entry("old_one", "en_US"); got.Status != "DELETED" {
		t.Errorf("old_one %+v", got)
	}
	// The same snapshot again changes nothing.
	if v := e.handle(t, snap); !v.Ack || v.Reason != "snapshot_unchanged" {
		t.Fatalf("repeated snapshot: %+v", v)
	}
}
