// Package tracing sets up OpenTelemetry for a wadispatch program and carries
// one trace per chat message across the hops the platform's own
// instrumentation does not cover: Eventarc's CloudEvent into ingest, and the
// Pub/Sub messages between ingest, the sender and the recorder (the W3C
// `traceparent`/`tracestate` attributes). gRPC and HTTP calls carry it through
// otelgrpc and otelhttp, which use the propagator Setup installs.
//
// Spans are always created, exported or not, so that every log line written
// under a span (logging.WithContext) has a trace id to correlate by; they are
// exported by OTLP only when the standard OTEL_* variables ask for it (see
// docs/observability.md).
package tracing

import (
	"context"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName is the scope of the spans this project starts itself.
const instrumentationName = "github.com/visn/wadispatch"

// Protocols of the OTLP exporter, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Provider is the tracing of one process.
type Provider struct {
	tp *sdktrace.TracerProvider
	// Exporter says where spans go: "otlp grpc", "otlp http/protobuf", or
	// "none" (spans exist for log correlation but are not exported).
	Exporter string
}

// Setup installs, process-wide, the W3C TraceContext propagator and a tracer
// provider whose resource names service (OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override it). The sampler is the SDK's default,
// parent-based always-on, unless OTEL_TRACES_SAMPLER says otherwise. Export
// errors are logged to log. Call Shutdown before exiting to flush.
func Setup(ctx context.Context, service string, log *logrus.Entry) (*Provider, error) {
	otel.SetTextMapPropagator(propagator)
	exp, err := exporterFromEnv(lookupEnv)
	if err != nil {
		return nil, err
	}
	if exp.disabled {
		return &Provider{Exporter: "none (OTEL_SDK_DISABLED)"}, nil
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	name := "none"
	if exp.protocol != "" {
		var se sdktrace.SpanExporter
		switch exp.protocol {
		case ProtocolGRPC:
			se, err = otlptracegrpc.New(ctx)
		case ProtocolHTTPProtobuf:
			se, err = otlptracehttp.New(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("OTLP %s trace exporter: %w", exp.protocol, err)
		}
		opts = append(opts, sdktrace.WithBatcher(se))
		name = "otlp " + exp.protocol
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.WithError(err).Warn("tracing: spans not exported")
	}))
	return &Provider{tp: tp, Exporter: name}, nil
}

// Shutdown exports the spans still buffered and stops the provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.tp == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}

// Tracer is the tracer of the spans wadispatch starts itself; it follows the
// global provider, so it works before and after Setup.
func Tracer() trace.Tracer { return otel.Tracer(instrumentationName) }

// exporterChoice is what the environment asks of tracing.
type exporterChoice struct {
	// disabled: OTEL_SDK_DISABLED=true, no SDK at all.
	disabled bool
	// protocol of the OTLP exporter; "" exports nothing.
	protocol string
}

// exporterFromEnv reads the OpenTelemetry SDK variables that decide whether
// and how spans are exported; the exporters read the rest themselves
// (endpoint, headers, timeout, compression, certificates).
func exporterFromEnv(getenv func(string) (string, bool)) (exporterChoice, error) {
	get := func(k string) string { v, _ := getenv(k); return strings.TrimSpace(v) }
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") {
		return exporterChoice{disabled: true}, nil
	}
	endpoint := get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || get("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	switch e := get("OTEL_TRACES_EXPORTER"); e {
	case "none":
		return exporterChoice{}, nil
	case "":
		// Unlike the SDK specification's default (otlp to localhost), a
		// program with no endpoint exports nothing: local runs and tests
		// have no collector, and a failing exporter only makes noise.
		if !endpoint {
			return exporterChoice{}, nil
		}
	case "otlp":
	default:
		return exporterChoice{}, fmt.Errorf("OTEL_TRACES_EXPORTER %q: only otlp and none are supported", e)
	}
	protocol := get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = get("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "":
		return exporterChoice{protocol: ProtocolHTTPProtobuf}, nil
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		return exporterChoice{protocol: protocol}, nil
	}
	return exporterChoice{}, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: only grpc and http/protobuf are supported", protocol)
}
