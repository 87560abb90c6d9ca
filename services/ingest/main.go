// Command ingest receives Eventarc's CloudEvents for chat message documents
// created in Firestore, validates each message (pkg/firestoreevent,
// pkg/chatmessage) and publishes a SendTask to whatsapp-messages for the
// sender, or a Refusal the recorder writes on the document; a reconciler
// does the same for documents whose event never came. It also receives
// WhatsApp's webhooks and publishes their statuses and replies for the
// recorder. The use cases are internal/app.Ingester;
// internal/adapters connects them to Firestore, Pub/Sub and HTTP; this file
// wires them.
//
// Run `ingest -help-env` for its environment variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/nyaruka/phonenumbers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/ops"
	"github.com/visn/wadispatch/services/ingest/internal/adapters"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// spec is ingest's environment.
type spec struct {
	config.Service

	APIAddr            string        `envconfig:"INGEST_ADDR" default:":8081" desc:"CloudEvents (/ and /events/firestore) and the WhatsApp webhook (/whatsapp/webhook); HTTP_ADDR serves only probes and metrics"`
	FirestoreDatabase  string        `envconfig:"INGEST_FIRESTORE_DATABASE" default:"(default)" desc:"Firestore database holding leases, enquiries and messages"`
	TasksTopic         string        `envconfig:"INGEST_TASKS_TOPIC" default:"whatsapp-messages" desc:"Pub/Sub topic the SendTasks are published to"`
	ResultsTopic       string        `envconfig:"INGEST_RESULTS_TOPIC" default:"whatsapp-message-results" desc:"Pub/Sub topic the refusals of messages the V-Customer can correct (invalid data, no WhatsApp configuration) are published to, for the recorder to write on their documents"`
	DefaultRegion      string        `envconfig:"INGEST_DEFAULT_REGION" default:"GB" desc:"region (ISO 3166) assumed for driver numbers written without country code"`
	LeaseCacheTTL      time.Duration `envconfig:"INGEST_LEASE_CACHE_TTL" default:"30s" desc:"how long a lease's WhatsApp configuration is reused (a missing one: at most 5s)"`
	EnquiryCacheTTL    time.Duration `envconfig:"INGEST_ENQUIRY_CACHE_TTL" default:"30s" desc:"how long an enquiry's accountId and serviceUnitId are reused (a missing enquiry is read again)"`
	WhatsAppAPIVersion string        `envconfig:"INGEST_WHATSAPP_API_VERSION" default:"v23.0" desc:"Graph API version for leases whose configuration names none"`
	TemplateLanguage   string        `envconfig:"INGEST_TEMPLATE_LANGUAGE" default:"en_US" desc:"template language for leases whose configuration names none"`
	HandlerTimeout     time.Duration `envconfig:"INGEST_HANDLER_TIMEOUT" default:"8s" desc:"longest time one event may take (Firestore reads and the publish); past it the answer is 503, which Eventarc's event forwarder (it pulls the trigger's subscription and POSTs each event) retries: long enough for a slow read and a publish, short enough that a stuck dependency does not hold the forwarder's request"`
	DedupeTTL          time.Duration `envconfig:"INGEST_DEDUPE_TTL" default:"5m" desc:"how long a published event id is remembered to drop redeliveries"`
	WebhookReplayTTL   time.Duration `envconfig:"INGEST_WEBHOOK_REPLAY_TTL" default:"10m" desc:"how long a published webhook body is remembered: the same signed body again is answered 200 and not published"`

	ReconcileInterval  time.Duration `envconfig:"INGEST_RECONCILE_INTERVAL" default:"2m" desc:"how often the reconciler looks for chatMessages documents without pipeline state whose event never came, and handles them as the event would have (0: never). Safe on every replica"`
	ReconcileGrace     time.Duration `envconfig:"INGEST_RECONCILE_GRACE" default:"5m" desc:"how old (by INGEST_RECONCILE_TIME_FIELD) a document must be before the reconciler takes it: longer than an event normally takes to be handled and its send claimed"`
	ReconcileWindow    time.Duration `envconfig:"INGEST_RECONCILE_WINDOW" default:"1h" desc:"how far back the reconciler looks; each document in the window is read once per pass (window / interval reads per document and replica)"`
	ReconcileTimeField string        `envconfig:"INGEST_RECONCILE_TIME_FIELD" default:"createdAt" desc:"the timestamp field the web app writes on every chatMessages document (a Firestore timestamp), by which the reconciler finds recent ones; the composite index on (type, this field) must be declared (charts/wadispatch/firestore.indexes.json)"`

	MediaBuckets       []string `envconfig:"INGEST_MEDIA_BUCKETS" desc:"comma-separated Cloud Storage buckets a media message's object (media.uri) may be in; an object elsewhere is refused invalid_data (links are not affected)"`
	StatusTopic        string   `envconfig:"INGEST_STATUS_TOPIC" default:"whatsapp-status-events" desc:"Pub/Sub topic the WhatsApp webhooks' status events and driver replies are published to"`
	WebhookAppSecret   string   `envconfig:"INGEST_WEBHOOK_APP_SECRET" desc:"Meta app secret that signs webhook bodies (X-Hub-Signature-256); unset, webhook POSTs answer 503. Never logged"`
	WebhookVerifyToken string   `envconfig:"INGEST_WEBHOOK_VERIFY_TOKEN" desc:"token Meta's webhook verification handshake must present (hub.verify_token); unset, the handshake is refused. Never logged"`
}

