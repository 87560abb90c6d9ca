// Command ingest receives Eventarc's CloudEvents for chat message documents
// created in Firestore, validates each message (pkg/firestoreevent,
// pkg/chatmessage) and publishes a SendTask to whatsapp-messages for the
// sender. See handler.go for how it answers Eventarc.
//
// Run `ingest -help-env` for its environment variables.
package main

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/lifecycle"
)

// spec is ingest's environment.
type spec struct {
	config.Service

	FirestoreDatabase  string        `envconfig:"INGEST_FIRESTORE_DATABASE" default:"(default)" desc:"Firestore database holding leases, enquiries and messages"`
	TasksTopic         string        `envconfig:"INGEST_TASKS_TOPIC" default:"whatsapp-messages" desc:"Pub/Sub topic the SendTasks are published to"`
	DefaultRegion      string        `envconfig:"INGEST_DEFAULT_REGION" default:"GB" desc:"region (ISO 3166) assumed for driver numbers written without country code"`
	LeaseCacheTTL      time.Duration `envconfig:"INGEST_LEASE_CACHE_TTL" default:"30s" desc:"how long a lease's WhatsApp configuration is reused (a missing one: at most 5s)"`
	WhatsAppAPIVersion string        `envconfig:"INGEST_WHATSAPP_API_VERSION" default:"v23.0" desc:"Graph API version for leases whose configuration names none"`
	TemplateLanguage   string        `envconfig:"INGEST_TEMPLATE_LANGUAGE" default:"en_US" desc:"template language for leases whose configuration names none"`
	HandlerTimeout     time.Duration `envconfig:"INGEST_HANDLER_TIMEOUT" default:"8s" desc:"longest time one event may take (Firestore reads and the publish); past it the answer is 503. Keep it below the ack deadline of the trigger's Pub/Sub subscription, which is the push request timeout (10s by default)"`
	DedupeTTL          time.Duration `envconfig:"INGEST_DEDUPE_TTL" default:"5m" desc:"how long a published event id is remembered to drop redeliveries"`

	StatusTopic        string `envconfig:"INGEST_STATUS_TOPIC" default:"whatsapp-status-events" desc:"Pub/Sub topic the WhatsApp webhooks' status events and driver replies are published to"`
	WebhookAppSecret   string `envconfig:"INGEST_WEBHOOK_APP_SECRET" desc:"Meta app secret that signs webhook bodies (X-Hub-Signature-256); unset, webhook POSTs answer 503. Never logged"`
	WebhookVerifyToken string `envconfig:"INGEST_WEBHOOK_VERIFY_TOKEN" desc:"token Meta's webhook verification handshake must present (hub.verify_token); unset, the handshake is refused. Never logged"`
}

func main() {
	var cfg spec
	lifecycle.Main("ingest", &cfg, func(ctx context.Context, log *logrus.Entry) error {
		return run(ctx, cfg, log)
	})
}
