// Command recorder is the only writer of pipeline state to Firestore: it
// serves the Recorder gRPC API to the sender and internal tools, records
// send results from Pub/Sub and applies WhatsApp status events.
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/visn/wadispatch/pkg/auth"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/ops"
	"github.com/visn/wadispatch/pkg/sendtask"
	recorderfs "github.com/visn/wadispatch/services/recorder/internal/adapters/firestore"
	"github.com/visn/wadispatch/services/recorder/internal/adapters/grpcapi"
	recorderps "github.com/visn/wadispatch/services/recorder/internal/adapters/pubsub"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

type spec struct {
	config.Service

	GRPCAddr            string        `envconfig:"RECORDER_GRPC_ADDR" default:":9090" desc:"Recorder gRPC API (with the health service)"`
	AuthAudience        string        `envconfig:"RECORDER_AUTH_AUDIENCE" default:"wadispatch-recorder" desc:"audience every caller's ID token must be addressed to"`
	AuthIssuers         string        `envconfig:"RECORDER_AUTH_ISSUERS" default:"https://accounts.google.com=https://www.googleapis.com/oauth2/v3/certs" desc:"trusted ID token issuers, ISSUER=KEYS_URL[,...]: Google's on GCP, the local stack's issuer locally"`
	SenderIdentities    []string      `envconfig:"RECORDER_SENDER_IDENTITIES" required:"true" desc:"callers (ID token emails) that may ClaimSend, ReleaseClaim and ListTemplateAccounts: the sender's service account"`
	OperatorIdentities  []string      `envconfig:"RECORDER_OPERATOR_IDENTITIES" desc:"callers (ID token emails) that may read and Resend: operators' service accounts"`
	KeepaliveMinTime    time.Duration `envconfig:"RECORDER_KEEPALIVE_MIN_TIME" default:"10s" desc:"shortest keepalive ping interval a gRPC caller may use (callers pinging more often are disconnected with too_many_pings); at most SENDER_RECORDER_KEEPALIVE_TIME"`
	MaxConnectionAge    time.Duration `envconfig:"RECORDER_MAX_CONNECTION_AGE" default:"5m" desc:"gRPC connections are closed (GOAWAY) after about this long, so callers reconnect and recorder pods added since get calls too; 0: never"`
	MaxConnectionGrace  time.Duration `envconfig:"RECORDER_MAX_CONNECTION_AGE_GRACE" default:"30s" desc:"time the calls in flight on a connection closed for its age have to finish"`
	Reflection          bool          `envconfig:"RECORDER_REFLECTION" default:"false" desc:"serve gRPC reflection (to operators only) for grpcurl"`
	DefaultDatabase     string        `envconfig:"RECORDER_DEFAULT_DATABASE" default:"(default)" desc:"Firestore database of the messages, state, metrics and wamid index"`
	AncillaryDatabase   string        `envconfig:"RECORDER_ANCILLARY_DATABASE" default:"ancillary" desc:"Firestore database of whatsapp/{driver}/enquiryMessages/{enquiryId}"`
	ClaimLease          time.Duration `envconfig:"RECORDER_CLAIM_LEASE" default:"2m" desc:"how long a claim holds without an outcome when the sender names no lease, and the longest lease a sender may have"`
	ExpiredClaimPolicy  string        `envconfig:"RECORDER_EXPIRED_CLAIM_POLICY" default:"unknown" desc:"a claim expired without outcome becomes UNKNOWN (unknown) or is sent again by the next claim (resend)"`
	MetricsDocPath      string        `envconfig:"RECORDER_METRICS_DOC_PATH" default:"leasecompany/{leaseId}/performanceMetrics/{createdBy}" desc:"the sending user's metrics document holding numberOfWhatsappMessagesSent"`
	SweepInterval       time.Duration `envconfig:"RECORDER_SWEEP_INTERVAL" default:"30s" desc:"how often claims expired without an outcome are marked UNKNOWN (or resolved from WhatsApp's statuses), kept statuses past RECORDER_PENDING_STATUS_TTL dropped, and stalled claims counted"`
	CounterFold         time.Duration `envconfig:"RECORDER_COUNTER_FOLD_INTERVAL" default:"1s" desc:"how often the sends counted in each user's ledger (performanceMetrics/{createdBy}/sentLedger) are folded into numberOfWhatsappMessagesSent, which trails the sends by about this"`
	StalledAge          time.Duration `envconfig:"RECORDER_STALLED_AGE" default:"10m" desc:"a claim released to retry this long ago, its task not back since, is stalled (listed by wadispatchctl stalled, counted in wadispatch_recorder_stalled_claims)"`
	PendingStatusTTL    time.Duration `envconfig:"RECORDER_PENDING_STATUS_TTL" default:"1h" desc:"status webhooks of a wamid no result recorded are kept this long after the last of them, then dropped by the sweep (counted in wadispatch_recorder_pending_statuses_dropped_total)"`
	TasksTopic          string        `envconfig:"RECORDER_TASKS_TOPIC" default:"whatsapp-messages" desc:"topic resent tasks are published to"`
	MediaTopic          string        `envconfig:"RECORDER_MEDIA_TOPIC" default:"whatsapp-media" desc:"topic drivers' media is published to for the sender to fetch into Cloud Storage"`
	ResultsSubscription string        `envconfig:"RECORDER_RESULTS_SUBSCRIPTION" default:"whatsapp-message-results-recorder" desc:"subscription of send results"`
	StatusSubscription  string        `envconfig:"RECORDER_STATUS_SUBSCRIPTION" default:"whatsapp-status-events-recorder" desc:"subscription of WhatsApp status events"`
	MaxOutstanding      int           `envconfig:"RECORDER_MAX_OUTSTANDING_MESSAGES" default:"100" desc:"Pub/Sub messages handled at once per subscription"`
	PullStreams         int           `envconfig:"RECORDER_PULL_STREAMS" default:"1" desc:"Pub/Sub streaming pulls per subscription (one carries megabytes per second; the local pstest server hands each about 100 messages/s)"`
	AckExtension        time.Duration `envconfig:"RECORDER_ACK_EXTENSION" default:"15s" desc:"how far a message's ack deadline is extended at a time (10s to 600s): a message held by a crashed recorder comes back after at most this"`
	HandlerTimeout      time.Duration `envconfig:"RECORDER_HANDLER_TIMEOUT" default:"20s" desc:"time to record one Pub/Sub message; one that runs out of it counts as Firestore not answering, and is held"`
	OutageProbe         time.Duration `envconfig:"RECORDER_OUTAGE_PROBE_INTERVAL" default:"15s" desc:"longest wait between probes of a Firestore that cannot answer; results and statuses are held meanwhile, not nacked"`
}

