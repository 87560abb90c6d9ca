package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkHop is what tracing adds to one message on one hop when nothing is
// exported (Setup without an endpoint): extract the attributes' context,
// start and end the span, inject it into the next message's attributes.
func BenchmarkHop(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	b.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })
	parent, span := Tracer().Start(context.Background(), "ingest event")
	in := Inject(parent, map[string]string{"messagePath": "leasecompany/l/enquiries/e/whatsapp/messages/chatMessages/m"})
	span.End()
	b.ReportAllocs()
	for b.Loop() {
		ctx, span := StartConsumer(context.Background(), in, "send")
		out := Inject(ctx, map[string]string{"messagePath": in["messagePath"]})
		span.End()
		if out["traceparent"] == "" {
			b.Fatal("nothing injected")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hops/s")
}
