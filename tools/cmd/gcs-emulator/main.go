// Command gcs-emulator runs fake-gcs-server (package pkg/testinfra/gcsemu),
// the maintained Cloud Storage emulator, with the gcloud emulators'
// interface: --host-port to listen, a ready line on stdout, stop on SIGTERM.
//
//	gcs-emulator --host-port 127.0.0.1:0 --bucket wadispatch-media-local
//
// It prints "gcs-emulator ready on HOST:PORT" and an export line for
// STORAGE_EMULATOR_HOST, which the official clients honour. Objects are
// kept in memory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/visn/wadispatch/pkg/testinfra/gcsemu"
)

type bucketFlags []string

func (b *bucketFlags) String() string     { return strings.Join(*b, ",") }
func (b *bucketFlags) Set(v string) error { *b = append(*b, v); return nil }

func main() {
	hostPort := flag.String("host-port", "127.0.0.1:4443", "address to listen on")
	var buckets bucketFlags
	flag.Var(&buckets, "bucket", "bucket to create at start (repeatable)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := gcsemu.Start(*hostPort, buckets...)
	if err != nil {
		fail(err)
	}
	fmt.Printf("gcs-emulator ready on %s (buckets: %s)\n", srv.Addr, buckets.String())
	fmt.Printf("export STORAGE_EMULATOR_HOST=%s\n", srv.Addr)
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gcs-emulator:", err)
	os.Exit(1)
}
