package main

import (
	"context"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// startSpan starts the span of one Pub/Sub message in the trace its
// attributes carry (the sender's, for a result), so the Firestore writes of
// the message's outcome land in the message's trace.
func startSpan(ctx context.Context, subscription string, msg *pubsub.Message) (context.Context, trace.Span) {
	return tracing.StartConsumer(ctx, msg.Attributes, "process "+subscription,
		attribute.String("messaging.system", "gcp_pubsub"),
		attribute.String("messaging.destination.subscription.name", subscription),
		attribute.String("messaging.message.id", msg.ID),
		attribute.String("wadispatch.message_path", msg.Attributes["messagePath"]),
	)
}

// endSpan records the verdict, as the pubsub messages metric labels it.
func endSpan(span trace.Span, v app.Verdict) {
	span.SetAttributes(
		attribute.Bool("wadispatch.ack", v.Ack),
		attribute.String("wadispatch.reason", v.Reason),
	)
	span.End()
}
