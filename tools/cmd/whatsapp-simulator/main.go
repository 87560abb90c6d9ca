// Command whatsapp-simulator serves a simulated WhatsApp Cloud API (see
// pkg/testinfra/whatsappsim) with the gcloud emulators' interface: --host-port to
// listen, one ready line on stdout, a clean exit on SIGTERM or SIGINT. Flags
// mirror whatsappsim.Options.
//
//	whatsapp-simulator --host-port 127.0.0.1:8090 \
//	  --phone-number 100000000000001=local-token \
//	  --webhook-url http://127.0.0.1:8081/whatsapp/webhook --app-secret dev-secret
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "whatsapp-simulator:", err)
		os.Exit(1)
	}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := whatsappsim.DefaultOptions()
	fs := flag.NewFlagSet("whatsapp-simulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var phones, templates, faults listFlag
	hostPort := fs.String("host-port", "127.0.0.1:8090", "address to listen on (port 0 picks a free one)")
	fs.Var(&phones, "phone-number", "phoneNumberID=token accepted by the simulator (repeatable)")
	throughput := fs.Int("throughput", def.Throughput, "messages per second per phone number before 130429 (0 disables)")
	pairInterval := fs.Duration("pair-interval", def.PairInterval, "minimum spacing of messages to one recipient before 131056 (0 disables)")
	pairBurst := fs.Int("pair-burst", def.PairBurst, "messages to one recipient allowed at once before the pair interval applies")
	throttleStatus := fs.Int("throttle-http-status", def.ThrottleStatus, "HTTP status of 130429 and 131056 answers (Meta's table: 400; BSP mirrors: 429)")
	enforceWindow := fs.Bool("enforce-window", def.EnforceWindow, "reject free-form (text, interactive) messages outside the customer-service window with 131047")
	window := fs.Duration("window", def.Window, "customer-service window opened by an inbound message")
	fs.Var(&templates, "template", "approved template name:language[:param,param...] (repeatable; none means any template is accepted)")
	latency := fs.Duration("latency", 0, "delay added to every Graph API answer")
	fs.Var(&faults, "fault", `fault as JSON, e.g. {"kind":"error","code":131026,"probability":0.1} (repeatable)`)
	seed := fs.Uint64("seed", 1, "seed of probabilistic faults")
	webhookURL := fs.String("webhook-url", "", "where status and inbound-message webhooks are posted (empty: none)")
	appSecret := fs.String("app-secret", os.Getenv("WHATSAPP_APP_SECRET"), "app secret signing webhooks (default $WHATSAPP_APP_SECRET)")
	wabaID := fs.String("waba-id", def.Webhook.WABAID, "WhatsApp Business Account ID in webhooks (entry[].id)")
	display := fs.String("display-phone-number", def.Webhook.DisplayPhoneNumber, "display phone number in webhook metadata")
	sentDelay := fs.Duration("sent-delay", def.Webhook.SentDelay, "delay before the sent status webhook")
	deliveredDelay := fs.Duration("delivered-delay", def.Webhook.DeliveredDelay, "delay between sent and delivered (or failed)")
	readDelay := fs.Duration("read-delay", def.Webhook.ReadDelay, "delay between delivered and read")
	noStatuses := fs.Bool("no-statuses", false, "send no status webhooks")
	noRead := fs.Bool("no-read", false, "stop at delivered, as with read receipts off")
	duplicate := fs.Bool("duplicate-webhooks", false, "post every status webhook twice")
	reorder := fs.Bool("reorder-webhooks", false, "post each message's statuses in reverse order")
	maxAttempts := fs.Int("webhook-max-attempts", def.Webhook.MaxAttempts, "deliveries of one webhook before giving up")
	retryBackoff := fs.Duration("webhook-retry-backoff", def.Webhook.RetryBackoff, "first wait before redelivering a webhook (doubles)")
	logLevel := fs.String("log-level", "info", "log level (debug, info, warning, error)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	log, err := logging.NewTo(stderr, "whatsapp-simulator", "", *logLevel)
	if err != nil {
		return err
	}
	opts := def
	opts.PhoneNumbers = map[string]string{}
	for _, p := range phones {
		id, tok, ok := strings.Cut(p, "=")
		if !ok || id == "" || tok == "" {
			return fmt.Errorf("--phone-number %q: want phoneNumberID=token", redactPair(p))
		}
		opts.PhoneNumbers[id] = tok
	}
	for _, t := range templates {
		spec, err := parseTemplate(t)
		if err != nil {
			return err
		}
		opts.Templates = append(opts.Templates, spec)
	}
	for _, f := range faults {
		var fault whatsappsim.Fault
		dec := json.NewDecoder(strings.NewReader(f))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fault); err != nil {
			return fmt.Errorf("--fault %s: %w", f, err)
		}
		opts.Faults = append(opts.Faults, fault)
	}
	opts.Throughput, opts.PairInterval, opts.PairBurst = *throughput, *pairInterval, *pairBurst
	opts.ThrottleStatus, opts.EnforceWindow, opts.Window = *throttleStatus, *enforceWindow, *window
	opts.Latency, opts.Seed, opts.Logger = *latency, *seed, log
	w := &opts.Webhook
	w.URL, w.AppSecret, w.WABAID, w.DisplayPhoneNumber = *webhookURL, *appSecret, *wabaID, *display
	w.SentDelay, w.DeliveredDelay, w.ReadDelay = *sentDelay, *deliveredDelay, *readDelay
	w.NoStatuses, w.NoRead, w.Duplicate, w.Reorder = *noStatuses, *noRead, *duplicate, *reorder
	w.MaxAttempts, w.RetryBackoff = *maxAttempts, *retryBackoff

	sim, err := whatsappsim.New(opts)
	if err != nil {
		return err
	}
	defer sim.Close()
	l, err := net.Listen("tcp", *hostPort)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *hostPort, err)
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	log.WithField("phone_numbers", len(opts.PhoneNumbers)).WithField("webhook_url", w.URL).Info("simulator started")
	fmt.Fprintf(stdout, "whatsapp-simulator ready on %s\n", l.Addr())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// parseTemplate reads name:language[:param,param...].
func parseTemplate(v string) (whatsappsim.TemplateSpec, error) {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return whatsappsim.TemplateSpec{}, fmt.Errorf("--template %q: want name:language[:param,param...]", v)
	}
	spec := whatsappsim.TemplateSpec{Name: parts[0], Language: parts[1], BodyParameters: []string{}}
	if len(parts) == 3 && parts[2] != "" {
		spec.BodyParameters = strings.Split(parts[2], ",")
	}
	return spec, nil
}

// redactPair hides the token of a malformed --phone-number value.
func redactPair(v string) string {
	if id, _, ok := strings.Cut(v, "="); ok {
		return id + "=[REDACTED]"
	}
	return "[REDACTED]"
}