func main() {
	var s spec
	lifecycle.Main("recorder", &s, func(ctx context.Context, log *logrus.Entry) error {
		return run(ctx, s, log)
	})
}

// recorder is the service's parts, built but not running.
type recorder struct {
	ops   *ops.Server
	api   *grpcapi.Server
	parts []lifecycle.Part
	close func()
}

func run(ctx context.Context, s spec, log *logrus.Entry) error {
	r, err := build(ctx, s, log)
	if err != nil {
		return err
	}
	defer r.close()
	log.WithFields(logrus.Fields{"grpcAddr": r.api.Addr(), "httpAddr": r.ops.Addr()}).Info("recorder starting")
	return lifecycle.Run(ctx, r.parts...)
}

func build(ctx context.Context, s spec, log *logrus.Entry) (_ *recorder, err error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	policy, err := app.ParsePolicy(s.ExpiredClaimPolicy)
	if err != nil {
		return nil, fmt.Errorf("RECORDER_EXPIRED_CLAIM_POLICY: %w", err)
	}
	opsSrv, err := ops.New(s.HTTPAddr)
	if err != nil {
		return nil, err
	}
	if s.Profiling {
		opsSrv.ServeProfiles()
	}
	db, err := firestore.NewClientWithDatabase(ctx, s.Project, s.DefaultDatabase)
	if err != nil {
		return nil, fmt.Errorf("firestore %s: %w", s.DefaultDatabase, err)
	}
	closers = append(closers, func() { _ = db.Close() })
	anc, err := firestore.NewClientWithDatabase(ctx, s.Project, s.AncillaryDatabase)
	if err != nil {
		return nil, fmt.Errorf("firestore %s: %w", s.AncillaryDatabase, err)
	}
	closers = append(closers, func() { _ = anc.Close() })
	ps, err := pubsub.NewClient(ctx, s.Project)
	if err != nil {
		return nil, fmt.Errorf("pubsub: %w", err)
	}
	closers = append(closers, func() { _ = ps.Close() })
	repub := sendtask.NewPublisher(ps, s.TasksTopic, 0)
	closers = append(closers, repub.Stop)
	media := recorderps.NewMediaFetches(ps, s.MediaTopic)
	closers = append(closers, media.Stop)

	metrics := app.NewMetrics(opsSrv.Registry)
	store := recorderfs.NewStore(db, recorderfs.Options{Retried: metrics.CommitRetried})
	svc, err := app.NewService(app.Config{
		ClaimLease:         s.ClaimLease,
		ExpiredClaimPolicy: policy,
		MetricsDocPath:     s.MetricsDocPath,
		StalledAge:         s.StalledAge,
		PendingStatusTTL:   s.PendingStatusTTL,
		Metrics:            metrics,
	}, app.Ports{Store: store, Replies: store, Drivers: store, Templates: store, Ancillary: recorderfs.NewAncillary(anc), Republisher: repub, Media: media}, log)
	if err != nil {
		return nil, err
	}
	issuers, err := auth.ParseIssuers(s.AuthIssuers)
	if err != nil {
		return nil, fmt.Errorf("RECORDER_AUTH_ISSUERS: %w", err)
	}
	verifier, err := auth.NewVerifier(ctx, s.AuthAudience, issuers)
	if err != nil {
		return nil, err
	}
	api, err := grpcapi.New(s.GRPCAddr, svc, grpcapi.Access{
		Verifier: verifier, Senders: s.SenderIdentities, Operators: s.OperatorIdentities, Reflection: s.Reflection, Log: log,
	}, grpcapi.Connections{MinPingTime: s.KeepaliveMinTime, MaxAge: s.MaxConnectionAge, MaxAgeGrace: s.MaxConnectionGrace})
	if err != nil {
		return nil, err
	}
	opsSrv.AddReadiness("firestore", firestoreReady(db))
	consumers := consume.NewMetrics(opsSrv.Registry, consume.MetricNames{Handled: "wadispatch_recorder_pubsub_messages_total", Poison: "wadispatch_recorder_poison_messages_total"})
	// Both subscriptions need Firestore: while it cannot answer, their
	// messages wait at one gate and the recorder reports not ready.
	gate := consume.NewGate(200*time.Millisecond, s.OutageProbe)
	opsSrv.AddReadiness("dependencies", gate.Ready)
	opsSrv.Registry.MustRegister(gate.Collectors(consume.GateMetricNames{Down: "wadispatch_recorder_dependency_down", Held: "wadispatch_recorder_held_messages",
		Unavailable: "wadispatch_recorder_unavailable_calls_total"})...)
	receive := func(subscription string, h consume.Handler) lifecycle.Part {
		o := consume.Options{Settings: s.receiveSettings(), Detach: s.HandlerTimeout, Gate: gate, Metrics: consumers, Log: log}
		return func(ctx context.Context) error { return consume.Receive(ctx, ps.Subscriber(subscription), o, h) }
	}
	return &recorder{
		ops: opsSrv,
		api: api,
		parts: []lifecycle.Part{
			func(ctx context.Context) error { return opsSrv.Run(ctx, s.ShutdownGrace) },
			func(ctx context.Context) error { return api.Run(ctx, s.ShutdownGrace) },
			receive(s.ResultsSubscription, svc.HandleResult),
			receive(s.StatusSubscription, svc.HandleStatusTopic),
			func(ctx context.Context) error { return svc.RunSweeper(ctx, s.SweepInterval) },
			func(ctx context.Context) error { return svc.RunCounterFolder(ctx, s.CounterFold) },
		},
		close: closeAll,
	}, nil
}

// receiveSettings are the flow control of each subscription.
func (s spec) receiveSettings() pubsub.ReceiveSettings {
	rs := pubsub.DefaultReceiveSettings
	rs.MaxOutstandingMessages = s.MaxOutstanding
	rs.NumGoroutines = s.PullStreams
	rs.MaxDurationPerAckExtension = s.AckExtension
	return rs
}

// firestoreReady checks Firestore answers: a read of a document that need
// not exist.
func firestoreReady(db *firestore.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := db.Doc("whatsappMessageIndex/readiness-probe").Get(ctx)
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("firestore: %w", err)
		}
		return nil
	}
}
