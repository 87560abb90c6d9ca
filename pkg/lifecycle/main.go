package lifecycle

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/config"
	"github.com/visn/wadispatch/pkg/logging"
)

// Spec is a service's environment: a struct embedding config.Service.
type Spec interface {
	Common() *config.Service
}

// Main is the whole of a service's main: `-help-env` prints the variables
// spec reads; otherwise spec is loaded from the environment, the logger
// built, and run called until it returns. A bad environment exits 2, a
// failed run 1.
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
	log, err := logging.New(service, common.Project, common.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, service+":", err)
		os.Exit(2)
	}
	if err := run(context.Background(), log); err != nil {
		log.WithError(err).Error(service + " stopped")
		os.Exit(1)
	}
	log.Info(service + " stopped")
}
