package main

import (
	"context"
	"fmt"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/nyaruka/phonenumbers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/ops"
)

// run builds ingest's parts and serves until ctx ends or SIGTERM. The
// official clients find the emulators through FIRESTORE_EMULATOR_HOST and
// PUBSUB_EMULATOR_HOST.
func run(ctx context.Context, cfg spec, log *logrus.Entry) error {
	if !phonenumbers.GetSupportedRegions()[cfg.DefaultRegion] {
		return fmt.Errorf("INGEST_DEFAULT_REGION %q is not a region phone numbers are known for", cfg.DefaultRegion)
	}
	if cfg.HandlerTimeout <= 0 || cfg.LeaseCacheTTL < 0 || cfg.DedupeTTL <= 0 {
		return fmt.Errorf("INGEST_HANDLER_TIMEOUT and INGEST_DEDUPE_TTL must be positive, INGEST_LEASE_CACHE_TTL not negative")
	}
	fs, err := firestore.NewClientWithDatabase(ctx, cfg.Project, cfg.FirestoreDatabase)
	if err != nil {
		return fmt.Errorf("firestore client: %w", err)
	}
	defer fs.Close()
	ps, err := pubsub.NewClient(ctx, cfg.Project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer ps.Close()
	publisher := newTaskPublisher(ps, cfg)
	// Runs after the server has drained, so every accepted task is flushed.
	defer publisher.Stop()

	srv, err := ops.New(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	h := newIngester(fs, publisher, cfg, srv.Registry, log)
	srv.Handle("/", h)
	srv.Handle("/events/firestore", h)
	statusPublisher := newStatusPublisher(ps, cfg)
	defer statusPublisher.Stop()
	srv.Handle(WebhookPath, &webhookReceiver{
		appSecret: []byte(cfg.WebhookAppSecret), verifyToken: cfg.WebhookVerifyToken, publisher: statusPublisher,
		timeout: cfg.HandlerTimeout, metrics: newWebhookMetrics(srv.Registry), log: log.WithField("endpoint", WebhookPath),
	})
	log.WithFields(logrus.Fields{
		"addr": srv.Addr(), "database": cfg.FirestoreDatabase, "topic": cfg.TasksTopic, "defaultRegion": cfg.DefaultRegion,
		"statusTopic": cfg.StatusTopic, "webhookAppSecretSet": cfg.WebhookAppSecret != "", "webhookVerifyTokenSet": cfg.WebhookVerifyToken != "",
	}).Info("ingest starting")
	return lifecycle.Run(ctx, func(ctx context.Context) error { return srv.Run(ctx, cfg.ShutdownGrace) })
}

// newTaskPublisher publishes tasks in order per ordering key (the driver's
// number), giving up on a publish after the handler's timeout.
func newTaskPublisher(ps *pubsub.Client, cfg spec) *pubsub.Publisher {
	p := ps.Publisher(cfg.TasksTopic)
	p.EnableMessageOrdering = true
	p.PublishSettings.Timeout = cfg.HandlerTimeout
	return p
}

func newIngester(fs *firestore.Client, publisher *pubsub.Publisher, cfg spec, reg prometheus.Registerer, log *logrus.Entry) *ingester {
	return &ingester{
		fs:        fs,
		publisher: publisher,
		leases: newLeaseConfigs(fs, chatmessage.ConfigDefaults{
			APIVersion: cfg.WhatsAppAPIVersion, TemplateLanguage: cfg.TemplateLanguage,
		}, cfg.LeaseCacheTTL, log),
		dedupe:   newDedupe(cfg.DedupeTTL),
		database: cfg.FirestoreDatabase,
		region:   cfg.DefaultRegion,
		timeout:  cfg.HandlerTimeout,
		metrics:  newMetrics(reg),
		log:      log,
	}
}
