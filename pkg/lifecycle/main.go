package lifecycle

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/tracing"
)

// Spec is a service's environment: a struct embedding config.Service.
type Spec interface {
	Common() *config.Service
}

// Main is the whole of a service's main: `-help-env` prints the variables
// spec reads; otherwise spec is loaded from the environment, the logger
// built, tracing set up from the OTEL_* variables (pkg/tracing), and run
// called until it returns. A bad environment exits 2, a failed run 1.
func Main(service string, spec Spec, run func(ctx context.Context, log *logrus.Entry) error) {
	helpEnv := flag.Bool("help-env", false, "print the environment variables "+service+" reads and exit")
	flag.Parse()
	if *helpEnv {
		if err := config.PrintUsage(os.Stdout, spec); err != nil {
			fmt.Fprintln(os.Stderr, service+":", err)
			os.Exit(2)
		}
		return
	}
	if err := config.Load(spec); err != nil {
		fmt.Fprintln(os.Stderr, service+":", err)
		os.Exit(2)
	}
	common := spec.Common()
	phones := logging.PhoneHashKey(common.LogPhoneKey)
	switch common.LogPhones {
	case "hash":
	case "clear":
		phones = logging.PhoneNumbersInClear()
	default:
		fmt.Fprintf(os.Stderr, "%s: LOG_PHONE_NUMBERS %q: want hash or clear\n", service, common.LogPhones)
		os.Exit(2)
	}
	log, err := logging.New(service, common.Project, common.LogLevel, phones)
	if err != nil {
		fmt.Fprintln(os.Stderr, service+":", err)
		os.Exit(2)
	}
	tp, err := tracing.Setup(context.Background(), service, log)
	if err != nil {
		log.WithError(err).Error("tracing from the OTEL_* environment")
		os.Exit(2)
	}
	log.WithField("exporter", tp.Exporter).Debug("tracing set up")
	err = run(context.Background(), log)
	// os.Exit skips deferred calls: flush the spans of the last messages first.
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if ferr := tp.Shutdown(flushCtx); ferr != nil {
		log.WithError(ferr).Warn("spans not flushed")
	}
	cancel()
	if err != nil {
		log.WithError(err).Error(service + " stopped")
		os.Exit(1)
	}
	log.Info(service + " stopped")
}
