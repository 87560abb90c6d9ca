// Command sender consumes SendTasks from whatsapp-messages, claims each send
// through the recorder, calls the WhatsApp Cloud API and publishes the
// SendResult to whatsapp-message-results. The procedure is
// internal/app.Processor. It also fetches drivers' media (MediaFetch on
// whatsapp-media) into Cloud Storage and publishes a MediaStored on
// whatsapp-status-events: internal/app.MediaFetcher, since it holds the
// leases' tokens. internal/adapters connects them to the recorder, Pub/Sub,
// Secret Manager, Cloud Storage and WhatsApp; this file wires them.
//
// Run `sender -help-env` for its environment variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/visn/wadispatch/pkg/auth"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"
	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/ops"
	"github.com/visn/wadispatch/pkg/whatsapp"
	"github.com/visn/wadispatch/services/sender/internal/adapters"
	"github.com/visn/wadispatch/services/sender/internal/app"
)

// spec is the sender's environment.
type spec struct {
	config.Service

	Subscription    string        `envconfig:"SENDER_SUBSCRIPTION" default:"whatsapp-messages-sender" desc:"Pub/Sub subscription of the tasks"`
	ResultsTopic    string        `envconfig:"SENDER_RESULTS_TOPIC" default:"whatsapp-message-results" desc:"Pub/Sub topic the SendResults are published to"`
	DeadLetterTopic string        `envconfig:"SENDER_DEAD_LETTER_TOPIC" default:"whatsapp-messages-dead-letter" desc:"Pub/Sub topic a task whose WhatsApp retries ran out is published to"`
	MaxInFlight     int           `envconfig:"SENDER_MAX_IN_FLIGHT" default:"64" desc:"tasks processed at once (Pub/Sub flow control)"`
	PullStreams     int           `envconfig:"SENDER_PULL_STREAMS" default:"1" desc:"Pub/Sub streaming pulls (one carries megabytes per second; the local pstest server hands each about 100 messages/s)"`
	AckExtension    time.Duration `envconfig:"SENDER_ACK_EXTENSION" default:"15s" desc:"how far a task's ack deadline is extended at a time (10s to 600s): a task held by a crashed sender comes back after at most this"`

	RecorderAddr        string        `envconfig:"SENDER_RECORDER_ADDR" default:"localhost:9090" desc:"the recorder's gRPC API: a gRPC target (dns:///HOST:PORT balances over every address HOST resolves to, e.g. a headless Service's pods) or a comma-separated list of HOST:PORT, balanced over"`
	RecorderKeepalive   time.Duration `envconfig:"SENDER_RECORDER_KEEPALIVE_TIME" default:"20s" desc:"a connection to a recorder that has read nothing this long is pinged (at least 10s; RECORDER_KEEPALIVE_MIN_TIME must not exceed it)"`
	RecorderPingTimeout time.Duration `envconfig:"SENDER_RECORDER_KEEPALIVE_TIMEOUT" default:"5s" desc:"a ping unanswered this long drops the connection, and calls go to the other recorders"`
	RecorderAudience    string        `envconfig:"SENDER_RECORDER_AUDIENCE" default:"wadispatch-recorder" desc:"audience of the ID tokens the sender presents to the recorder (RECORDER_AUTH_AUDIENCE)"`
	RecorderIDTokenFile string        `envconfig:"SENDER_RECORDER_ID_TOKEN_FILE" desc:"local runs: file holding the sender's ID token, re-read as it nears expiry; unset, tokens come from Google (Workload Identity on GKE)"`
	ClaimLease          time.Duration `envconfig:"SENDER_CLAIM_LEASE" default:"45s" desc:"how long a claim holds without an outcome; bounds one task's retries (the pod's termination grace should exceed it)"`
	ClaimTimeout        time.Duration `envconfig:"SENDER_CLAIM_TIMEOUT" default:"10s" desc:"timeout of one ClaimSend or ReleaseClaim call"`
	Claimant            string        `envconfig:"SENDER_CLAIMANT" desc:"name of this instance in claims (default: host name)"`

	WhatsAppBaseURL    string        `envconfig:"SENDER_WHATSAPP_BASE_URL" default:"https://graph.facebook.com" desc:"WhatsApp Cloud API base URL (the simulator's locally)"`
	WhatsAppTimeout    time.Duration `envconfig:"SENDER_WHATSAPP_TIMEOUT" default:"10s" desc:"timeout of one WhatsApp call"`
	WhatsAppAPIVersion string        `envconfig:"SENDER_WHATSAPP_API_VERSION" default:"v23.0" desc:"Graph API version for leases that name none"`

	RatePerNumber float64       `envconfig:"SENDER_RATE_PER_NUMBER" default:"60" desc:"messages per second per business phone number (WhatsApp allows 80 by default)"`
	RateBurst     int           `envconfig:"SENDER_RATE_BURST" default:"5" desc:"burst of the per-number rate limiter"`
	RateCooldown  time.Duration `envconfig:"SENDER_RATE_COOLDOWN" default:"30s" desc:"how long a number stays slowed down after WhatsApp's 130429"`

	MaxAttempts     int           `envconfig:"SENDER_MAX_ATTEMPTS" default:"5" desc:"WhatsApp calls per task for retryable errors (rate limit answers do not count)"`
	InitialBackoff  time.Duration `envconfig:"SENDER_INITIAL_BACKOFF" default:"500ms" desc:"first backoff between attempts (exponential, with jitter)"`
	MaxBackoff      time.Duration `envconfig:"SENDER_MAX_BACKOFF" default:"10s" desc:"longest backoff between attempts"`
	PublishTimeout  time.Duration `envconfig:"SENDER_PUBLISH_TIMEOUT" default:"30s" desc:"timeout of publishing a result and waiting for its confirmation"`
	PublishRetryFor time.Duration `envconfig:"SENDER_PUBLISH_RETRY_FOR" default:"10m" desc:"how long a result or dead letter that fails to publish is tried again before its task is nacked"`
	InFlightRecheck time.Duration `envconfig:"SENDER_IN_FLIGHT_RECHECK" default:"5s" desc:"how often a task whose send another sender holds asks for the claim again (for at most SENDER_CLAIM_LEASE)"`
	OutageProbe     time.Duration `envconfig:"SENDER_OUTAGE_PROBE_INTERVAL" default:"15s" desc:"longest wait between probes of a recorder or Secret Manager that cannot answer; tasks are held meanwhile, not nacked"`
	EnforceWindow   bool          `envconfig:"SENDER_ENFORCE_WINDOW" default:"true" desc:"fail free-form messages (text, interactive) to a driver who has not written within 24 hours (reason outside_24h_window) without calling WhatsApp; templates are always sent"`

	Tokens         string        `envconfig:"SENDER_TOKENS" desc:"local runs: JSON object from token reference to WhatsApp token"`
	TokensFile     string        `envconfig:"SENDER_TOKENS_FILE" desc:"local runs: file holding that JSON object"`
	SecretManager  bool          `envconfig:"SENDER_SECRET_MANAGER" default:"false" desc:"resolve token references of the form projects/*/secrets/*/versions/* through Secret Manager"`
	SecretCacheTTL time.Duration `envconfig:"SENDER_SECRET_CACHE_TTL" default:"5m" desc:"how long a token read from Secret Manager is reused"`

	MediaOutBuckets      []string      `envconfig:"SENDER_MEDIA_OUT_BUCKETS" desc:"comma-separated Cloud Storage buckets image, document, video and audio messages may name objects in (the sender needs read access); an object elsewhere fails media_bucket_not_allowed"`
	MediaBucket          string        `envconfig:"SENDER_MEDIA_BUCKET" desc:"Cloud Storage bucket drivers' media is stored in (STORAGE_EMULATOR_HOST reaches a local emulator); unset, media is not fetched"`
	MediaSubscription    string        `envconfig:"SENDER_MEDIA_SUBSCRIPTION" default:"whatsapp-media-sender" desc:"Pub/Sub subscription of the MediaFetch messages the recorder publishes for drivers' media"`
	MediaStoredTopic     string        `envconfig:"SENDER_MEDIA_STORED_TOPIC" default:"whatsapp-status-events" desc:"Pub/Sub topic the MediaStored messages are published to, for the recorder"`
	MediaMaxInFlight     int           `envconfig:"SENDER_MEDIA_MAX_IN_FLIGHT" default:"4" desc:"media fetched at once (each holds up to 16 MiB of upload buffer)"`
	MediaMaxAttempts     int           `envconfig:"SENDER_MEDIA_MAX_ATTEMPTS" default:"3" desc:"tries (fresh URL and download) of one media before a transient failure holds its message at the media gate"`
	MediaDownloadTimeout time.Duration `envconfig:"SENDER_MEDIA_DOWNLOAD_TIMEOUT" default:"2m" desc:"longest time one media download and upload may take (documents reach 100 MB)"`
	MediaStorageTimeout  time.Duration `envconfig:"SENDER_MEDIA_STORAGE_TIMEOUT" default:"20s" desc:"longest time one look at a Cloud Storage object may take (the client retries within it); past it the fetch is held"`

	TemplateSyncInterval time.Duration `envconfig:"SENDER_TEMPLATE_SYNC_INTERVAL" default:"15m" desc:"how often the leases' template registries are refreshed from Graph API's message_templates (a TemplateSnapshot per lease, on SENDER_MEDIA_STORED_TOPIC); 0 disables the refresh"`
}

