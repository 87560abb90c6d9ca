package main

import (
	"context"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/pkg/tracing/tracingtest"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// The task continues the trace of Eventarc's event: its traceparent names
// ingest's span, whose parent is the event's, and every log line about the
// event carries that trace.
func TestTaskContinuesTheEventsTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	const eventTrace, eventSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req := e.chatEvent(t, "ev-traced", msgPath, textMessage()).Binary(e.url)
	req.Header.Set("Ce-Traceparent", "00-"+eventTrace+"-"+eventSpan+"-01")
	if a := e.post(t, req); a.code != http.StatusOK || a.body["outcome"] != app.OutcomePublished {
		t.Fatalf("answer %d %v", a.code, a.body)
	}
	m := e.onlyTask(t, "ev-traced")

	var ingestSpan sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "ingest event" {
			ingestSpan = s
		}
	}
	if ingestSpan == nil {
		t.Fatal("no ingest event span ended")
	}
	if got := ingestSpan.SpanContext().TraceID().String(); got != eventTrace || ingestSpan.Parent().SpanID().String() != eventSpan {
		t.Errorf("ingest span in trace %s under %s, want %s under %s", got, ingestSpan.Parent().SpanID(), eventTrace, eventSpan)
	}
	task := trace.SpanContextFromContext(tracing.Extract(context.Background(), m.Attributes))
	if task.TraceID().String() != eventTrace || task.SpanID() != ingestSpan.SpanContext().SpanID() {
		t.Errorf("task traceparent %q, want trace %s span %s", m.Attributes["traceparent"], eventTrace, ingestSpan.SpanContext().SpanID())
	}

	want := "projects/" + project + "/traces/" + eventTrace
	lines := 0
	for _, line := range e.logs.Entries(t) {
		if line["eventId"] != "ev-traced" {
			continue
		}
		lines++
		if line["logging.googleapis.com/trace"] != want {
			t.Errorf("log line %q lacks trace %s", line["message"], want)
		}
	}
	if lines < 2 {
		t.Errorf("%d log lines about the event, want its received and published lines", lines)
	}
}

// Without a traceparent the message's trace starts in ingest.
func TestUntracedEventStartsATrace(t *testing.T) {
	tracingtest.Record(t)
	e := newEnv(t, nil)
	e.seedLeaseAndEnquiry(t)
	if a := e.post(t, e.chatEvent(t, "ev-untraced", msgPath, textMessage()).Binary(e.url)); a.code != http.StatusOK {
		t.Fatalf("answer %d %v", a.code, a.body)
	}
	m := e.onlyTask(t, "ev-untraced")
	if sc := trace.SpanContextFromContext(tracing.Extract(context.Background(), m.Attributes)); !sc.IsValid() || !sc.IsSampled() {
		t.Errorf("task traceparent %q: want a new sampled trace", m.Attributes["traceparent"])
	}
}

// Each webhook notification starts a trace that its published events carry
// to the recorder.
func TestWebhookEventsCarryTheNotificationsTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	e := newHookEnv(t, hookSecret, nil)
	e.send(t, "447911123401")
	msgs := e.waitFor(t, 3)
	if err := e.sim.WaitWebhooks(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := map[trace.SpanID]bool{}
	for _, s := range rec.Ended() {
		if s.Name() == "whatsapp webhook" {
			spans[s.SpanContext().SpanID()] = true
		}
	}
	for _, m := range msgs {
		sc := trace.SpanContextFromContext(tracing.Extract(context.Background(), m.Attributes))
		if !spans[sc.SpanID()] {
			t.Errorf("%s event's traceparent %q names no webhook span", m.Attributes["schema"], m.Attributes["traceparent"])
		}
	}
}
