// Package logging builds the logrus loggers of the wadispatch services.
//
// Lines are single JSON objects in the shape Cloud Logging's agent parses
// from a container's stdout: `severity` (upper case), `message`, `time`, and
// `logging.googleapis.com/trace` / `spanId` so that a log line links to its
// trace. See https://cloud.google.com/logging/docs/structured-logging.
package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"
)

const (
	traceKey        = "logging.googleapis.com/trace"
	spanKey         = "logging.googleapis.com/spanId"
	traceSampledKey = "logging.googleapis.com/trace_sampled"
)

// Option changes how a logger writes.
type Option func(*CloudFormatter)

// PhoneHashKey hashes phone numbers with key, shared by every service of a
// deployment so that one driver's lines correlate across them.
func PhoneHashKey(key string) Option {
	return func(f *CloudFormatter) { f.Phones = NewPhones(key) }
}

// PhoneNumbersInClear writes phone numbers as they are: local debugging only.
func PhoneNumbersInClear() Option {
	return func(f *CloudFormatter) { f.Phones = nil }
}

// New returns a logger for service writing Cloud Logging JSON to stdout.
// projectID qualifies trace ids (projects/{projectID}/traces/{id}); level is
// a logrus level name (debug, info, warning, error). Phone numbers are
// hashed with a key of the process's own unless an option says otherwise.
func New(service, projectID, level string, opts ...Option) (*logrus.Entry, error) {
	return NewTo(os.Stdout, service, projectID, level, opts...)
}

// NewTo is New writing to w.
func NewTo(w io.Writer, service, projectID, level string, opts ...Option) (*logrus.Entry, error) {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	l := logrus.New()
	l.SetOutput(w)
	l.SetLevel(lvl)
	f := &CloudFormatter{ProjectID: projectID, Phones: NewPhones("")}
	for _, o := range opts {
		o(f)
	}
	l.SetFormatter(f)
	return l.WithField("service", service), nil
}

// WithContext returns entry carrying the trace and span of ctx's OpenTelemetry
// span, if any, so every line about one message shares its trace id.
func WithContext(ctx context.Context, entry *logrus.Entry) *logrus.Entry {
	sc := trace.SpanContextFromContext(ctx)
	entry = entry.WithContext(ctx)
	if !sc.IsValid() {
		return entry
	}
	return entry.WithFields(logrus.Fields{
		traceKey:        sc.TraceID().String(),
		spanKey:         sc.SpanID().String(),
		traceSampledKey: sc.IsSampled(),
	})
}

// CloudFormatter formats entries as Cloud Logging structured JSON.
type CloudFormatter struct {
	// ProjectID turns a bare trace id into projects/{ProjectID}/traces/{id}.
	ProjectID string
	// Phones hashes phone numbers in the message and in string and error
	// fields; nil leaves them in clear.
	Phones *Phones
}

var severities = map[logrus.Level]string{
	logrus.TraceLevel: "DEBUG",
	logrus.DebugLevel: "DEBUG",
	logrus.InfoLevel:  "INFO",
	logrus.WarnLevel:  "WARNING",
	logrus.ErrorLevel: "ERROR",
	logrus.FatalLevel: "CRITICAL",
	logrus.PanicLevel: "ALERT",
}

// Format implements logrus.Formatter.
func (f *CloudFormatter) Format(e *logrus.Entry) ([]byte, error) {
	out := make(map[string]any, len(e.Data)+3)
	redact := func(s string) string { return s }
	if f.Phones != nil {
		redact = f.Phones.Redact
	}
	for k, v := range e.Data {
		switch v := v.(type) {
		case error:
			// encoding/json renders most errors as {}.
			out[k] = redact(v.Error())
		case string:
			out[k] = redact(v)
		default:
			out[k] = v
		}
	}
	if id, ok := out[traceKey].(string); ok && f.ProjectID != "" {
		out[traceKey] = "projects/" + f.ProjectID + "/traces/" + id
	}
	out["severity"] = severities[e.Level]
	out["message"] = redact(e.Message)
	out["time"] = e.Time.UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("log entry to JSON: %w", err)
	}
	return append(b, '\n'), nil
}
