package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/tracing/tracingtest"
)

func TestExporterFromEnv(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		want    exporterChoice
		wantErr bool
	}{
		{name: "nothing set exports nothing", env: nil, want: exporterChoice{}},
		{name: "endpoint alone: OTLP over HTTP", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, want: exporterChoice{protocol: ProtocolHTTPProtobuf}},
		{name: "traces endpoint alone", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, want: exporterChoice{protocol: ProtocolHTTPProtobuf}},
		{name: "grpc protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: exporterChoice{protocol: ProtocolGRPC}},
		{name: "traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, want: exporterChoice{protocol: ProtocolHTTPProtobuf}},
		{name: "exporter none wins over an endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_TRACES_EXPORTER": "none"}, want: exporterChoice{}},
		{name: "otlp asked without endpoint: the exporter's default", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: exporterChoice{protocol: ProtocolHTTPProtobuf}},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, want: exporterChoice{disabled: true}},
		{name: "unsupported exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: true},
		{name: "unsupported protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := exporterFromEnv(func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
			if (err != nil) != c.wantErr {
				t.Fatalf("error = %v, want error %v", err, c.wantErr)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// localSpan starts a span on a provider of the test's own.
func localSpan(t *testing.T) (context.Context, trace.SpanContext) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "parent")
	t.Cleanup(func() { span.End() })
	return ctx, span.SpanContext()
}

func TestInjectExtractRoundTrip(t *testing.T) {
	ctx, sc := localSpan(t)
	attrs := Inject(ctx, map[string]string{"messagePath": "a/b"})
	if attrs["traceparent"] == "" || attrs["messagePath"] != "a/b" {
		t.Fatalf("attributes after Inject: %v", attrs)
	}
	got := trace.SpanContextFromContext(Extract(context.Background(), attrs))
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsRemote() || !got.IsSampled() {
		t.Errorf("extracted %v, injected %v", got, sc)
	}
}

func TestInjectWithoutSpanAddsNothing(t *testing.T) {
	attrs := Inject(context.Background(), nil)
	if attrs == nil || len(attrs) != 0 {
		t.Errorf("Inject without a span: %v, want an empty map", attrs)
	}
	if sc := trace.SpanContextFromContext(Extract(context.Background(), map[string]string{"traceparent": "garbage"})); sc.IsValid() {
		t.Errorf("a malformed traceparent gave %v", sc)
	}
}

func TestStartConsumerContinuesTheMessagesTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	parent, sc := localSpan(t)
	_, span := StartConsumer(context.Background(), Inject(parent, nil), "send")
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans ended, want 1", len(ended))
	}
	s := ended[0]
	if s.SpanContext().TraceID() != sc.TraceID() || s.Parent().SpanID() != sc.SpanID() || s.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span %s trace %s parent %s kind %s; want trace %s parent %s, consumer",
			s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), s.SpanKind(), sc.TraceID(), sc.SpanID())
	}

	_, root := StartConsumer(context.Background(), map[string]string{"messagePath": "x"}, "send")
	root.End()
	if got := rec.Ended()[1]; got.Parent().IsValid() || !got.SpanContext().IsValid() {
		t.Errorf("without trace attributes: parent %v, span %v; want a new root", got.Parent(), got.SpanContext())
	}
}

// The traceparent Eventarc sets on the CloudEvent, read from the binary-mode
// request as ingest reads it; the HTTP request's own traceparent only when
// the event has none.
func TestFromCloudEvent(t *testing.T) {
	const (
		eventParent  = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		headerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	)
	ev := eventarctest.Event{Path: "leasecompany/l1/enquiries/e1/chatMessages/m1"}
	cases := []struct {
		name              string
		ceTraceparent     string
		header            string
		wantTrace         string
		wantRemoteInvalid bool
	}{
		{name: "extension", ceTraceparent: eventParent, header: headerParent, wantTrace: "0af7651916cd43dd8448eb211c80319c"},
		{name: "header when no extension", header: headerParent, wantTrace: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "header when the extension is malformed", ceTraceparent: "00-zz", header: headerParent, wantTrace: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "neither", wantRemoteInvalid: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := ev.Binary("http://ingest/")
			if c.ceTraceparent != "" {
				req.Header.Set("Ce-Traceparent", c.ceTraceparent)
			}
			if c.header != "" {
				req.Header.Set("Traceparent", c.header)
			}
			ce, err := firestoreevent.ReadRequest(req)
			if err != nil {
				t.Fatal(err)
			}
			sc := trace.SpanContextFromContext(FromCloudEvent(context.Background(), ce, req.Header))
			if c.wantRemoteInvalid {
				if sc.IsValid() {
					t.Errorf("got %v, want no span context", sc)
				}
				return
			}
			if sc.TraceID().String() != c.wantTrace || !sc.IsRemote() {
				t.Errorf("trace %s (remote %v), want %s", sc.TraceID(), sc.IsRemote(), c.wantTrace)
			}
		})
	}
}

