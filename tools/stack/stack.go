// Package stack runs wadispatch locally as separate processes, the way it
// runs on GCP: the Firestore emulator (whose Eventarc-shaped trigger posts to
// ingest), the Pub/Sub emulator with the project's topology, the Cloud
// Storage emulator with the media bucket, the WhatsApp simulator, and the
// three services. `make demo`, `make run` and the
// end-to-end tests use it.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sirupsen/logrus"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/testinfra/eventdelivery"
	"github.com/visn/wadispatch/pkg/testinfra/faultproxy"
	"github.com/visn/wadispatch/pkg/testinfra/gcloudemu"
	"github.com/visn/wadispatch/pkg/testinfra/localissuer"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
)

// Options configure a local stack.
type Options struct {
	// BinDir holds the built programs (see Build).
	BinDir string
	// LogDir receives one log file per program.
	LogDir string
	// Project is the GCP project id the emulators and services use.
	Project string
	// PhoneNumberID is the business phone number the seeded lease sends from.
	PhoneNumberID string
	// SimulatorArgs are extra flags for the WhatsApp simulator (limits, faults).
	SimulatorArgs []string
	// Env adds variables per program name ("ingest", "sender", "recorder", ...).
	// Those of "recorder" go to every recorder; those of a replica's own
	// name ("recorder-2") to it alone, after them.
	Env map[string][]string
	// Recorders is how many recorders run (default 1), each with its own
	// ports and log, named by RecorderName; the sender is given all their
	// gRPC addresses and balances its claims over them.
	Recorders int
	// StopGrace is how long each program has to exit after SIGTERM.
	StopGrace time.Duration
	// Progress, when set, receives a line as each program becomes ready.
	Progress io.Writer
	// FirestoreFaults puts a fault proxy between the recorder and the
	// Firestore emulator (Stack.FirestoreFaults), so that a test can make
	// Firestore unavailable to the recorder alone.
	FirestoreFaults bool
	// FirestoreArgs are extra flags for the project's Firestore emulator
	// (a per-document write rate); Google's takes none.
	FirestoreArgs []string
	// GoogleEmulators runs Google's Firestore and Pub/Sub emulators (the
	// gcloud SDK's) instead of the project's; Start defaults it from
	// WADISPATCH_EMULATORS=gcloud.
	GoogleEmulators bool
	// GooglePubSub runs Google's Pub/Sub emulator alone, beside the
	// project's Firestore emulator (WADISPATCH_EMULATORS=gcloud-pubsub): the
	// load harness uses it to tell the local Pub/Sub server's ceiling from
	// the pipeline's.
	GooglePubSub bool
}

func (o *Options) defaults() {
	if o.Project == "" {
		o.Project = "wadispatch-local"
	}
	if o.PhoneNumberID == "" {
		o.PhoneNumberID = "100000000000001"
	}
	if o.StopGrace == 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.Recorders < 1 {
		o.Recorders = 1
	}
}

// Stack is a running local stack.
type Stack struct {
	opts Options

	FirestoreAddr string
	PubSubAddr    string
	// StorageAddr is the Cloud Storage emulator's (STORAGE_EMULATOR_HOST),
	// holding MediaBucket, where the sender stores drivers' media.
	StorageAddr  string
	MediaBucket  string
	SimulatorURL string
	IngestURL    string // CloudEvents and the WhatsApp webhook
	IngestOpsURL string // ingest's probes and metrics
	SenderURL    string
	RecorderURL  string // the (first) recorder's ops HTTP endpoint
	RecorderAddr string // the (first) recorder's gRPC endpoint
	// RecorderURLs and RecorderAddrs are every recorder's, in the order of
	// RecorderName.
	RecorderURLs, RecorderAddrs []string
	// TokenRef names the lease's token; Token is its value, made up per
	// stack and known only to the sender and the simulator.
	TokenRef string
	Token    string
	// AppSecret signs the simulator's webhooks to ingest; VerifyToken is
	// ingest's webhook verification token. Both made up per stack.
	AppSecret   string
	VerifyToken string

	procs []*process // in start order

	// issuer signs the ID tokens the sender and operators present to the
	// recorder, which trusts only it: the recorder checks local callers with
	// the code that checks Google-signed tokens on GKE.
	issuer *localissuer.Issuer
	// OperatorTokenFile holds an operator's ID token, for wadispatchctl
	// (WADISPATCH_ID_TOKEN_FILE).
	OperatorTokenFile string

	// FirestoreFaults is the recorder's way to Firestore when
	// Options.FirestoreFaults is set.
	FirestoreFaults *faultproxy.Proxy

	// With Options.GoogleEmulators: the emulators, and the bridge their
	// trigger posts to (it delivers to ingest as Eventarc does).
	google []*gcloudemu.Emulator
	bridge *gcloudemu.Bridge

	// triggerControl serves the trigger's test-only switch
	// (DropTriggerDeliveries): the project's emulator or the bridge.
	triggerControl string
	closers        []func() error // log files

	ancMu sync.Mutex
	anc   *firestore.Client // the ancillary database, opened on first use
}

