// Package lifecycle runs a service's long-lived parts together and stops
// them all on SIGTERM or SIGINT, or when one of them fails.
package lifecycle

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"
)

// Part is a long-lived piece of a service (a server, a subscriber). It runs
// until ctx is done, finishes its in-flight work, and returns nil; or it
// returns an error that stops the others.
type Part func(ctx context.Context) error

// Run runs parts until SIGTERM/SIGINT or the first failure, then waits for
// all of them to return.
func Run(ctx context.Context, parts ...Part) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error { return p(ctx) })
	}
	return g.Wait()
}
