package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// healthServer serves the standard gRPC health service alone, reporting
// status for the Recorder API.
func healthServer(t *testing.T, status healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	h := grpchealth.NewServer()
	h.SetServingStatus(wadispatchv1.Recorder_ServiceDesc.ServiceName, status)
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// readyz answers /readyz with code and body, and 404 on any other path.
func readyz(t *testing.T, code int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestHealth(t *testing.T) {
	serving := healthServer(t, healthpb.HealthCheckResponse_SERVING)
	notServing := healthServer(t, healthpb.HealthCheckResponse_NOT_SERVING)
	ready := readyz(t, http.StatusOK, "ok\n")
	notReady := readyz(t, http.StatusServiceUnavailable, "firestore: deadline exceeded\n")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name         string
		env          map[string]string
		args         []string
		code         int
		want, refuse []string
	}{
		{name: "both answer", args: []string{"--addr", serving, "--ingest", ready + "/"}, code: 0,
			want:   []string{"ok   recorder " + serving + " wadispatch.v1.Recorder: SERVING", "ok   ingest " + ready + "/readyz: 200 OK"},
			refuse: []string{"FAIL"}},
		{name: "from the environment", env: map[string]string{"WADISPATCH_RECORDER_ADDR": serving, "WADISPATCH_INGEST_URL": ready}, code: 0,
			want: []string{"ok   recorder " + serving, "ok   ingest " + ready + "/readyz"}},
		{name: "recorder not serving", args: []string{"--addr", notServing, "--ingest", ready}, code: 1,
			want: []string{"FAIL recorder " + notServing + " wadispatch.v1.Recorder: status NOT_SERVING", "ok   ingest"}},
		// Both checks run, and the body says which readiness check failed.
		{name: "recorder unreachable, ingest not ready", args: []string{"--addr", unreachable, "--ingest", notReady, "--timeout", "2s"}, code: 1,
			want:   []string{"FAIL recorder " + unreachable + " wadispatch.v1.Recorder: health check:", "FAIL ingest " + notReady + "/readyz: 503 Service Unavailable: firestore: deadline exceeded"},
			refuse: []string{"ok "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := ctl(t, tc.env, append(tc.args, "health")...)
			if code != tc.code || strings.Count(out, "\n") != 2 {
				t.Errorf("exit %d, want %d, two lines:\n%s%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, r := range tc.refuse {
				if strings.Contains(out, r) {
					t.Errorf("output has %q:\n%s", r, out)
				}
			}
		})
	}
}

// The real recorder answers its health service to a caller without a
// credential, as the helm test pod is.
func TestHealthOfARealRecorderWithoutCredential(t *testing.T) {
	addr := recorder(t)
	code, out, errOut := ctl(t, map[string]string{"WADISPATCH_ID_TOKEN": ""}, "--addr", addr, "--ingest", readyz(t, http.StatusOK, "ok\n"), "health")
	if code != 0 || !strings.Contains(out, "ok   recorder "+addr+" wadispatch.v1.Recorder: SERVING") {
		t.Errorf("health: %d\n%s%s", code, out, errOut)
	}
}
