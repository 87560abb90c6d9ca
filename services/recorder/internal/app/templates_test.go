package app_test

import (
	"context"
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
