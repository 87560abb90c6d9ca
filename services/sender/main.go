// Command sender consumes SendTasks from whatsapp-messages, claims each send
// through the recorder, calls the WhatsApp Cloud API and publishes the
// SendResult to whatsapp-message-results (see pkg/sending for the procedure).
//
// Run `sender -help-env` for its environment variables.
package main

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/lifecycle"
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

	RecorderAddr string        `envconfig:"SENDER_RECORDER_ADDR" default:"localhost:9090" desc:"host:port of the recorder's gRPC API"`
	ClaimLease   time.Duration `envconfig:"SENDER_CLAIM_LEASE" default:"45s" desc:"how long a claim holds without an outcome; bounds one task's retries (the pod's termination grace should exceed it)"`
	ClaimTimeout time.Duration `envconfig:"SENDER_CLAIM_TIMEOUT" default:"10s" desc:"timeout of one ClaimSend or ReleaseClaim call"`
	Claimant     string        `envconfig:"SENDER_CLAIMANT" desc:"name of this instance in claims (default: host name)"`

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
	InFlightRecheck time.Duration `envconfig:"SENDER_IN_FLIGHT_RECHECK" default:"5s" desc:"longest wait before nacking a task another sender holds"`
	EnforceWindow   bool          `envconfig:"SENDER_ENFORCE_WINDOW" default:"true" desc:"fail free-form text to a driver who has not written within 24 hours (reason outside_24h_window) without calling WhatsApp; templates are always sent"`

	Tokens         string        `envconfig:"SENDER_TOKENS" desc:"local runs: JSON object from token reference to WhatsApp token"`
	TokensFile     string        `envconfig:"SENDER_TOKENS_FILE" desc:"local runs: file holding that JSON object"`
	SecretManager  bool          `envconfig:"SENDER_SECRET_MANAGER" default:"false" desc:"resolve token references of the form projects/*/secrets/*/versions/* through Secret Manager"`
	SecretCacheTTL time.Duration `envconfig:"SENDER_SECRET_CACHE_TTL" default:"5m" desc:"how long a token read from Secret Manager is reused"`
}

func main() {
	var cfg spec
	lifecycle.Main("sender", &cfg, func(ctx context.Context, log *logrus.Entry) error {
		return run(ctx, cfg, log)
	})
}
