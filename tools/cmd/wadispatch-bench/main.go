// Command wadispatch-bench drives the local stack's real processes at
// increasing rates and prints, per rate, end-to-end throughput, latencies,
// Firestore calls per message and the services' CPU and memory; then the
// same for the seed design (tools/baseline) and the ratios; then the
// hot-document case (one user's burst of 1,000 messages, each document held
// to a sustained write rate as Firestore holds it) for both designs.
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
	settle := fs.Duration("settle", 90*time.Second, "longest wait for a rate's messages to reach a final state (and, in the hot-document case, to be counted)")
	pullStreams := fs.Int("pull-streams", 4, "streaming pulls of the task consumers (the local Pub/Sub server gives one about 100 messages/s)")
	recorders := fs.Int("recorders", 1, "recorders wadispatch runs; the sender balances its claims over them (CLAIMS BY RECORDER)")
	baseline := fs.Bool("baseline", true, "also measure the seed design and print the ratios")
	rssEvery := fs.Duration("rss-every", 0, "sample every process's resident memory at this interval while a rate runs, and print the series (e.g. 1m, for a long --duration)")
	profile := fs.Bool("profile", false, "take a CPU profile of each wadispatch service per rate (into the log folder) and print the top of each")
	hotDocument := fs.Bool("hot-document", true, "then run the hot-document case (one user's burst to many drivers, the emulator holding each document to --document-write-rate) for both designs")
	hotOnly := fs.Bool("hot-document-only", false, "run only the hot-document case")
	hot := bench.HotDocument{}
	fs.IntVar(&hot.Messages, "hot-messages", 1000, "hot-document case: messages from the one user, each to its own driver")
	fs.IntVar(&hot.Rate, "hot-rate", 200, "hot-document case: messages offered per second")
	fs.Float64Var(&hot.DocumentWriteRate, "document-write-rate", 20, "hot-document case: writes per second the emulator lets each document take (Firestore's 1/s, scaled as --hot-rate is to a burst: 200 offered against 20/s shows in seconds what a burst does to 1/s)")
	fs.IntVar(&hot.DocumentWriteBurst, "document-write-burst", 5, "hot-document case: writes a document idle for a while takes at once (a message's own few writes pass)")
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
	cfg.RSSEvery = *rssEvery
	if *profile {
		cfg.ProfileDir = filepath.Join(cfg.LogDir, "profiles")
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "wadispatch-bench:", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *hotOnly {
		err = runHot(ctx, cfg, hot)
	} else if err = run(ctx, cfg, *baseline); err == nil && *hotDocument {
		fmt.Println()
		err = runHot(ctx, cfg, hot)
	}
	if err != nil {
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
		if err := bench.PrintComparison(os.Stdout, wad, base); err != nil {
			return err
		}
	}
	if cfg.RSSEvery > 0 {
		fmt.Println("\nResident memory (MB) while each rate ran:")
		bench.PrintRSS(os.Stdout, rows)
	}
	var profiles []string
	for _, r := range wad {
		profiles = append(profiles, r.Profiles...)
	}
	if len(profiles) > 0 {
		fmt.Printf("\nCPU profiles (%s), top functions by flat time:\n", cfg.ProfileDir)
		return bench.PrintProfileTops(os.Stdout, profiles, 15)
	}
	return nil
}

// runHot runs and prints the hot-document case.
func runHot(ctx context.Context, cfg bench.Config, hot bench.HotDocument) error {
	rows, err := bench.RunHotDocument(ctx, cfg, hot)
	if err != nil {
		return fmt.Errorf("hot document: %w", err)
	}
	return bench.PrintHotDocument(os.Stdout, hot, rows)
}
