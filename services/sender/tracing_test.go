package main

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/pkg/tracing/tracingtest"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// A task's delivery continues the trace its attributes carry: the send span
// is the child of ingest's, the published result names the send span, and
// every log line of the task carries the trace.
func TestProcessContinuesTheTasksTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	ingestCtx, ingestSpan := otel.Tracer("test").Start(context.Background(), "ingest event")
	ingestSpan.End()
	s := newStack(t, simOptions(), true)
	task := s.newTask("traced-1", driver(1), wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE)
	s.startSender(s.testSpec("sender-a"))
	s.publishIn(ingestCtx, task, true)
	s.waitForSent(20*time.Second, task.GetMessageDocId())

	var send sdktrace.ReadOnlySpan
	s.waitFor(10*time.Second, "the send span", func() bool {
		for _, sp := range rec.Ended() {
			if sp.Name() == "send" {
				send = sp
			}
		}
		return send != nil
	})
	want := ingestSpan.SpanContext()
	if send.SpanContext().TraceID() != want.TraceID() || send.Parent().SpanID() != want.SpanID() {
		t.Errorf("send span in trace %s under %s, want %s under %s", send.SpanContext().TraceID(), send.Parent().SpanID(), want.TraceID(), want.SpanID())
	}
	attrs := map[string]string{}
	for _, kv := range send.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["wadispatch.reason"] != "sent" || attrs["wadispatch.ack"] != "true" {
		t.Errorf("send span verdict: reason %q ack %q, want sent and true", attrs["wadispatch.reason"], attrs["wadispatch.ack"])
	}

	s.mu.Lock()
	results := s.resultAttrs[task.GetMessageDocId()]
	s.mu.Unlock()
	if len(results) != 1 {
		t.Fatalf("%d results published", len(results))
	}
	got := trace.SpanContextFromContext(tracing.Extract(context.Background(), results[0]))
	if got.TraceID() != want.TraceID() || got.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("result traceparent %q, want the send span %s of trace %s", results[0]["traceparent"], send.SpanContext().SpanID(), want.TraceID())
	}

	s.waitForLogs(10*time.Second, "result published")
	wantLog := "projects/" + testProject + "/traces/" + want.TraceID().String()
	n := 0
	for _, line := range s.logs.Entries(t) {
		if line["messagePath"] != task.GetMessageDocId() || line["service"] != "sender" {
			continue
		}
		n++
		if line["logging.googleapis.com/trace"] != wantLog {
			t.Errorf("log line %q lacks trace %s", line["message"], wantLog)
		}
	}
	if n < 2 {
		t.Errorf("%d log lines of the task, want the claim's, the call's and the result's", n)
	}
}