func main() {
	var cfg spec
	lifecycle.Main("sender", &cfg, func(ctx context.Context, log *logrus.Entry) error {
		return run(ctx, cfg, log)
	})
}

// run builds the sender's parts and runs them until ctx ends or SIGTERM.
func run(ctx context.Context, cfg spec, log *logrus.Entry) error {
	if err := cfg.check(); err != nil {
		return err
	}
	tokens, closeTokens, err := newTokens(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeTokens()
	wa, err := whatsapp.NewClient(whatsapp.Config{BaseURL: cfg.WhatsAppBaseURL, Timeout: cfg.WhatsAppTimeout, HTTPClient: adapters.WhatsAppHTTPClient(cfg.MaxInFlight)})
	if err != nil {
		return err
	}
	idTokens, err := auth.NewTokenSource(ctx, cfg.RecorderAudience, cfg.RecorderIDTokenFile)
	if err != nil {
		return err
	}
	recorder, err := adapters.DialRecorder(cfg.RecorderAddr, adapters.Keepalive{Time: cfg.RecorderKeepalive, Timeout: cfg.RecorderPingTimeout}, idTokens)
	if err != nil {
		return err
	}
	defer recorder.Close()
	ps, err := pubsub.NewClient(ctx, cfg.Project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer ps.Close()
	publisher := adapters.NewPublisher(ps)
	defer publisher.Stop()

	srv, err := ops.New(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	if cfg.Profiling {
		srv.ServeProfiles()
	}
	srv.AddReadiness("recorder", recorder.Ready)
	// While the recorder (or Firestore behind it) cannot answer, tasks are
	// held at the gate and the sender reports not ready.
	gate := consume.NewGate(200*time.Millisecond, cfg.OutageProbe)
	srv.AddReadiness("dependencies", gate.Ready)
	srv.Registry.MustRegister(gate.Collectors(consume.GateMetricNames{Down: "wadispatch_sender_dependency_down", Held: "wadispatch_sender_held_tasks",
		Unavailable: "wadispatch_sender_unavailable_calls_total"})...)
	claimant := cfg.claimant()
	proc := app.NewProcessor(cfg.processorConfig(claimant), recorder.Client(), wa, tokens, publisher,
		app.NewLimiters(cfg.RatePerNumber, cfg.RateBurst, cfg.RateCooldown), adapters.Clock{}, app.NewMetrics(srv.Registry), log)

	parts := []lifecycle.Part{
		func(ctx context.Context) error { return srv.Run(ctx, cfg.ShutdownGrace) },
		func(ctx context.Context) error {
			// No Detach: the processor itself decides what shutdown may
			// interrupt (nothing once a send is claimed).
			err := consume.Receive(ctx, ps.Subscriber(cfg.Subscription), consume.Options{Settings: cfg.receiveSettings(), SpanName: "send", Gate: gate, Log: log}, proc.Process)
			if err == nil {
				log.Info("stopped receiving; in-flight tasks finished")
			}
			return err
		},
	}
	// One Cloud Storage client serves media out and media in.
	var gcs *storage.Client
	if len(cfg.MediaOutBuckets) > 0 || cfg.MediaBucket != "" {
		if gcs, err = storage.NewClient(ctx); err != nil {
			return fmt.Errorf("storage client: %w", err)
		}
		defer func() { _ = gcs.Close() }()
	}
	if len(cfg.MediaOutBuckets) > 0 {
		proc.SetMediaOut(app.NewMediaOut(cfg.MediaOutBuckets, adapters.NewOutboundStorage(gcs), wa, time.Now))
	}
	if cfg.TemplateSyncInterval > 0 {
		sync := app.NewTemplateSync(app.TemplateSyncConfig{Interval: cfg.TemplateSyncInterval, StatusTopic: cfg.MediaStoredTopic,
			DefaultAPIVersion: cfg.WhatsAppAPIVersion, PublishTimeout: cfg.PublishTimeout}, recorder.Client(), wa, tokens, publisher, time.Now, srv.Registry, log)
		parts = append(parts, sync.Run)
	}
	if cfg.MediaBucket == "" {
		log.Warn("SENDER_MEDIA_BUCKET is unset: drivers' media is not fetched")
	} else {
		parts = append(parts, newMediaFetch(cfg, srv, wa, gcs, tokens, publisher, ps, log))
	}

	log.WithFields(logrus.Fields{"subscription": cfg.Subscription, "mediaSubscription": cfg.MediaSubscription, "mediaBucket": cfg.MediaBucket,
		"recorder": cfg.RecorderAddr, "ops": srv.Addr(), "claimant": claimant}).Info("sender starting")
	return lifecycle.Run(ctx, parts...)
}

// newMediaFetch builds the media fetch: the fetcher over gcs, and
// the part of the sender that receives whatsapp-media. Media has a gate of
// its own: Cloud Storage or the Graph API being down holds media, not
// sends, and is no reason to report the sender unready.
func newMediaFetch(cfg spec, srv *ops.Server, wa *whatsapp.Client, gcs *storage.Client, tokens *app.Tokens, publisher *adapters.Publisher, ps *pubsub.Client, log *logrus.Entry) lifecycle.Part {
	gate := consume.NewGate(200*time.Millisecond, cfg.OutageProbe)
	srv.Registry.MustRegister(gate.Collectors(consume.GateMetricNames{Down: "wadispatch_sender_media_dependency_down", Held: "wadispatch_sender_held_media_fetches",
		Unavailable: "wadispatch_sender_media_unavailable_calls_total"})...)
	fetcher := app.NewMediaFetcher(cfg.mediaConfig(), wa, adapters.NewStorage(gcs, cfg.MediaBucket), tokens, publisher, adapters.Clock{}, app.NewMediaMetrics(srv.Registry), log)
	part := func(ctx context.Context) error {
		return consume.Receive(ctx, ps.Subscriber(cfg.MediaSubscription), consume.Options{Settings: cfg.mediaReceiveSettings(), SpanName: "fetch media", Gate: gate, Log: log}, fetcher.Fetch)
	}
	return part
}

func (cfg spec) check() error {
	if cfg.MaxAttempts < 1 || cfg.MaxInFlight < 1 || cfg.PullStreams < 1 || cfg.RatePerNumber <= 0 {
		return errors.New("SENDER_MAX_ATTEMPTS, SENDER_MAX_IN_FLIGHT, SENDER_PULL_STREAMS and SENDER_RATE_PER_NUMBER must be positive")
	}
	if cfg.MediaBucket != "" && (cfg.MediaMaxAttempts < 1 || cfg.MediaMaxInFlight < 1 || cfg.MediaDownloadTimeout <= 0 || cfg.MediaStorageTimeout <= 0) {
		return errors.New("SENDER_MEDIA_MAX_ATTEMPTS, SENDER_MEDIA_MAX_IN_FLIGHT, SENDER_MEDIA_DOWNLOAD_TIMEOUT and SENDER_MEDIA_STORAGE_TIMEOUT must be positive")
	}
	// gRPC would raise a shorter time to 10s without a word.
	if cfg.RecorderKeepalive < 10*time.Second || cfg.RecorderPingTimeout <= 0 {
		return fmt.Errorf("SENDER_RECORDER_KEEPALIVE_TIME (%s) must be at least 10s and SENDER_RECORDER_KEEPALIVE_TIMEOUT (%s) positive", cfg.RecorderKeepalive, cfg.RecorderPingTimeout)
	}
	if reserve := cfg.publishReserve(); cfg.ClaimLease < cfg.WhatsAppTimeout+reserve {
		return fmt.Errorf("SENDER_CLAIM_LEASE (%s) must leave room for one WhatsApp call (%s) and publishing the result (%s)", cfg.ClaimLease, cfg.WhatsAppTimeout, reserve)
	}
	return nil
}

// newTokens resolves lease token references from the local map and, when
// configured, Secret Manager.
func newTokens(ctx context.Context, cfg spec) (*app.Tokens, func(), error) {
	local, err := whatsapp.LoadLocalTokens(cfg.Tokens, cfg.TokensFile)
	if err != nil {
		return nil, nil, err
	}
	if !cfg.SecretManager {
		return app.NewTokens(local, nil, cfg.SecretCacheTTL, time.Now), func() {}, nil
	}
	sm, err := adapters.NewSecretManager(ctx)
	if err != nil {
		return nil, nil, err
	}
	return app.NewTokens(local, sm, cfg.SecretCacheTTL, time.Now), func() { _ = sm.Close() }, nil
}

func (cfg spec) claimant() string {
	if cfg.Claimant != "" {
		return cfg.Claimant
	}
	host, _ := os.Hostname()
	return host + "-" + uuid.NewString()[:8]
}

func (cfg spec) processorConfig(claimant string) app.Config {
	return app.Config{
		Claimant:          claimant,
		ClaimLease:        cfg.ClaimLease,
		ClaimTimeout:      cfg.ClaimTimeout,
		MaxAttempts:       cfg.MaxAttempts,
		InitialBackoff:    cfg.InitialBackoff,
		MaxBackoff:        cfg.MaxBackoff,
		CallTimeout:       cfg.WhatsAppTimeout,
		PublishReserve:    cfg.publishReserve(),
		PublishTimeout:    cfg.PublishTimeout,
		PublishRetryFor:   cfg.PublishRetryFor,
		InFlightRecheck:   cfg.InFlightRecheck,
		DefaultAPIVersion: cfg.WhatsAppAPIVersion,
		EnforceWindow:     cfg.EnforceWindow,
		ResultsTopic:      cfg.ResultsTopic,
		DeadLetterTopic:   cfg.DeadLetterTopic,
	}
}

func (cfg spec) mediaConfig() app.MediaConfig {
	return app.MediaConfig{
		StatusTopic:       cfg.MediaStoredTopic,
		DefaultAPIVersion: cfg.WhatsAppAPIVersion,
		MaxAttempts:       cfg.MediaMaxAttempts,
		InitialBackoff:    cfg.InitialBackoff,
		MaxBackoff:        cfg.MaxBackoff,
		DownloadTimeout:   cfg.MediaDownloadTimeout,
		StorageTimeout:    cfg.MediaStorageTimeout,
		PublishTimeout:    cfg.PublishTimeout,
	}
}

// publishReserve is the end of a claim's lease kept for publishing the
// result: a WhatsApp answer that arrives later than that cannot be recorded
// before another delivery sees the claim expire.
func (cfg spec) publishReserve() time.Duration {
	return min(5*time.Second, cfg.PublishTimeout)
}

func (cfg spec) receiveSettings() pubsub.ReceiveSettings {
	rs := pubsub.DefaultReceiveSettings
	rs.MaxOutstandingMessages = cfg.MaxInFlight
	rs.NumGoroutines = cfg.PullStreams
	rs.MaxDurationPerAckExtension = cfg.AckExtension
	return rs
}

func (cfg spec) mediaReceiveSettings() pubsub.ReceiveSettings {
	rs := cfg.receiveSettings()
	rs.MaxOutstandingMessages = cfg.MediaMaxInFlight
	rs.NumGoroutines = 1
	return rs
}
