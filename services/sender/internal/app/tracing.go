package app

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/tracing"
)

// startSpan starts the span of one delivery in the message's trace, which
// ingest put in the task's attributes; the claim, the WhatsApp call and the
// result's publish happen under it.
func startSpan(ctx context.Context, d Delivery) (context.Context, trace.Span) {
	return tracing.StartConsumer(ctx, d.Attributes, "send",
		attribute.String("wadispatch.message_path", d.Attributes["messagePath"]),
		attribute.Int("messaging.gcp_pubsub.message.delivery_attempt", d.Attempt),
	)
}

// endSpan records the verdict: the outcome label of the tasks metric and
// whether the task was acked.
func endSpan(span trace.Span, v Verdict) {
	span.SetAttributes(
		attribute.String("wadispatch.outcome", string(v.Outcome)),
		attribute.String("wadispatch.ack", strconv.FormatBool(v.Ack)),
	)
	span.End()
}