// The structured-mode event carries the extension in its JSON.
func TestFromCloudEventStructured(t *testing.T) {
	ev := eventarctest.Event{Path: "leasecompany/l1/enquiries/e1/chatMessages/m1"}
	var m map[string]any
	if err := json.Unmarshal(ev.StructuredBody(true), &m); err != nil {
		t.Fatal(err)
	}
	m["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	body, _ := json.Marshal(m)
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	ce, err := firestoreevent.ReadRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := trace.SpanContextFromContext(FromCloudEvent(context.Background(), ce, req.Header)).TraceID().String(); got != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("trace %s", got)
	}
}

// otlpSink is an OTLP/HTTP trace receiver.
type otlpSink struct {
	mu    sync.Mutex
	reqs  []*collectortrace.ExportTraceServiceRequest
	paths []string
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, &req)
	s.paths = append(s.paths, r.URL.Path)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// Setup with an endpoint exports by OTLP/HTTP, named after the service, and
// Shutdown flushes what the batcher still holds.
func TestSetupExportsAndShutdownFlushes(t *testing.T) {
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000") // only Shutdown can have exported
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	log, _ := logging.NewTo(io.Discard, "test", "p", "info")

	p, err := Setup(context.Background(), "ingest", log)
	if err != nil {
		t.Fatal(err)
	}
	if p.Exporter != "otlp http/protobuf" {
		t.Errorf("exporter %q", p.Exporter)
	}
	_, span := Tracer().Start(context.Background(), "ingest event")
	id := span.SpanContext().TraceID()
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.reqs) != 1 || sink.paths[0] != "/v1/traces" {
		t.Fatalf("collector got %d requests on %v, want 1 on /v1/traces", len(sink.reqs), sink.paths)
	}
	rs := sink.reqs[0].GetResourceSpans()[0]
	service := ""
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	got := rs.GetScopeSpans()[0].GetSpans()[0]
	if service != "ingest" || got.GetName() != "ingest event" || !bytes.Equal(got.GetTraceId(), id[:]) {
		t.Errorf("exported span %q of service %q trace %x; want ingest event of ingest, trace %s", got.GetName(), service, got.GetTraceId(), id)
	}
}

// Without any OTEL_* variable nothing is exported, yet spans carry sampled
// trace ids that log lines pick up.
func TestSetupWithoutEndpointStillGivesLogsATrace(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	var out bytes.Buffer
	log, _ := logging.NewTo(&out, "sender", "proj", "info")
	p, err := Setup(context.Background(), "sender", log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if p.Exporter != "none" {
		t.Errorf("exporter %q, want none", p.Exporter)
	}
	ctx, span := Tracer().Start(context.Background(), "send")
	defer span.End()
	if !span.SpanContext().IsSampled() {
		t.Error("span not sampled: a downstream service exporting with a parent-based sampler would drop the trace")
	}
	logging.WithContext(ctx, log).Info("claimed")
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if want := "projects/proj/traces/" + span.SpanContext().TraceID().String(); line["logging.googleapis.com/trace"] != want {
		t.Errorf("log trace %v, want %s", line["logging.googleapis.com/trace"], want)
	}
	// The global propagator is W3C, so otelgrpc and otelhttp carry traceparent.
	carrier := Inject(ctx, nil)
	if otel.GetTextMapPropagator().Fields()[0] != "traceparent" || carrier["traceparent"] == "" {
		t.Errorf("propagator fields %v, injected %v", otel.GetTextMapPropagator().Fields(), carrier)
	}
}

// grpcSink is an OTLP/gRPC trace receiver.
type grpcSink struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []string
}

func (s *grpcSink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans = append(s.spans, sp.GetName())
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func TestSetupExportsOverGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := &grpcSink{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, sink)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	log, _ := logging.NewTo(io.Discard, "test", "p", "info")

	p, err := Setup(context.Background(), "recorder", log)
	if err != nil {
		t.Fatal(err)
	}
	if p.Exporter != "otlp grpc" {
		t.Errorf("exporter %q", p.Exporter)
	}
	_, span := Tracer().Start(context.Background(), "process results")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.spans) != 1 || sink.spans[0] != "process results" {
		t.Errorf("collector got spans %v", sink.spans)
	}
}
