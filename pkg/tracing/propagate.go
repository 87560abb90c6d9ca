package tracing

import (
	"context"
	"net/http"
	"os"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator is the wire format of trace context everywhere in wadispatch:
// W3C Trace Context, which Eventarc's CloudEvents, Cloud Trace and the
// OpenTelemetry defaults share.
var propagator propagation.TextMapPropagator = propagation.TraceContext{}

var lookupEnv = os.LookupEnv

// Inject writes ctx's span context into Pub/Sub message attributes (the
// `traceparent` and, when set, `tracestate` attributes) and returns attrs,
// allocated if nil. Without a span in ctx it adds nothing.
func Inject(ctx context.Context, attrs map[string]string) map[string]string {
	if attrs == nil {
		attrs = map[string]string{}
	}
	propagator.Inject(ctx, propagation.MapCarrier(attrs))
	return attrs
}

// Extract returns ctx carrying the remote span context of Pub/Sub message
// attributes; ctx unchanged when they carry none (or a malformed one).
func Extract(ctx context.Context, attrs map[string]string) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier(attrs))
}

// StartConsumer starts the span of handling one Pub/Sub message, in the trace
// its attributes carry (a new trace when they carry none). The caller ends it.
func StartConsumer(ctx context.Context, attrs map[string]string, name string, kv ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(Extract(ctx, attrs), name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(kv...))
}

// FromCloudEvent returns ctx carrying the remote span context of a CloudEvent:
// its distributed tracing extension (`traceparent`, `tracestate`; Eventarc
// sets them, in binary mode as ce-traceparent headers), or else the W3C
// headers of the HTTP request that delivered it.
func FromCloudEvent(ctx context.Context, ce *event.Event, h http.Header) context.Context {
	ext := propagation.MapCarrier{}
	for _, k := range propagator.Fields() {
		if v, ok := ce.Extensions()[k]; ok {
			if s, err := types.ToString(v); err == nil {
				ext[k] = s
			}
		}
	}
	if sc := remote(ext); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	if sc := remote(propagation.HeaderCarrier(h)); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

func remote(c propagation.TextMapCarrier) trace.SpanContext {
	return trace.SpanContextFromContext(propagator.Extract(context.Background(), c))
}
