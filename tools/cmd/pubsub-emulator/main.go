// Command pubsub-emulator runs the Pub/Sub fake server (pstest) with
// wadispatch's topics and subscriptions, like `gcloud beta emulators pubsub
// start`: --host-port to listen, a ready line on stdout, stop on SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
)

func main() {
	hostPort := flag.String("host-port", "127.0.0.1:8085", "address to listen on")
	project := flag.String("project", envOr("PUBSUB_PROJECT_ID", "wadispatch-local"), "project whose topology is created")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	topo, err := topology.Default()
	if err != nil {
		fail(err)
	}
	srv, err := pubsubemu.Start(ctx, *hostPort, *project, topo)
	if err != nil {
		fail(err)
	}
	fmt.Printf("pubsub-emulator ready on %s (project %s, %d topics, %d subscriptions)\n",
		srv.Addr, *project, len(topo.Topics), len(topo.Subscriptions))
	fmt.Printf("export PUBSUB_EMULATOR_HOST=%s\n", srv.Addr)
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fail(err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pubsub-emulator:", err)
	os.Exit(1)
}
