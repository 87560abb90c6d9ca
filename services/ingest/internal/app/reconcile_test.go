package app

import (
	"context"
	"errors"
	"iter"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/chatmessage"
)

// fakeRecent holds documents and records the ranges asked for.
type fakeRecent struct {
	docs   []RecentMessage
	err    error
	ranges [][2]time.Time
}

func (f *fakeRecent) Messages(_ context.Context, from, to time.Time) iter.Seq2[RecentMessage, error] {
	f.ranges = append(f.ranges, [2]time.Time{from, to})
	return func(yield func(RecentMessage, error) bool) {
		for _, d := range f.docs {
			if !yield(d, nil) {
				return
			}
		}
		if f.err != nil {
			yield(RecentMessage{}, f.err)
		}
	}
}

func TestPending(t *testing.T) {
	for status, want := range map[any]bool{
		nil: true, "": true, "draft": true, int64(3): true,
		"SENDING": false, "SENT": false, "DELIVERED": false, "READ": false, "FAILED": false, "UNKNOWN": false,
	} {
		fields := map[string]any{"message": "hi"}
		if status != nil {
			fields["status"] = status
		}
		if got := pending(fields); got != want {
			t.Errorf("status %v: pending %v, want %v", status, got, want)
		}
	}
}

func recentDoc(id string, fields map[string]any) RecentMessage {
	base := map[string]any{"message": "Your van is ready", "type": "text", "driverMobileNumber": "+447911123456", "createdBy": "user-7"}
	for k, v := range fields {
		base[k] = v
	}
	return RecentMessage{
		Path:   "projects/p/databases/(default)/documents/leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + id,
		Stored: StoredMessage{Exists: true, CreateTime: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC), Fields: base},
	}
}

// A pass hands each document without pipeline status to the event path:
// a valid one is published, one the V-Customer can correct refused, a
// driver's left alone; a document with a status is not looked at, and one
// handed on is not handed on again by the next pass.
func TestReconcilePass(t *testing.T) {
	tasks, refusals := &fakeTasks{}, &fakeRefusals{}
	in, m := newTestIngesterRefusing(fakeLeases{cfg: usableConfig}, fakeMessages{}, tasks, refusals)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	in.now = func() time.Time { return now }
	recent := &fakeRecent{docs: []RecentMessage{
		recentDoc("lost", nil),
		recentDoc("bad-number", map[string]any{"driverMobileNumber": "12345"}),
		recentDoc("reply", map[string]any{"source": "driver"}),
		recentDoc("claimed", map[string]any{"status": "SENDING"}),
		recentDoc("refused-before", map[string]any{"status": "FAILED", "driverMobileNumber": "12345"}),
		{Path: "projects/p/databases/(default)/documents/other/x/chatMessages/y", Stored: StoredMessage{Exists: true, Fields: map[string]any{"type": "text"}}},
	}}
	log := logrus.NewEntry(logrus.New())
	log.Logger.SetLevel(logrus.PanicLevel)
	r := NewReconciler(in, recent, ReconcileConfig{Interval: time.Minute, Grace: 5 * time.Minute, Window: time.Hour}, log)

	report, err := r.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (PassReport{ReconcilePublished: 1, ReconcileRefused: 1, ReconcileSkipped: 2}); !maps.Equal(report, want) {
		t.Errorf("report %v, want %v", report, want)
	}
	if got := recent.ranges[0]; !got[0].Equal(now.Add(-time.Hour)) || !got[1].Equal(now.Add(-5*time.Minute)) {
		t.Errorf("range %v, want the window up to the grace period", got)
	}
	if len(tasks.published) != 1 || tasks.published[0].GetMessageId() != "lost" || tasks.published[0].GetEventId() != "reconcile-1795608000000" ||
		!tasks.published[0].GetCreatedAt().AsTime().Equal(recentDoc("x", nil).Stored.CreateTime) {
		t.Errorf("tasks %v", tasks.published)
	}
	if len(refusals.published) != 1 || refusals.published[0].GetMessageId() != "bad-number" || refusals.published[0].GetReason() != chatmessage.ReasonInvalidData {
		t.Errorf("refusals %v", refusals.published)
	}
	if got := testutil.ToFloat64(m.reconciled.WithLabelValues(ReconcilePublished)); got != 1 {
		t.Errorf("reconciled{published} = %v", got)
	}

	report, err = r.Pass(context.Background())
	if err != nil || len(report) != 0 || len(tasks.published) != 1 || len(refusals.published) != 1 {
		t.Errorf("second pass: %v %v, %d tasks, %d refusals: want nothing again", report, err, len(tasks.published), len(refusals.published))
	}
	// Out of the window, a document is forgotten.
	now = now.Add(2 * time.Hour)
	if report, _ = r.Pass(context.Background()); report[ReconcilePublished] != 1 {
		t.Errorf("a pass after the window: %v", report)
	}
	if got := testutil.ToFloat64(m.reconcilePasses.WithLabelValues("complete")); got != 3 {
		t.Errorf("passes{complete} = %v", got)
	}
}

// A transient failure leaves the document for the next pass; a failed
// query fails the pass.
func TestReconcileRetries(t *testing.T) {
	tasks := &fakeTasks{err: &DependencyError{Dep: DepPubSub, Err: errors.New("unavailable")}}
	in, m := newTestIngesterRefusing(fakeLeases{cfg: usableConfig}, fakeMessages{}, tasks, &fakeRefusals{})
	recent := &fakeRecent{docs: []RecentMessage{recentDoc("lost", nil)}}
	log := logrus.NewEntry(logrus.New())
	log.Logger.SetLevel(logrus.PanicLevel)
	r := NewReconciler(in, recent, ReconcileConfig{Interval: time.Minute, Grace: time.Minute, Window: time.Hour}, log)
	if report, err := r.Pass(context.Background()); err != nil || report[ReconcileRetry] != 1 {
		t.Fatalf("%v %v", report, err)
	}
	tasks.err = nil
	if report, err := r.Pass(context.Background()); err != nil || report[ReconcilePublished] != 1 {
		t.Fatalf("next pass: %v %v", report, err)
	}
	recent.err = &DependencyError{Dep: DepFirestore, Err: errors.New("FailedPrecondition: The query requires an index")}
	if _, err := r.Pass(context.Background()); err == nil {
		t.Fatal("a failed query passed")
	}
	if got := testutil.ToFloat64(m.reconcilePasses.WithLabelValues("failed")); got != 1 {
		t.Errorf("passes{failed} = %v", got)
	}
}