// The callers of the recorder's API in a local stack.
const (
	SenderIdentity   = "sender@wadispatch.local"
	OperatorIdentity = "operator@wadispatch.local"
	// RecorderAudience is the audience their tokens are addressed to.
	RecorderAudience = "wadispatch-recorder"
	// tokenTTL outlasts any local run; a stack running longer needs a restart.
	tokenTTL = 24 * time.Hour
)

// Programs of the stack, by the name of their binary.
const (
	FirestoreEmulator = "firestore-emulator"
	PubSubEmulator    = "pubsub-emulator"
	StorageEmulator   = "gcs-emulator"
	WhatsAppSimulator = "whatsapp-simulator"
	Ingest            = "ingest"
	Sender            = "sender"
	Recorder          = "recorder"
	// TriggerBridge delivers the trigger events of Google's Firestore
	// emulator to ingest (Options.GoogleEmulators); it runs in the stack's
	// own process and logs to its own file.
	TriggerBridge = "trigger-bridge"
)

// RecorderName is the program name of the i-th recorder (from 0) of a stack
// with Options.Recorders: "recorder", then "recorder-2", "recorder-3"...
func RecorderName(i int) string {
	if i == 0 {
		return Recorder
	}
	return fmt.Sprintf("%s-%d", Recorder, i+1)
}

// Start starts every program and waits until each is ready. On error the
// programs already started are stopped.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	opts.defaults()
	switch os.Getenv(gcloudemu.EnvVar) {
	case "gcloud":
		opts.GoogleEmulators = true
	case "gcloud-pubsub":
		opts.GooglePubSub = true
	}
	if opts.GoogleEmulators || opts.GooglePubSub {
		if err := gcloudemu.Available(); err != nil {
			return nil, fmt.Errorf("%s=gcloud: %w", gcloudemu.EnvVar, err)
		}
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		s, err := start(ctx, opts)
		// The services' ports are picked before they bind them (the
		// emulator's trigger must know ingest's address first); another
		// process may take one in between. New ports, then.
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return s, err
		}
	}
}

