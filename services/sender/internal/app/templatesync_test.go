package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

type fakeAccounts []*wadispatchv1.TemplateAccount

func (f fakeAccounts) ListTemplateAccounts(context.Context, *wadispatchv1.ListTemplateAccountsRequest, ...grpc.CallOption) (*wadispatchv1.ListTemplateAccountsResponse, error) {
	return &wadispatchv1.ListTemplateAccountsResponse{Accounts: f}, nil
}

type fakeLister struct{ asked []whatsapp.Account }

func (f *fakeLister) ListTemplates(_ context.Context, a whatsapp.Account) ([]whatsapp.TemplateInfo, bool, error) {
	f.asked = append(f.asked, a)
	return []whatsapp.TemplateInfo{{ID: "1", Name: "eta_update", Language: "en_US", Category: "UTILITY", Status: "PAUSED", Parameters: []string{"eta"}}}, true, nil
}

type fakeTokenMap map[string]string

func (f fakeTokenMap) Token(_ context.Context, ref string) (whatsapp.Token, error) {
	if t, ok := f[ref]; ok {
		return whatsapp.NewToken(t), nil
	}
	return whatsapp.Token{}, ErrTokenUnavailable
}

type capturePublisher struct {
	topics []string
	msgs   []*wadispatchv1.TemplateSnapshot
	attrs  []map[string]string
}

func (c *capturePublisher) Publish(_ context.Context, topic string, data []byte, attrs map[string]string) error {
	var s wadispatchv1.TemplateSnapshot
	if err := proto.Unmarshal(data, &s); err != nil {
		return err
	}
	c.topics, c.msgs, c.attrs = append(c.topics, topic), append(c.msgs, &s), append(c.attrs, attrs)
	return nil
}

// One refresh lists each account's templates with its lease's token and
// API version (or the default) and publishes a snapshot per lease; an
// account whose token cannot be had fails alone.
func TestTemplateSyncPublishesASnapshotPerLease(t *testing.T) {
	accounts := fakeAccounts{
		{LeaseId: "l1", BusinessAccountId: "2001", TokenRef: "r1", ApiVersion: "v23.0"},
		{LeaseId: "l2", BusinessAccountId: "2002", TokenRef: "missing"},
		{LeaseId: "l3", BusinessAccountId: "2003", TokenRef: "r3"},
	}
	lister, pub, reg := &fakeLister{}, &capturePublisher{}, prometheus.NewRegistry()
	at := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	s := NewTemplateSync(TemplateSyncConfig{Interval: time.Minute, StatusTopic: "whatsapp-status-events", DefaultAPIVersion: "v22.0", PublishTimeout: time.Second},
		accounts, lister, fakeTokenMap{"r1": "t1", "r3": "t3"}, pub, func() time.Time { return at }, reg, logrus.NewEntry(log))
	err := s.SyncOnce(context.Background())
	if !errors.Is(err, ErrTokenUnavailable) {
		t.Fatalf("error %v, want the missing token's", err)
	}
	if len(lister.asked) != 2 || lister.asked[0].APIVersion != "v23.0" || lister.asked[1].APIVersion != "v22.0" || lister.asked[1].Token.Reveal() != "t3" {
		t.Fatalf("asked %+v", lister.asked)
	}
	if len(pub.msgs) != 2 || pub.msgs[0].GetLeaseId() != "l1" || pub.msgs[1].GetLeaseId() != "l3" || pub.topics[0] != "whatsapp-status-events" ||
		pub.attrs[0]["schema"] != "wadispatch.v1.TemplateSnapshot" || !pub.msgs[0].GetComplete() || !pub.msgs[0].GetTakenAt().AsTime().Equal(at) {
		t.Fatalf("published %v %v", pub.msgs, pub.attrs)
	}
	if e := pub.msgs[0].GetTemplates()[0]; e.GetName() != "eta_update" || e.GetStatus() != "PAUSED" || e.GetParameters()[0] != "eta" {
		t.Errorf("entry %v", e)
	}
	if testutil.ToFloat64(s.synced.WithLabelValues("published")) != 2 || testutil.ToFloat64(s.synced.WithLabelValues("failed")) != 1 {
		t.Error("sync counts")
	}
}
