package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// health checks the deployment answers as Kubernetes expects: the
// recorder's standard gRPC health service for the Recorder API (what its
// readiness probe asks), then ingest's /readyz. It prints one line per check
// and returns 1 if any failed; `helm test` runs it in the cluster.
//
// It presents no credential: the recorder's policy opens the health
// service to every caller (the kubelet has none), so the test pod needs no
// operator identity.
func health(ctx context.Context, o options, stdout io.Writer) int {
	checks := []struct {
		name  string
		check func(context.Context) (string, error)
	}{
		{fmt.Sprintf("recorder %s %s", o.addr, wadispatchv1.Recorder_ServiceDesc.ServiceName), func(ctx context.Context) (string, error) {
			return recorderHealth(ctx, o.addr)
		}},
		{fmt.Sprintf("ingest %s/readyz", strings.TrimSuffix(o.ingestURL, "/")), func(ctx context.Context) (string, error) {
			return ingestReady(ctx, o.ingestURL)
		}},
	}
	code := 0
	for _, c := range checks {
		ctx, cancel := context.WithTimeout(ctx, o.timeout)
		got, err := c.check(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", c.name, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "ok   %s: %s\n", c.name, got)
	}
	return code
}

// recorderHealth asks the recorder's health service about the Recorder API
// and returns its status, an error unless it is SERVING.
func recorderHealth(ctx context.Context, addr string) (string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	if err != nil {
		return "", fmt.Errorf("recorder address: %w", err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: wadispatchv1.Recorder_ServiceDesc.ServiceName})
	if err != nil {
		return "", fmt.Errorf("health check: %w", err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return "", fmt.Errorf("status %s", s)
	}
	return resp.GetStatus().String(), nil
}

// ingestReady GETs ingest's /readyz under base (its probes-and-metrics
// server) and returns the status line, an error unless it is 200; the
// error carries the body, which names the failing readiness check.
func ingestReady(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/readyz", nil)
	if err != nil {
		return "", fmt.Errorf("ingest URL: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return "", fmt.Errorf("read /readyz: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status + ": " + strings.TrimSpace(string(body)))
	}
	return resp.Status, nil
}
