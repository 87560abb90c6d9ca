package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// TemplateAccounts lists the business accounts to refresh; the
// recorder's gRPC client satisfies it.
type TemplateAccounts interface {
	ListTemplateAccounts(ctx context.Context, in *wadispatchv1.ListTemplateAccountsRequest, opts ...grpc.CallOption) (*wadispatchv1.ListTemplateAccountsResponse, error)
}

// TemplateLister reads a business account's templates from Graph API;
// *whatsapp.Client satisfies it.
type TemplateLister interface {
	ListTemplates(ctx context.Context, a whatsapp.Account) ([]whatsapp.TemplateInfo, bool, error)
}

// TemplateSyncConfig configures the scheduled refresh of the leases'
// template registries.
type TemplateSyncConfig struct {
	// Interval between refreshes; 0 disables them.
	Interval time.Duration
	// StatusTopic is where the snapshots go, for the recorder.
	StatusTopic       string
	DefaultAPIVersion string
	PublishTimeout    time.Duration
}

// TemplateSync refreshes each lease's template registry from Graph API's
// message_templates: every Interval, for each account the recorder lists,
// it reads the templates with the lease's token and publishes one
// TemplateSnapshot per lease. An account that fails is logged and
// counted; the others are refreshed all the same.
type TemplateSync struct {
	cfg      TemplateSyncConfig
	accounts TemplateAccounts
	graph    TemplateLister
	tokens   TokenResolver
	pub      Publisher
	now      func() time.Time
	log      *logrus.Entry
	synced   *prometheus.CounterVec
}

// NewTemplateSync builds the refresh; its counter is registered in reg.
func NewTemplateSync(cfg TemplateSyncConfig, accounts TemplateAccounts, graph TemplateLister, tokens TokenResolver, pub Publisher, now func() time.Time, reg prometheus.Registerer, log *logrus.Entry) *TemplateSync {
	synced := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wadispatch_sender_template_syncs_total",
		Help: "Leases' template listings read from Graph API and published as TemplateSnapshots, by result (published, partial: more pages than one listing reads, failed).",
	}, []string{"result"})
	reg.MustRegister(synced)
	for _, r := range []string{"published", "partial", "failed"} {
		synced.WithLabelValues(r)
	}
	return &TemplateSync{cfg: cfg, accounts: accounts, graph: graph, tokens: tokens, pub: pub, now: now, log: log, synced: synced}
}

// Run refreshes at once and then every Interval until ctx ends.
func (s *TemplateSync) Run(ctx context.Context) error {
	if s.cfg.Interval <= 0 {
		return nil
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("template refresh incomplete; the next one tries again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SyncOnce refreshes every account once; the error joins the accounts'
// failures.
func (s *TemplateSync) SyncOnce(ctx context.Context) error {
	resp, err := s.accounts.ListTemplateAccounts(ctx, &wadispatchv1.ListTemplateAccountsRequest{})
	if err != nil {
		return fmt.Errorf("list template accounts: %w", err)
	}
	var errs []error
	for _, a := range resp.GetAccounts() {
		log := s.log.WithFields(logrus.Fields{"leaseId": a.GetLeaseId(), "businessAccountId": a.GetBusinessAccountId()})
		n, complete, err := s.syncAccount(ctx, a)
		result := "published"
		switch {
		case err != nil:
			result = "failed"
			errs = append(errs, fmt.Errorf("lease %s: %w", a.GetLeaseId(), err))
			log.WithError(err).Warn("templates not refreshed")
		case !complete:
			result = "partial"
		}
		s.synced.WithLabelValues(result).Inc()
		if err == nil {
			log.WithFields(logrus.Fields{"templates": n, "complete": complete}).Info("templates refreshed")
		}
	}
	return errors.Join(errs...)
}

func (s *TemplateSync) syncAccount(ctx context.Context, a *wadispatchv1.TemplateAccount) (int, bool, error) {
	token, err := s.tokens.Token(ctx, a.GetTokenRef())
	if err != nil {
		return 0, false, fmt.Errorf("token: %w", err)
	}
	version := a.GetApiVersion()
	if version == "" {
		version = s.cfg.DefaultAPIVersion
	}
	takenAt := s.now()
	infos, complete, err := s.graph.ListTemplates(ctx, whatsapp.Account{BusinessAccountID: a.GetBusinessAccountId(), APIVersion: version, Token: token})
	if err != nil {
		return 0, false, fmt.Errorf("list templates: %w", err)
	}
	snap := TemplateSnapshot(a, infos, complete, takenAt)
	data, err := proto.Marshal(snap)
	if err != nil {
		return 0, false, fmt.Errorf("encode TemplateSnapshot: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	attrs := map[string]string{"schema": string(proto.MessageName(snap)), "leaseId": a.GetLeaseId()}
	if err := s.pub.Publish(pctx, s.cfg.StatusTopic, data, attrs); err != nil {
		return 0, false, fmt.Errorf("publish TemplateSnapshot: %w", err)
	}
	return len(infos), complete, nil
}

// TemplateSnapshot is the lease's snapshot of what Graph API listed.
func TemplateSnapshot(a *wadispatchv1.TemplateAccount, infos []whatsapp.TemplateInfo, complete bool, takenAt time.Time) *wadispatchv1.TemplateSnapshot {
	snap := &wadispatchv1.TemplateSnapshot{LeaseId: a.GetLeaseId(), BusinessAccountId: a.GetBusinessAccountId(), Complete: complete, TakenAt: timestamppb.New(takenAt)}
	for _, t := range infos {
		snap.Templates = append(snap.Templates, &wadispatchv1.TemplateSnapshotEntry{Name: t.Name, Language: t.Language, Category: t.Category,
			Status: t.Status, Parameters: t.Parameters, Id: t.ID})
	}
	return snap
}
