package adapters

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/firestoretest"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

const project = "wadispatch-test"

func emulatorClient(t *testing.T, indexes map[string]*firestoreemu.IndexConfig) (*firestore.Client, *firestoretest.Emulator) {
	t.Helper()
	emu := firestoretest.Start(t, project, firestoreemu.Options{Indexes: indexes})
	fs, err := firestore.NewClient(context.Background(), emu.Project, emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	return fs, emu
}

func chatPath(lease, id string) string {
	return "leasecompany/" + lease + "/enquiries/e1/whatsapp/messages/chatMessages/" + id
}

// The reconciler's query runs under the deployed indexes, pages through
// the range in timestamp order and keeps to its bounds: from included, to
// excluded; documents without the field or of another type are not found.
func TestRecentMessagesPagesThroughTheRange(t *testing.T) {
	fs, emu := emulatorClient(t, firestoreemu.IndexesForTest(t, "(default)", chart.FirestoreIndexes))
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	put := func(path string, fields map[string]any) {
		t.Helper()
		if _, err := fs.Doc(path).Set(ctx, fields); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := range 7 {
		path := chatPath(fmt.Sprintf("l%d", i%2), fmt.Sprintf("m%d", i))
		typ := "text"
		switch i % 4 {
		case 0:
			typ = "template"
		case 1:
			typ = "interactive"
		case 2:
			typ = "image" // media messages are reconciled too
		}
		put(path, map[string]any{"type": typ, "createdAt": t0.Add(time.Duration(i) * time.Minute), "message": "hi"})
		if i < 6 {
			want = append(want, path)
		}
	}
	put(chatPath("l0", "no-time"), map[string]any{"type": "text", "message": "hi"})
	put(chatPath("l0", "odd-type"), map[string]any{"type": "sticker", "createdAt": t0.Add(time.Minute)})
	put(chatPath("l0", "before"), map[string]any{"type": "text", "createdAt": t0.Add(-time.Nanosecond * 1000)})

	r := NewRecentMessages(fs, "createdAt")
	r.pageSize = 2
	var got []string
	for m, err := range r.Messages(ctx, t0, t0.Add(6*time.Minute)) {
		if err != nil {
			t.Fatal(err)
		}
		if !m.Stored.Exists || m.Stored.CreateTime.IsZero() || m.Stored.Fields["message"] != "hi" {
			t.Errorf("%s stored as %+v", m.Path, m.Stored)
		}
		got = append(got, m.Path)
	}
	if len(got) != len(want) {
		t.Fatalf("found %d documents %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != "projects/"+emu.Project+"/databases/(default)/documents/"+want[i] {
			t.Errorf("document %d: %s, want %s", i, got[i], want[i])
		}
	}
}

// Without the index declared, Firestore (and the emulator) refuse the
// query: the reconciler's pass fails, it does not find nothing.
func TestRecentMessagesNeedTheIndex(t *testing.T) {
	fs, emu := emulatorClient(t, map[string]*firestoreemu.IndexConfig{"(default)": nil})
	emu.SkipOnGoogle(t, "it serves queries no index serves")
	for _, err := range NewRecentMessages(fs, "createdAt").Messages(context.Background(), time.Now().Add(-time.Hour), time.Now()) {
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("query without its index: %v, want FailedPrecondition", err)
		}
		return
	}
	t.Fatal("the query yielded nothing, not even its refusal")
}

// A business number finds the leases whose configuration names it,
// stored as a string or as an integer, in id order; a number no lease has
// finds none, with the reason. Served under the deployed indexes.
func TestBusinessNumberFindsItsLeases(t *testing.T) {
	fs, _ := emulatorClient(t, firestoreemu.IndexesForTest(t, "(default)", chart.FirestoreIndexes))
	ctx := context.Background()
	for id, number := range map[string]any{"lease-a": "1001", "lease-b": int64(1002), "lease-d": "1003", "lease-c": "1003"} {
		if _, err := fs.Doc("leasecompany/"+id).Set(ctx, map[string]any{
			"whatsappConfig": map[string]any{"phoneNumberId": number, "tokenRef": "token-" + id},
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Named, but without a token: not usable, so not the number's.
	if _, err := fs.Doc("leasecompany/lease-e").Set(ctx, map[string]any{"whatsappConfig": map[string]any{"phoneNumberId": "1001"}}); err != nil {
		t.Fatal(err)
	}
	leases := NewLeaseConfigs(fs, chatmessage.ConfigDefaults{APIVersion: "v23.0"}, time.Minute, time.Now, logrus.NewEntry(logrus.New()))
	for number, want := range map[string]app.NumberLeases{
		"1001": {LeaseIDs: []string{"lease-a"}},
		"1002": {LeaseIDs: []string{"lease-b"}},
		"1003": {LeaseIDs: []string{"lease-c", "lease-d"}},
		"1004": {Problem: app.NumberUnknown},
	} {
		got, err := leases.BusinessNumber(ctx, number)
		if err != nil {
			t.Fatalf("%s: %v", number, err)
		}
		if fmt.Sprint(got.LeaseIDs) != fmt.Sprint(want.LeaseIDs) || got.Problem != want.Problem {
			t.Errorf("%s: %+v, want %+v", number, got, want)
		}
		if len(want.LeaseIDs) > 0 && (got.Config.PhoneNumberID != number || got.Config.TokenRef != "token-"+want.LeaseIDs[0] || got.Config.APIVersion != "v23.0") {
			t.Errorf("%s: configuration %+v", number, got.Config)
		}
	}
}

// The message and the driver's record come back from one read; a driver
// without a record has none, and a missing message is not an error.
func TestMessageAndDriverRecord(t *testing.T) {
	fs, _ := emulatorClient(t, nil)
	ctx := context.Background()
	rec := "leasecompany/l1/whatsappDrivers/+447911123401"
	if _, err := fs.Doc(chatPath("l1", "m1")).Set(ctx, map[string]any{"message": "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Doc(rec).Set(ctx, map[string]any{"optedOut": true}); err != nil {
		t.Fatal(err)
	}
	docs := NewDocuments(fs, 0, time.Now)
	got, err := docs.MessageAndDriver(ctx, chatPath("l1", "m1"), app.Companions{DriverRecord: rec})
	if err != nil || !got.Exists || got.Fields["message"] != "hi" || got.DriverRecordPath != rec || got.DriverRecord["optedOut"] != true {
		t.Fatalf("%+v %v", got, err)
	}
	got, err = docs.MessageAndDriver(ctx, chatPath("l1", "m2"), app.Companions{DriverRecord: "leasecompany/l1/whatsappDrivers/+447911123402"})
	if err != nil || got.Exists || got.DriverRecord != nil {
		t.Fatalf("missing message and record: %+v %v", got, err)
	}
	if r, err := docs.DriverRecord(ctx, rec); err != nil || r["optedOut"] != true {
		t.Fatalf("DriverRecord: %v %v", r, err)
	}
}

// The template's registry entries come back in the same read as the
// message and the driver's record; an entry that does not exist is nil,
// whichever of them it is.
func TestMessageAndTemplateRegistry(t *testing.T) {
	fs, _ := emulatorClient(t, nil)
	ctx := context.Background()
	entry, name := dispatch.TemplatePath("l1", "eta_update", "en_US"), dispatch.TemplateNamePath("l1", "eta_update")
	for path, fields := range map[string]map[string]any{
		chatPath("l1", "m1"): {"message": "", "type": "template"},
		entry:                {"status": "PAUSED", "parameters": []any{"eta"}},
		name:                 {"languages": []any{"en_US"}},
	} {
		if _, err := fs.Doc(path).Set(ctx, fields); err != nil {
			t.Fatal(err)
		}
	}
	docs := NewDocuments(fs, 0, time.Now)
	rec := "leasecompany/l1/whatsappDrivers/+447911123401"
	got, err := docs.MessageAndDriver(ctx, chatPath("l1", "m1"), app.Companions{DriverRecord: rec, Template: entry, TemplateName: name})
	if err != nil || !got.Exists || got.DriverRecord != nil || got.TemplatePath != entry || got.Template["status"] != "PAUSED" ||
		got.TemplateNamePath != name || got.TemplateName["languages"] == nil {
		t.Fatalf("%+v %v", got, err)
	}
	got, err = docs.MessageAndDriver(ctx, chatPath("l1", "m1"), app.Companions{Template: dispatch.TemplatePath("l1", "eta_update", "de"), TemplateName: name})
	if err != nil || !got.Exists || got.Template != nil || got.TemplateName == nil {
		t.Fatalf("entry in another language: %+v %v", got, err)
	}
	e, n, err := docs.Template(ctx, entry, dispatch.TemplateNamePath("l1", "unseen"))
	if err != nil || e["status"] != "PAUSED" || n != nil {
		t.Fatalf("Template: %v %v %v", e, n, err)
	}
}

// A business account finds the leases whose configuration names it, as a
// business number does; an account no lease names finds none.
func TestBusinessAccountFindsItsLeases(t *testing.T) {
	fs, _ := emulatorClient(t, firestoreemu.IndexesForTest(t, "(default)", chart.FirestoreIndexes))
	ctx := context.Background()
	for id, account := range map[string]any{"lease-a": "2001", "lease-b": int64(2001), "lease-c": "2002"} {
		if _, err := fs.Doc("leasecompany/"+id).Set(ctx, map[string]any{
			"whatsappConfig": map[string]any{"phoneNumberId": "1001", "tokenRef": "token-" + id, "businessAccountId": account},
		}); err != nil {
			t.Fatal(err)
		}
	}
	leases := NewLeaseConfigs(fs, chatmessage.ConfigDefaults{APIVersion: "v23.0"}, time.Minute, time.Now, logrus.NewEntry(logrus.New()))
	for account, want := range map[string]app.NumberLeases{
		"2001": {LeaseIDs: []string{"lease-a", "lease-b"}},
		"2002": {LeaseIDs: []string{"lease-c"}},
		"2003": {Problem: app.NumberUnknown},
	} {
		got, err := leases.BusinessAccount(ctx, account)
		if err != nil {
			t.Fatalf("%s: %v", account, err)
		}
		if fmt.Sprint(got.LeaseIDs) != fmt.Sprint(want.LeaseIDs) || got.Problem != want.Problem {
			t.Errorf("%s: %+v, want %+v", account, got, want)
		}
	}
}