func main() {
	var cfg spec
	lifecycle.Main("ingest", &cfg, func(ctx context.Context, log *logrus.Entry) error {
		return run(ctx, cfg, log)
	})
}

// run builds ingest's parts and serves until ctx ends or SIGTERM. The
// official clients find the emulators through FIRESTORE_EMULATOR_HOST and
// PUBSUB_EMULATOR_HOST.
func run(ctx context.Context, cfg spec, log *logrus.Entry) error {
	if err := cfg.check(); err != nil {
		return err
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
	// Both run after the server has drained, so every accepted message is flushed.
	tasks := adapters.NewTasks(ps, cfg.TasksTopic, cfg.HandlerTimeout)
	defer tasks.Stop()
	refusals := adapters.NewRefusals(ps, cfg.ResultsTopic, cfg.HandlerTimeout)
	defer refusals.Stop()
	events := adapters.NewEvents(ps, cfg.StatusTopic, cfg.HandlerTimeout)
	defer events.Stop()

	srv, err := ops.New(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	if cfg.Profiling {
		srv.ServeProfiles()
	}
	// CloudEvents and webhooks on a port of their own: callers reach it,
	// the metrics scraper reaches HTTP_ADDR, and neither reaches the other.
	api, err := ops.NewAPI(cfg.APIAddr)
	if err != nil {
		return err
	}
	p := newParts(cfg, fs, tasks, refusals, events, srv.Registry, log, time.Now)
	api.Handle("/", p.events)
	api.Handle("/events/firestore", p.events)
	api.Handle(adapters.WebhookPath, p.webhook)
	log.WithFields(logrus.Fields{
		"addr": api.Addr(), "opsAddr": srv.Addr(), "database": cfg.FirestoreDatabase, "topic": cfg.TasksTopic, "resultsTopic": cfg.ResultsTopic, "defaultRegion": cfg.DefaultRegion,
		"statusTopic": cfg.StatusTopic, "webhookAppSecretSet": cfg.WebhookAppSecret != "", "webhookVerifyTokenSet": cfg.WebhookVerifyToken != "",
		"reconcileInterval": cfg.ReconcileInterval.String(), "reconcileTimeField": cfg.ReconcileTimeField,
	}).Info("ingest starting")
	running := []lifecycle.Part{
		func(ctx context.Context) error { return srv.Run(ctx, cfg.ShutdownGrace) },
		func(ctx context.Context) error { return api.Run(ctx, cfg.ShutdownGrace) },
	}
	if p.reconciler != nil {
		running = append(running, p.reconciler.Run)
	}
	return lifecycle.Run(ctx, running...)
}

func (cfg spec) check() error {
	if !phonenumbers.GetSupportedRegions()[cfg.DefaultRegion] {
		return fmt.Errorf("INGEST_DEFAULT_REGION %q is not a region phone numbers are known for", cfg.DefaultRegion)
	}
	if cfg.HandlerTimeout <= 0 || cfg.LeaseCacheTTL < 0 || cfg.EnquiryCacheTTL < 0 || cfg.DedupeTTL <= 0 || cfg.WebhookReplayTTL <= 0 {
		return errors.New("INGEST_HANDLER_TIMEOUT, INGEST_DEDUPE_TTL and INGEST_WEBHOOK_REPLAY_TTL must be positive, INGEST_LEASE_CACHE_TTL and INGEST_ENQUIRY_CACHE_TTL not negative")
	}
	if cfg.ReconcileInterval < 0 {
		return errors.New("INGEST_RECONCILE_INTERVAL must not be negative (0 turns the reconciler off)")
	}
	if cfg.ReconcileInterval > 0 && (cfg.ReconcileGrace <= 0 || cfg.ReconcileWindow <= cfg.ReconcileGrace || cfg.ReconcileTimeField == "") {
		return errors.New("with the reconciler on, INGEST_RECONCILE_GRACE must be positive, INGEST_RECONCILE_WINDOW longer than it, and INGEST_RECONCILE_TIME_FIELD set")
	}
	return nil
}

// parts are ingest's endpoints and its reconciler, built but not running.
type parts struct {
	events, webhook http.Handler
	// reconciler is nil when INGEST_RECONCILE_INTERVAL is 0.
	reconciler *app.Reconciler
}

// newParts builds the application over Firestore and the publishers and
// returns its CloudEvents and webhook endpoints and its reconciler; now is
// the lease cache's clock.
func newParts(cfg spec, fs *firestore.Client, tasks app.Tasks, refusals app.Refusals, events app.Events, reg prometheus.Registerer, log *logrus.Entry, now func() time.Time) parts {
	leases := adapters.NewLeaseConfigs(fs, chatmessage.ConfigDefaults{
		APIVersion: cfg.WhatsAppAPIVersion, TemplateLanguage: cfg.TemplateLanguage,
	}, cfg.LeaseCacheTTL, now, log)
	webhookLog := log.WithField("endpoint", adapters.WebhookPath)
	docs := adapters.NewDocuments(fs, cfg.EnquiryCacheTTL, now)
	in := app.New(app.Config{
		Database:           cfg.FirestoreDatabase,
		Region:             cfg.DefaultRegion,
		Timeout:            cfg.HandlerTimeout,
		DedupeTTL:          cfg.DedupeTTL,
		WebhookReplayTTL:   cfg.WebhookReplayTTL,
		WebhookAppSecret:   []byte(cfg.WebhookAppSecret),
		WebhookVerifyToken: cfg.WebhookVerifyToken,
		MediaBuckets:       cfg.MediaBuckets,
	}, leases, docs, docs, tasks, refusals, events, app.NewMetrics(reg), log, webhookLog)
	p := parts{events: adapters.NewEventHandler(in, reg, log), webhook: adapters.NewWebhookHandler(in, reg, webhookLog)}
	if cfg.ReconcileInterval > 0 {
		p.reconciler = app.NewReconciler(in, adapters.NewRecentMessages(fs, cfg.ReconcileTimeField), app.ReconcileConfig{
			Interval: cfg.ReconcileInterval, Grace: cfg.ReconcileGrace, Window: cfg.ReconcileWindow,
		}, log.WithField("part", "reconciler"))
	}
	return p
}
