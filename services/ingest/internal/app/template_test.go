package app

import (
	"context"
	"testing"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
)

// registryMessages serves the message, the driver's record and the
// template registry's entries from docs, by path, and counts the reads
// of entries not read with the message.
type registryMessages struct {
	msg        StoredMessage
	docs       map[string]map[string]any
	laterReads int
}

func (r *registryMessages) Message(context.Context, string) (StoredMessage, error) { return r.msg, nil }

func (r *registryMessages) MessageAndDriver(_ context.Context, _ string, with Companions) (StoredMessage, error) {
	s := r.msg
	s.DriverRecordPath, s.DriverRecord = with.DriverRecord, r.docs[with.DriverRecord]
	s.TemplatePath, s.Template = with.Template, r.docs[with.Template]
	s.TemplateNamePath, s.TemplateName = with.TemplateName, r.docs[with.TemplateName]
	return s, nil
}

func (r *registryMessages) DriverRecord(_ context.Context, path string) (map[string]any, error) {
	return r.docs[path], nil
}

func (r *registryMessages) Template(_ context.Context, path, namePath string) (map[string]any, map[string]any, error) {
	r.laterReads++
	return r.docs[path], r.docs[namePath], nil
}

// A template send is checked against the lease's registry, read with the
// message: a template not approved, in another language only or with other
// parameters is refused with its reason and no task; a marketing template
// to a driver who stopped them is refused opted_out; a template the
// registry has not seen is sent.
func TestHandleEventChecksTheTemplateRegistry(t *testing.T) {
	const driver = "+447911123456"
	entry := dispatch.TemplatePath("l1", "eta_update", "en_US")
	name := dispatch.TemplateNamePath("l1", "eta_update")
	record := dispatch.DriverRecordPath("l1", driver)
	approved := func(category string, params ...any) map[string]any {
		return map[string]any{"name": "eta_update", "language": "en_US", "category": category, "status": "APPROVED", "parameters": params}
	}
	for _, tc := range []struct {
		name   string
		docs   map[string]map[string]any
		reason string
		field  string
	}{
		{"unseen", nil, "", ""},
		{"approved", map[string]map[string]any{entry: approved("UTILITY", "driver_name")}, "", ""},
		{"paused", map[string]map[string]any{entry: {"status": "PAUSED", "category": "UTILITY", "parameters": []any{"driver_name"}}},
			chatmessage.ReasonTemplateNotApproved, "templateType"},
		{"another language only", map[string]map[string]any{name: {"languages": []any{"pt_BR"}}}, chatmessage.ReasonTemplateLanguage, "templateType"},
		{"other parameters", map[string]map[string]any{entry: approved("UTILITY", "driver_name", "plate")}, chatmessage.ReasonTemplateParameters, "payload"},
		{"marketing to a stopped driver", map[string]map[string]any{entry: approved("MARKETING", "driver_name"), record: {"optedOut": true}},
			chatmessage.ReasonOptedOut, "templateType"},
		{"utility to a stopped driver", map[string]map[string]any{entry: approved("UTILITY", "driver_name"), record: {"optedOut": true}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := eventarctest.Event{ID: "ev-t", Path: msgPath, Fields: eventarctest.Fields(map[string]any{
				"message": "", "type": "template", "templateType": "eta_update", "driverMobileNumber": driver,
				"createdBy": "user-7", "payload": map[string]any{"driver_name": "Ann"},
			})}.Binary("http://ingest/")
			ce, err := firestoreevent.ReadRequest(req)
			if err != nil {
				t.Fatal(err)
			}
			messages := &registryMessages{msg: storedAs(t, ce)[msgPath], docs: tc.docs}
			tasks, refusals := &fakeTasks{}, &fakeRefusals{}
			in, _ := newTestIngesterRefusing(fakeLeases{cfg: usableConfig}, messages, tasks, refusals)
			res := in.HandleEvent(context.Background(), ce)
			if messages.laterReads != 0 {
				t.Errorf("the registry was read %d times after the message", messages.laterReads)
			}
			if tc.reason == "" {
				if res.Outcome != OutcomePublished || len(tasks.published) != 1 {
					t.Fatalf("result %+v, want published", res)
				}
				return
			}
			if res.Outcome != OutcomeRejected || res.Reason != tc.reason || !res.Refused || len(tasks.published) != 0 {
				t.Fatalf("result %+v with %d tasks, want refused %s", res, len(tasks.published), tc.reason)
			}
			if r := refusals.published[0]; r.GetReason() != tc.reason || r.GetField() != tc.field || r.GetDetail() == "" {
				t.Errorf("refusal %v", r)
			}
		})
	}
}
