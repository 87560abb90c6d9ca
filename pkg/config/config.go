// Package config loads a service's settings from environment variables.
//
// Settings are plain structs tagged for github.com/kelseyhightower/envconfig
// (`envconfig:"NAME" default:"..." required:"true"`), so the README's table
// and the code cannot drift: `<service> -help-env` prints the table from the
// same struct.
package config

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Load fills spec from the environment. The error names the variable that is
// missing or malformed, e.g. `assigning SENDER_CONCURRENCY to Concurrency:
// converting 'x' to type int`.
func Load(spec any) error {
	if err := envconfig.Process("", spec); err != nil {
		return fmt.Errorf("configuration from environment: %w", err)
	}
	return nil
}

// PrintUsage writes the variables spec reads, with their defaults and help.
func PrintUsage(w io.Writer, spec any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	const format = "VARIABLE\tTYPE\tDEFAULT\tDESCRIPTION\n" +
		"{{range .}}{{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef("", spec, tw, format); err != nil {
		return err
	}
	return tw.Flush()
}

// Service is the part of the environment every wadispatch service reads;
// services embed it in their own spec.
type Service struct {
	Project       string        `envconfig:"GOOGLE_CLOUD_PROJECT" default:"wadispatch-local" desc:"Google Cloud project of Firestore, Pub/Sub and Secret Manager"`
	LogLevel      string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warning or error"`
	LogPhones     string        `envconfig:"LOG_PHONE_NUMBERS" default:"hash" desc:"driver phone numbers in log lines: hash (a keyed hash, tel:…) or clear (local debugging only)"`
	LogPhoneKey   string        `envconfig:"LOG_PHONE_HASH_KEY" desc:"key of the phone number hash, the same for every service so one driver's lines correlate; unset, each process picks its own. Never logged"`
	HTTPAddr      string        `envconfig:"HTTP_ADDR" default:":8080" desc:"probes and metrics (/healthz, /readyz, /metrics); ingest serves its own endpoints on INGEST_ADDR"`
	ShutdownGrace time.Duration `envconfig:"SHUTDOWN_GRACE" default:"25s" desc:"how long in-flight work may finish after SIGTERM"`
	Profiling     bool          `envconfig:"PPROF" default:"false" desc:"serve Go's runtime profiles at /debug/pprof/ on HTTP_ADDR, for load tests (make bench --profile); off in production, where that port is open to the metrics scrapers"`
}

// Common returns the shared settings of a spec that embeds Service.
func (s *Service) Common() *Service { return s }
