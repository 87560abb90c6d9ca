package app

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/pkg/tracing/tracingtest"
)

// A task's delivery continues the trace its attributes carry: the send span
// is the child of ingest's, the published result names the send span, and
// every log line of the task carries the trace.
func TestProcessContinuesTheTasksTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	ingestCtx, ingestSpan := otel.Tracer("test").Start(context.Background(), "ingest event")
	ingestSpan.End()
	h := newHarness(t, nil, ok("wamid.A"))
	d := delivery(t, textTask())
	d.Attributes = tracing.Inject(ingestCtx, d.Attributes)
	v := h.proc.Process(context.Background(), d)

	var send sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "send" {
			send = s
		}
	}
	if send == nil {
		t.Fatal("no send span ended")
	}
	want := ingestSpan.SpanContext()
	if send.SpanContext().TraceID() != want.TraceID() || send.Parent().SpanID() != want.SpanID() {
		t.Errorf("send span in trace %s under %s, want %s under %s", send.SpanContext().TraceID(), send.Parent().SpanID(), want.TraceID(), want.SpanID())
	}
	outcome := ""
	for _, kv := range send.Attributes() {
		if kv.Key == "wadispatch.outcome" {
			outcome = kv.Value.AsString()
		}
	}
	if outcome != string(v.Outcome) {
		t.Errorf("span outcome %q, verdict %q", outcome, v.Outcome)
	}

	results := h.pub.on(topology.ResultsTopic)
	if len(results) != 1 {
		t.Fatalf("%d results published (verdict %+v)", len(results), v)
	}
	got := trace.SpanContextFromContext(tracing.Extract(context.Background(), results[0].attrs))
	if got.TraceID() != want.TraceID() || got.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("result traceparent %q, want the send span %s of trace %s", results[0].attrs["traceparent"], send.SpanContext().SpanID(), want.TraceID())
	}

	wantLog := "projects/p/traces/" + want.TraceID().String()
	lines := h.logs.Entries(t)
	for _, line := range lines {
		if line["logging.googleapis.com/trace"] != wantLog {
			t.Errorf("log line %q lacks trace %s", line["message"], wantLog)
		}
	}
	if len(lines) < 2 {
		t.Errorf("%d log lines, want the claim's, the call's and the result's", len(lines))
	}
}
