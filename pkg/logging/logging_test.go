package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/visn/wadispatch/pkg/logging"
)

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("log line is not JSON: %v: %s", err, b)
	}
	return m
}

func TestLinesHaveCloudLoggingShape(t *testing.T) {
	var buf bytes.Buffer
	log, err := logging.NewTo(&buf, "sender", "visn-prod", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.WithError(errors.New("boom")).WithField("messagePath", "leasecompany/l1").Warn("send failed")
	m := decode(t, buf.Bytes())
	want := map[string]any{
		"severity": "WARNING", "message": "send failed", "service": "sender",
		"error": "boom", "messagePath": "leasecompany/l1",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["time"]; !ok {
		t.Error("no time field")
	}
}

func TestDebugIsDroppedAtInfoLevel(t *testing.T) {
	var buf bytes.Buffer
	log, _ := logging.NewTo(&buf, "ingest", "p", "info")
	log.Debug("noise")
	if buf.Len() != 0 {
		t.Fatalf("debug line written at info level: %s", buf.String())
	}
}

func TestBadLevelIsAnError(t *testing.T) {
	if _, err := logging.NewTo(&bytes.Buffer{}, "ingest", "p", "loud"); err == nil {
		t.Fatal("no error for level loud")
	}
}

func TestWithContextAddsTraceOfSpan(t *testing.T) {
	var buf bytes.Buffer
	log, _ := logging.NewTo(&buf, "recorder", "visn-prod", "info")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled,
	}))
	logging.WithContext(ctx, log).Info("recorded")
	m := decode(t, buf.Bytes())
	if got := m["logging.googleapis.com/trace"]; got != "projects/visn-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace = %v", got)
	}
	if got := m["logging.googleapis.com/spanId"]; got != "00f067aa0ba902b7" {
		t.Errorf("spanId = %v", got)
	}
}