func start(ctx context.Context, opts Options) (_ *Stack, err error) {
	s := &Stack{opts: opts, TokenRef: "local-lease-token", MediaBucket: "wadispatch-media-local"}
	for _, v := range []*string{&s.Token, &s.AppSecret, &s.VerifyToken} {
		if *v, err = randomToken(); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	addrs := map[string]string{}
	names := []string{"ingest", "ingest-ops", "sender", "simulator"}
	for i := range opts.Recorders {
		names = append(names, RecorderName(i)+"-http", RecorderName(i)+"-grpc")
	}
	for _, name := range names {
		if addrs[name], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	s.IngestURL = "http://" + addrs["ingest"]
	s.IngestOpsURL = "http://" + addrs["ingest-ops"]
	s.SenderURL = "http://" + addrs["sender"]
	for i := range opts.Recorders {
		s.RecorderURLs = append(s.RecorderURLs, "http://"+addrs[RecorderName(i)+"-http"])
		s.RecorderAddrs = append(s.RecorderAddrs, addrs[RecorderName(i)+"-grpc"])
	}
	s.RecorderURL, s.RecorderAddr = s.RecorderURLs[0], s.RecorderAddrs[0]
	s.SimulatorURL = "http://" + addrs["simulator"]

	if opts.GoogleEmulators {
		err = s.startGoogleFirestore(ctx)
	} else {
		err = s.startFirestore(ctx)
	}
	if err != nil {
		return nil, err
	}
	if opts.GoogleEmulators || opts.GooglePubSub {
		err = s.startGooglePubSub(ctx)
	} else {
		s.PubSubAddr, err = s.startEmulator(ctx, PubSubEmulator, "--host-port", "127.0.0.1:0", "--project", s.opts.Project)
	}
	if err != nil {
		return nil, err
	}
	if s.StorageAddr, err = s.startEmulator(ctx, StorageEmulator, "--host-port", "127.0.0.1:0", "--bucket", s.MediaBucket); err != nil {
		return nil, err
	}
	simArgs := append([]string{
		"--host-port", addrs["simulator"],
		"--phone-number", opts.PhoneNumberID + "=" + s.Token,
		"--webhook-url", s.WebhookURL(),
		"--app-secret", s.AppSecret,
	}, opts.SimulatorArgs...)
	if _, err = s.startEmulator(ctx, WhatsAppSimulator, simArgs...); err != nil {
		return nil, err
	}

	recorderFirestore := s.FirestoreAddr
	if opts.FirestoreFaults {
		if s.FirestoreFaults, err = faultproxy.Start("127.0.0.1:0", s.FirestoreAddr); err != nil {
			return nil, err
		}
		recorderFirestore = s.FirestoreFaults.Addr()
	}

	if s.issuer, err = localissuer.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	senderToken := filepath.Join(opts.LogDir, "sender.token")
	s.OperatorTokenFile = filepath.Join(opts.LogDir, "operator.token")
	for file, who := range map[string]string{senderToken: SenderIdentity, s.OperatorTokenFile: OperatorIdentity} {
		if err = s.writeToken(file, who); err != nil {
			return nil, err
		}
	}

	common := []string{
		"GOOGLE_CLOUD_PROJECT=" + opts.Project,
		"FIRESTORE_EMULATOR_HOST=" + s.FirestoreAddr,
		"PUBSUB_EMULATOR_HOST=" + s.PubSubAddr,
		"LOG_LEVEL=debug",
	}
	tokens, err := json.Marshal(map[string]string{s.TokenRef: s.Token})
	if err != nil {
		return nil, err
	}
	type service struct {
		name, bin string
		addr      string
		env       []string
	}
	var services []service
	for i := range opts.Recorders {
		name := RecorderName(i)
		services = append(services, service{name, Recorder, addrs[name+"-http"], append([]string{
			"RECORDER_GRPC_ADDR=" + s.RecorderAddrs[i],
			"RECORDER_AUTH_AUDIENCE=" + RecorderAudience,
			"RECORDER_AUTH_ISSUERS=" + s.issuer.Trust(),
			"RECORDER_SENDER_IDENTITIES=" + SenderIdentity,
			"RECORDER_OPERATOR_IDENTITIES=" + OperatorIdentity,
			"FIRESTORE_EMULATOR_HOST=" + recorderFirestore,
		}, opts.Env[Recorder]...)})
	}
	services = append(services, []service{
		{Sender, Sender, addrs["sender"], []string{
			// One address, or a list the sender balances over: every
			// recorder listens on 127.0.0.1, so DNS could not tell them
			// apart.
			"SENDER_RECORDER_ADDR=" + strings.Join(s.RecorderAddrs, ","),
			"SENDER_RECORDER_AUDIENCE=" + RecorderAudience,
			"SENDER_RECORDER_ID_TOKEN_FILE=" + senderToken,
			"SENDER_WHATSAPP_BASE_URL=" + s.SimulatorURL,
			"SENDER_TOKENS=" + string(tokens),
			"STORAGE_EMULATOR_HOST=" + s.StorageAddr,
			"SENDER_MEDIA_BUCKET=" + s.MediaBucket,
			// Outbound media is read from the same local bucket.
			"SENDER_MEDIA_OUT_BUCKETS=" + s.MediaBucket,
			// The simulator here lists no business account's templates, so
			// a refresh would mark every template the tests' webhooks put
			// in a registry DELETED. The refresh is tested against the
			// simulator in the sender's own tests; here the registry comes
			// from WhatsApp's webhooks.
			"SENDER_TEMPLATE_SYNC_INTERVAL=0",
		}},
		{Ingest, Ingest, addrs["ingest-ops"], []string{
			"INGEST_ADDR=" + addrs["ingest"],
			"INGEST_WEBHOOK_APP_SECRET=" + s.AppSecret,
			"INGEST_WEBHOOK_VERIFY_TOKEN=" + s.VerifyToken,
			"INGEST_MEDIA_BUCKETS=" + s.MediaBucket,
		}},
	}...)
	for _, svc := range services {
		env := append(append(append([]string{}, common...), "HTTP_ADDR="+svc.addr), svc.env...)
		if svc.name != Recorder {
			// Recorder's own variables went to every recorder above.
			env = append(env, opts.Env[svc.name]...)
		}
		if err = s.startService(ctx, svc.name, svc.bin, "http://"+svc.addr+"/healthz", env); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startFirestore starts the project's Firestore emulator, whose trigger
// posts to ingest.
func (s *Stack) startFirestore(ctx context.Context) (err error) {
	trigger := "created:" + dispatch.MessagePattern + "=" + s.IngestURL + "/"
	// The emulator refuses queries that the deployed indexes do not serve,
	// as Firestore does.
	indexes := filepath.Join(s.opts.LogDir, "firestore.indexes.json")
	if err := os.WriteFile(indexes, chart.FirestoreIndexes, 0o644); err != nil {
		return fmt.Errorf("write the index configuration: %w", err)
	}
	// Nothing of wadispatch reads at a past read_time, so the emulator keeps
	// a minute of document versions, not Firestore's hour: an hour of
	// `make run` would otherwise hold every version of every document.
	args := append([]string{"--host-port", "127.0.0.1:0", "--trigger", trigger, "--indexes", "(default)=" + indexes,
		"--version-retention", "1m"}, s.opts.FirestoreArgs...)
	if s.FirestoreAddr, err = s.startEmulator(ctx, FirestoreEmulator, args...); err != nil {
		return err
	}
	s.triggerControl = s.FirestoreAddr
	return nil
}

// startGoogleFirestore starts Google's Firestore emulator with its trigger
// routed through the bridge to ingest. Unlike the project's, it serves
// queries no index serves.
func (s *Stack) startGoogleFirestore(ctx context.Context) (err error) {
	bridgeLog, err := s.logFile(TriggerBridge)
	if err != nil {
		return err
	}
	if s.bridge, err = gcloudemu.StartBridge("127.0.0.1:0", eventdelivery.Policy{}, bridgeLog); err != nil {
		return err
	}
	s.triggerControl = s.bridge.Addr
	emu, err := s.startGoogle(ctx, FirestoreEmulator, gcloudemu.StartFirestore, gcloudemu.Options{FunctionsEmulator: s.bridge.Addr})
	if err != nil {
		return err
	}
	s.FirestoreAddr = emu.Addr
	const triggerID = "wadispatch-ingest"
	s.bridge.Route(triggerID, s.IngestURL+"/")
	return emu.AddTrigger(ctx, s.opts.Project, triggerID, "google.cloud.firestore.document.v1.created", "(default)", dispatch.MessagePattern)
}

// startGooglePubSub starts Google's Pub/Sub emulator and creates the
// topology on it, as the chart creates it on GCP.
func (s *Stack) startGooglePubSub(ctx context.Context) error {
	emu, err := s.startGoogle(ctx, PubSubEmulator, gcloudemu.StartPubSub, gcloudemu.Options{})
	if err != nil {
		return err
	}
	s.PubSubAddr = emu.Addr
	client, err := pubsubemu.NewClient(ctx, s.PubSubAddr, s.opts.Project)
	if err != nil {
		return err
	}
	defer client.Close()
	topo, err := topology.Default()
	if err != nil {
		return err
	}
	return topology.Apply(ctx, client, topo)
}

// startGoogle starts one of Google's emulators, logging to name's file;
// Stop stops it.
func (s *Stack) startGoogle(ctx context.Context, name string, run func(context.Context, gcloudemu.Options) (*gcloudemu.Emulator, error), o gcloudemu.Options) (*gcloudemu.Emulator, error) {
	var err error
	if o.Log, err = s.createLog(name); err != nil {
		return nil, err
	}
	emu, err := run(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s (Google's): %w (log: %s)", name, err, s.LogPath(name))
	}
	s.google = append(s.google, emu)
	s.progress("%-20s ready on %s (Google's)", name, emu.Addr)
	return emu, nil
}

// createLog creates the named program's log file, closed by Stop.
func (s *Stack) createLog(name string) (*os.File, error) {
	f, err := os.Create(s.LogPath(name))
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, f.Close)
	return f, nil
}

// logFile is a JSON logger writing to the named program's log file.
func (s *Stack) logFile(name string) (*logrus.Logger, error) {
	f, err := s.createLog(name)
	if err != nil {
		return nil, err
	}
	log := logrus.New()
	log.SetOutput(f)
	log.SetFormatter(&logrus.JSONFormatter{})
	return log, nil
}

func (s *Stack) newProcess(name, bin string, args, env []string) *process {
	return &process{
		name:    name,
		bin:     filepath.Join(s.opts.BinDir, bin),
		args:    args,
		env:     env,
		logPath: filepath.Join(s.opts.LogDir, name+".log"),
	}
}

// startEmulator starts a dev tool and returns the address from its ready
// line ("<name> ready on HOST:PORT").
func (s *Stack) startEmulator(ctx context.Context, name string, args ...string) (string, error) {
	p := s.newProcess(name, name, args, s.opts.Env[name])
	if err := p.start(); err != nil {
		return "", err
	}
	s.procs = append(s.procs, p)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	marker := name + " ready on "
	if err := p.waitForLine(ctx, marker); err != nil {
		return "", err
	}
	addr, err := readyAddr(p.logPath, marker)
	s.progress("%-20s ready on %s", name, addr)
	return addr, err
}

func (s *Stack) progress(format string, args ...any) {
	if s.opts.Progress != nil {
		fmt.Fprintf(s.opts.Progress, "  "+format+"\n", args...)
	}
}

func (s *Stack) startService(ctx context.Context, name, bin, healthURL string, env []string) error {
	p := s.newProcess(name, bin, nil, env)
	if err := p.start(); err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.waitForHTTP(ctx, healthURL); err != nil {
		return err
	}
	s.progress("%-20s healthy at %s", name, strings.TrimSuffix(healthURL, "/healthz"))
	return nil
}

// Process returns the named program, or nil.
func (s *Stack) process(name string) *process {
	for _, p := range s.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// Kill ends the named program with SIGKILL, as a crash would.
func (s *Stack) Kill(name string) {
	if p := s.process(name); p != nil {
		p.kill()
	}
}

// Restart starts the named program again (after Kill or StopOne) with the
// same arguments and environment, and waits until it is healthy.
func (s *Stack) Restart(ctx context.Context, name string) error {
	p := s.process(name)
	if p == nil {
		return fmt.Errorf("no program %s in the stack", name)
	}
	if err := p.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, e := range p.env {
		if addr, ok := strings.CutPrefix(e, "HTTP_ADDR="); ok {
			return p.waitForHTTP(ctx, "http://"+addr+"/healthz")
		}
	}
	return nil
}

// StopOne stops the named program gracefully (SIGTERM).
func (s *Stack) StopOne(name string) error {
	if p := s.process(name); p != nil {
		return p.stop(s.opts.StopGrace)
	}
	return nil
}

// TriggerLogPath is the log of what delivers the trigger's events to
// ingest: the project's Firestore emulator, or the bridge in front of
// Google's.
func (s *Stack) TriggerLogPath() string {
	if s.bridge != nil {
		return s.LogPath(TriggerBridge)
	}
	return s.LogPath(FirestoreEmulator)
}

// LogPath is the log file of the named program.
func (s *Stack) LogPath(name string) string {
	return filepath.Join(s.opts.LogDir, name+".log")
}

// Stop stops every program, services first, and reports those that did
// not exit cleanly.
func (s *Stack) Stop() error {
	var errs []error
	for i := len(s.procs) - 1; i >= 0; i-- {
		if err := s.procs[i].stop(s.opts.StopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	s.procs = nil
	for _, e := range s.google {
		_ = e.Close()
	}
	s.google = nil
	if s.bridge != nil {
		_ = s.bridge.Close()
		s.bridge = nil
	}
	for _, c := range s.closers {
		_ = c()
	}
	s.closers = nil
	if s.FirestoreFaults != nil {
		_ = s.FirestoreFaults.Close()
		s.FirestoreFaults = nil
	}
	if s.issuer != nil {
		_ = s.issuer.Close()
		s.issuer = nil
	}
	s.ancMu.Lock()
	if s.anc != nil {
		_ = s.anc.Close()
		s.anc = nil
	}
	s.ancMu.Unlock()
	return errors.Join(errs...)
}

// writeToken writes an ID token naming who, signed by the stack's issuer
// for the recorder, to file (only its owner may read it).
func (s *Stack) writeToken(file, who string) error {
	tok, err := s.issuer.Mint(who, RecorderAudience, tokenTTL)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the ID token of %s: %w", who, err)
	}
	return nil
}

// WebhookURL is ingest's WhatsApp webhook endpoint, where the simulator
// posts its signed status and inbound-message webhooks.
func (s *Stack) WebhookURL() string { return s.IngestURL + "/whatsapp/webhook" }

func readyAddr(logPath, marker string) (string, error) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, marker); ok {
			var addr string
			if _, err := fmt.Sscan(rest, &addr); err == nil {
				return addr, nil
			}
		}
	}
	return "", fmt.Errorf("no address after %q in %s", marker, logPath)
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "local-" + hex.EncodeToString(b), nil
}
