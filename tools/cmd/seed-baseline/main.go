// Command seed-baseline runs the seed design of the send flow (package
// tools/baseline) for the load harness to compare wadispatch with:
//
//	seed-baseline validate --host-port 127.0.0.1:0   # the document-created function (CloudEvents at /)
//	seed-baseline send --host-port 127.0.0.1:0 --whatsapp-base-url URL --tokens '{"ref":"token"}'
//
// Both use FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST and
// GOOGLE_CLOUD_PROJECT, serve /healthz on --host-port, print
// "seed-baseline ready on HOST:PORT" and stop on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/ops"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/whatsapp"

	"github.com/visn/wadispatch/tools/baseline"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "validate" && os.Args[1] != "send") {
		fmt.Fprintln(os.Stderr, "usage: seed-baseline validate|send [flags]")
		os.Exit(2)
	}
	role := os.Args[1]
	fs := flag.NewFlagSet("seed-baseline "+role, flag.ExitOnError)
	hostPort := fs.String("host-port", "127.0.0.1:0", "address of /healthz (and, for validate, of the CloudEvents endpoint /)")
	baseURL := fs.String("whatsapp-base-url", "https://graph.facebook.com", "send: WhatsApp Cloud API base URL")
	tokens := fs.String("tokens", "", "send: JSON object from token reference to WhatsApp token")
	concurrency := fs.Int("concurrency", 64, "send: tasks handled at once")
	pullStreams := fs.Int("pull-streams", 1, "send: Pub/Sub streaming pulls")
	logLevel := fs.String("log-level", "info", "debug, info, warning or error")
	_ = fs.Parse(os.Args[2:])

	project := os.Getenv("GOOGLE_CLOUD_PROJECT")
	if project == "" {
		project = "wadispatch-local"
	}
	log, err := logging.New("seed-baseline-"+role, project, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := run(context.Background(), role, project, *hostPort, *baseURL, *tokens, *concurrency, *pullStreams, log); err != nil {
		log.WithError(err).Error("seed-baseline failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, role, project, hostPort, baseURL, tokens string, concurrency, pullStreams int, log *logrus.Entry) error {
	db, err := firestore.NewClient(ctx, project)
	if err != nil {
		return fmt.Errorf("firestore: %w", err)
	}
	defer db.Close()
	ps, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return fmt.Errorf("pubsub: %w", err)
	}
	defer ps.Close()
	srv, err := ops.New(hostPort)
	if err != nil {
		return err
	}
	parts := []lifecycle.Part{func(ctx context.Context) error { return srv.Run(ctx, 5*time.Second) }}

	switch role {
	case "validate":
		pub := ps.Publisher(topology.TasksTopic)
		defer pub.Stop()
		srv.Handle("POST /", &baseline.Validator{
			FS: db, Publisher: pub, Region: "GB", Log: log,
			Defaults: chatmessage.ConfigDefaults{APIVersion: "v23.0", TemplateLanguage: "en_US"},
		})
	case "send":
		anc, err := firestore.NewClientWithDatabase(ctx, project, "ancillary")
		if err != nil {
			return fmt.Errorf("firestore ancillary: %w", err)
		}
		defer anc.Close()
		local, err := whatsapp.LoadLocalTokens(tokens, "")
		if err != nil {
			return err
		}
		wa, err := whatsapp.NewClient(whatsapp.Config{BaseURL: baseURL, MaxIdleConnsPerHost: concurrency})
		if err != nil {
			return err
		}
		w := &baseline.Worker{
			FS: db, Ancillary: anc, WhatsApp: wa, Tokens: local, APIVersion: "v23.0", Log: log,
			MetricsPath: func(leaseID, user string) string {
				return "leasecompany/" + leaseID + "/performanceMetrics/" + user
			},
		}
		sub := ps.Subscriber(topology.TasksSubscription)
		sub.ReceiveSettings.MaxOutstandingMessages = concurrency
		sub.ReceiveSettings.NumGoroutines = pullStreams
		parts = append(parts, func(ctx context.Context) error {
			return sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
				if err := w.Handle(ctx, m.Data); err != nil {
					log.WithError(err).Warn("task failed; nacked")
					m.Nack()
					return
				}
				m.Ack()
			})
		})
	}
	fmt.Printf("seed-baseline ready on %s\n", srv.Addr())
	return lifecycle.Run(ctx, parts...)
}
