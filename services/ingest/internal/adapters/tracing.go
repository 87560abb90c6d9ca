package adapters

import (
	"context"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// startEventSpan starts the span of handling one CloudEvent: the message's
// trace continues Eventarc's when the event carries one, and starts here
// otherwise. The task's Pub/Sub attributes carry it on to the sender.
func startEventSpan(r *http.Request, ce *event.Event) (context.Context, trace.Span) {
	return tracing.Tracer().Start(tracing.FromCloudEvent(r.Context(), ce, r.Header), "ingest event",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("cloudevents.event_id", ce.ID()),
			attribute.String("cloudevents.event_source", ce.Source()),
			attribute.String("cloudevents.event_type", ce.Type()),
		))
}

// endEventSpan records how the event ended; a transient failure, which
// Eventarc retries, marks the span as an error.
func endEventSpan(span trace.Span, res app.Result) {
	span.SetAttributes(attribute.String("wadispatch.outcome", res.Outcome))
	if res.MessagePath != "" {
		span.SetAttributes(attribute.String("wadispatch.message_path", res.MessagePath))
	}
	if res.Reason != "" {
		span.SetAttributes(attribute.String("wadispatch.reason", res.Reason))
	}
	if res.Outcome == app.OutcomeRetry && res.Err != nil {
		span.SetStatus(codes.Error, res.Err.Error())
	}
	span.End()
}
