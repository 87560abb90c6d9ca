package stack_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/stack"
)

// otlpSpan is one exported span, flattened.
type otlpSpan struct {
	service, name, traceID, spanID, parentID string
	kind                                     tracepb.Span_SpanKind
	attrs                                    map[string]string
}

// otlpCollector is an OTLP/HTTP trace receiver (POST /v1/traces with a
// protobuf ExportTraceServiceRequest), keeping every span in memory.
type otlpCollector struct {
	mu    sync.Mutex
	spans []otlpSpan
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range sp.GetAttributes() {
					attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
				}
				c.spans = append(c.spans, otlpSpan{
					service: service, name: sp.GetName(), kind: sp.GetKind(), attrs: attrs,
					traceID: hex.EncodeToString(sp.GetTraceId()), spanID: hex.EncodeToString(sp.GetSpanId()),
					parentID: hex.EncodeToString(sp.GetParentSpanId()),
				})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *otlpCollector) snapshot() []otlpSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]otlpSpan(nil), c.spans...)
}

// One message, one trace: ingest's span for the Firestore event, the
// sender's send with its recorder claim (client and server side) and its
// WhatsApp call, and the recorder's handling of the result, all exported by
// the real processes to an OTLP endpoint; and the log lines about the
// message in all three carry that trace.
func TestOneTracePerMessageAcrossTheServices(t *testing.T) {
	collector := &otlpCollector{}
	srv := httptest.NewServer(collector)
	defer srv.Close()
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100"}
	const project = "wadispatch-local"
	s, fs, ctx := setup(t, stack.Options{Project: project, Env: map[string][]string{stack.Ingest: otel, stack.Sender: otel, stack.Recorder: otel}})
	// A template: it needs no open 24-hour window.
	var fields map[string]any
	for _, c := range stack.DemoCases() {
		if c.ID == "msg-template" {
			fields = c.Fields
		}
	}
	path := dispatch.MessageRef{LeaseID: stack.DemoLease, EnquiryID: stack.DemoEnquiry, MessageID: "msg-traced"}.Path()
	if _, err := fs.Doc(path).Create(ctx, fields); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, ctx, fs, path, "SENT")

	// The spans of one trace, found from ingest's span of this message.
	want := []struct {
		service, name string
		kind          tracepb.Span_SpanKind
	}{
		{stack.Ingest, "ingest event", tracepb.Span_SPAN_KIND_CONSUMER},
		{stack.Sender, "send", tracepb.Span_SPAN_KIND_CONSUMER},
		{stack.Sender, "wadispatch.v1.Recorder/ClaimSend", tracepb.Span_SPAN_KIND_CLIENT},
		{stack.Recorder, "wadispatch.v1.Recorder/ClaimSend", tracepb.Span_SPAN_KIND_SERVER},
		{stack.Sender, "HTTP POST", tracepb.Span_SPAN_KIND_CLIENT},
		{stack.Recorder, "process whatsapp-message-results-recorder", tracepb.Span_SPAN_KIND_CONSUMER},
	}
	var traceID string
	var missing []string
	for {
		spans := collector.snapshot()
		if traceID == "" {
			for _, sp := range spans {
				if sp.service == stack.Ingest && sp.name == "ingest event" && sp.attrs["wadispatch.message_path"] == path {
					traceID = sp.traceID
				}
			}
		}
		missing = missing[:0]
		for _, w := range want {
			found := false
			for _, sp := range spans {
				found = found || (sp.traceID == traceID && sp.service == w.service && sp.name == w.name && sp.kind == w.kind)
			}
			if !found {
				missing = append(missing, fmt.Sprintf("%s %q (%s)", w.service, w.name, w.kind))
			}
		}
		if traceID != "" && len(missing) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for _, sp := range collector.snapshot() {
				t.Logf("exported: %s %q %s trace %s parent %s", sp.service, sp.name, sp.kind, sp.traceID, sp.parentID)
			}
			t.Fatalf("trace %q of %s lacks %v", traceID, path, missing)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Every span of the trace but ingest's has its parent in the trace: no
	// hop started a trace of its own.
	inTrace := map[string]bool{}
	for _, sp := range collector.snapshot() {
		if sp.traceID == traceID {
			inTrace[sp.spanID] = true
		}
	}
	for _, sp := range collector.snapshot() {
		if sp.traceID == traceID && sp.name != "ingest event" && !inTrace[sp.parentID] {
			t.Errorf("%s span %q has parent %s outside the exported trace", sp.service, sp.name, sp.parentID)
		}
	}

	wantTrace := "projects/" + project + "/traces/" + traceID
	ingestLines := logLines(t, s.LogPath(stack.Ingest), func(l map[string]any) bool { return l["messagePath"] == path })
	senderLines := logLines(t, s.LogPath(stack.Sender), func(l map[string]any) bool { return l["messagePath"] == path })
	recorderLines := logLines(t, s.LogPath(stack.Recorder), func(l map[string]any) bool {
		return l["messagePath"] == path && (l["message"] == "claim decided" || l["message"] == "result recorded")
	})
	for name, lines := range map[string][]map[string]any{stack.Ingest: ingestLines, stack.Sender: senderLines, stack.Recorder: recorderLines} {
		if len(lines) == 0 {
			t.Errorf("%s logged nothing about %s", name, path)
		}
		for _, l := range lines {
			if l["logging.googleapis.com/trace"] != wantTrace {
				t.Errorf("%s line %q has trace %v, want %s", name, l["message"], l["logging.googleapis.com/trace"], wantTrace)
			}
		}
	}
	if len(recorderLines) != 2 {
		t.Errorf("recorder: %d claim decided / result recorded lines for %s, want 2", len(recorderLines), path)
	}
}

// logLines are the JSON lines of a service's log that keep holds for.
func logLines(t *testing.T, path string, keep func(map[string]any) bool) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err == nil && keep(l) {
			out = append(out, l)
		}
	}
	return out
}
