// Command wadispatch-stack runs wadispatch locally as separate processes.
//
//	wadispatch-stack demo   # run the flow once as the V-Customer, print a table, exit 0 if all went as expected
//	wadispatch-stack run    # start the stack and leave it running until Ctrl-C
//	wadispatch-stack gcloud # say whether Google's emulators can run here (exit 1 and why, if not)
//
// WADISPATCH_EMULATORS=gcloud runs demo and run on Google's Firestore and
// Pub/Sub emulators instead of the project's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/visn/wadispatch/pkg/testinfra/gcloudemu"
	"github.com/visn/wadispatch/tools/stack"
)

func main() {
	fs := flag.NewFlagSet("wadispatch-stack", flag.ExitOnError)
	bin := fs.String("bin", "bin", "folder holding the built programs (make build)")
	logs := fs.String("logs", ".run/logs", "folder for the programs' logs")
	recorders := fs.Int("recorders", 1, "recorders to run; the sender balances its claims over them")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: wadispatch-stack [--bin DIR] [--logs DIR] [--recorders N] demo|run|gcloud")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() == 1 && fs.Arg(0) == "gcloud" {
		if err := gcloudemu.Available(); err != nil {
			fmt.Println("Google's emulators cannot run here:", err)
			os.Exit(1)
		}
		root, _ := gcloudemu.SDKRoot()
		fmt.Println("Google's emulators are installed in", root)
		return
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "demo" && fs.Arg(0) != "run") {
		fs.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ok, err := run(ctx, fs.Arg(0), *bin, *logs, *recorders)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wadispatch-stack:", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "wadispatch-stack: not every outcome was the expected one (see the table; logs in", *logs+")")
		os.Exit(1)
	}
}

func run(ctx context.Context, mode, bin, logs string, recorders int) (ok bool, err error) {
	bin, err = filepath.Abs(bin)
	if err != nil {
		return false, err
	}
	fmt.Printf("starting the local stack (logs in %s)\n", logs)
	started := time.Now()
	s, err := stack.Start(ctx, stack.Options{BinDir: bin, LogDir: logs, Recorders: recorders, Progress: os.Stdout})
	if err != nil {
		return false, err
	}
	defer func() {
		fmt.Println("stopping the local stack")
		if stopErr := s.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	fmt.Printf("stack ready in %s\n", time.Since(started).Round(time.Millisecond))
	if mode == "demo" {
		return s.RunDemo(ctx, os.Stdout)
	}
	fmt.Printf(`
  Firestore emulator   export FIRESTORE_EMULATOR_HOST=%s
  Pub/Sub emulator     export PUBSUB_EMULATOR_HOST=%s
  Storage emulator     export STORAGE_EMULATOR_HOST=%s  (drivers' media in gs://%s)
  WhatsApp simulator   %s  (admin: %s/_sim/messages)
  ingest               %s  (CloudEvents at /, the webhook at /whatsapp/webhook; metrics at %s/metrics)
  sender               %s
  recorder             gRPC %s  (ops %s)%s
  wadispatchctl        WADISPATCH_ID_TOKEN_FILE=%s bin/wadispatchctl --addr %s status <messagePath>
                       PUBSUB_EMULATOR_HOST=%s bin/wadispatchctl deadletters list

The lease %q is seeded; create documents under
leasecompany/%s/enquiries/<enquiryId>/whatsapp/messages/chatMessages/ to send.
A service that stops is reported and restarted; Ctrl-C stops everything.
`, s.FirestoreAddr, s.PubSubAddr, s.StorageAddr, s.MediaBucket, s.SimulatorURL, s.SimulatorURL, s.IngestURL, s.IngestOpsURL, s.SenderURL,
		s.RecorderAddr, s.RecorderURL, otherRecorders(s), s.OperatorTokenFile, s.RecorderAddr, s.PubSubAddr, stack.DemoLease, stack.DemoLease)
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		return false, err
	}
	defer fs.Close()
	if err := s.SeedLease(ctx, fs); err != nil {
		return false, err
	}
	s.Supervise(ctx, func(name string, exit, restart error) {
		if restart != nil {
			fmt.Printf("%s stopped (%v) and could not be restarted: %v (its log: %s)\n", name, exit, restart, s.LogPath(name))
			return
		}
		fmt.Printf("%s stopped (%v); restarted (its log: %s)\n", name, exit, s.LogPath(name))
	})
	return true, nil
}

// otherRecorders lists the recorders after the first, one line each.
func otherRecorders(s *stack.Stack) string {
	var b strings.Builder
	for i := 1; i < len(s.RecorderAddrs); i++ {
		fmt.Fprintf(&b, "\n  %-20s gRPC %s  (ops %s)", stack.RecorderName(i), s.RecorderAddrs[i], s.RecorderURLs[i])
	}
	return b.String()
}
