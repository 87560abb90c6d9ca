// Command wadispatch-bench drives the local stack's real processes at
// increasing rates and prints, per rate, end-to-end throughput, latencies,
// Firestore calls per message and the services' CPU and memory; then the
// same for the seed design (tools/baseline) and the ratios.
//
//	make build && bin/wadispatch-bench --bin bin
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/visn/wadispatch/tools/bench"
)

func main() {
	fs := flag.NewFlagSet("wadispatch-bench", flag.ExitOnError)
	bin := fs.String("bin", "bin", "folder holding the built programs (make build)")
	logs := fs.String("logs", ".run/bench", "folder for the programs' logs")
	rates := fs.String("rates", "25,50,100,200", "offered loads in messages per second, comma-separated")
	duration := fs.Duration("duration", 10*time.Second, "how long each rate is offered")
	settle := fs.Duration("settle", 90*time.Second, "longest wait for a rate's messages to reach a final state")
	pullStreams := fs.Int("pull-streams", 4, "streaming pulls of the task consumers (the local Pub/Sub server gives one about 100 messages/s)")
	recorders := fs.Int("recorders", 1, "recorders wadispatch runs; the sender balances its claims over them (CLAIMS BY RECORDER)")
	baseline := fs.Bool("baseline", true, "also measure the seed design and print the ratios")
	_ = fs.Parse(os.Args[1:])

	cfg := bench.Config{Duration: *duration, Settle: *settle, PullStreams: *pullStreams, Recorders: *recorders, Progress: os.Stderr}
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "wadispatch-bench: bad rate %q\n", r)
			os.Exit(2)
		}
		cfg.Rates = append(cfg.Rates, n)
	}
	var err error
	if cfg.BinDir, err = filepath.Abs(*bin); err != nil {
		fmt.Fprintln(os.Stderr, "wadispatch-bench:", err)
		os.Exit(1)
	}
	cfg.LogDir = filepath.Join(*logs, time.Now().UTC().Format("20060102T150405"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, *baseline); err != nil {
		fmt.Fprintln(os.Stderr, "wadispatch-bench:", err, "(logs in "+cfg.LogDir+")")
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg bench.Config, baseline bool) error {
	fmt.Printf("wadispatch-bench: %d CPUs, %s, rates %v/s for %s each (logs in %s)\n\n",
		runtime.NumCPU(), runtime.Version(), cfg.Rates, cfg.Duration, cfg.LogDir)
	wad, err := bench.RunWadispatch(ctx, cfg)
	if err != nil {
		return fmt.Errorf("wadispatch: %w", err)
	}
	rows := wad
	var base []bench.Row
	if baseline {
		if base, err = bench.RunBaseline(ctx, cfg); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		rows = append(rows, base...)
	}
	if err := bench.PrintTable(os.Stdout, rows); err != nil {
		return err
	}
	fmt.Println("\nFirestore calls per message by method:")
	bench.PrintMethods(os.Stdout, rows)
	if baseline {
		fmt.Println()
		return bench.PrintComparison(os.Stdout, wad, base)
	}
	return nil
}
