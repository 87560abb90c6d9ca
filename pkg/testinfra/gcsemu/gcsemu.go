// Package gcsemu runs fake-gcs-server (github.com/fsouza/fake-gcs-server),
// the maintained Cloud Storage emulator, on a TCP port, for tests and the
// local stack. Services reach it through the official client and
// STORAGE_EMULATOR_HOST.
//
// Two of its quirks are handled here. Reads: the official client reads
// objects through the XML API at http://HOST/BUCKET/OBJECT, which
// fake-gcs-server only routes when the request's Host is its "public host"
// (default storage.googleapis.com), so the public host is set to the
// address it listens on. Resumable uploads (objects over the client's 16 MiB
// chunk): their Location header is the server's external URL, which must
// therefore be this address too. Both need the address before the server
// is built, so the listener is opened first and the server's handler served
// on it.
package gcsemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// Server is a running fake-gcs-server.
type Server struct {
	// Addr is HOST:PORT, for STORAGE_EMULATOR_HOST. The official client
	// takes it without a scheme (it then speaks http) or as
	// http://HOST:PORT.
	Addr string

	fake *fakestorage.Server
	http *http.Server
}

// Start listens on hostPort ("127.0.0.1:0" picks a port) and creates the
// buckets, empty and in memory.
func Start(hostPort string, buckets ...string) (*Server, error) {
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		return nil, fmt.Errorf("gcs emulator listen on %s: %w", hostPort, err)
	}
	addr := ln.Addr().String()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener:  true,
		Scheme:      "http",
		PublicHost:  addr,
		ExternalURL: "http://" + addr,
		Writer:      io.Discard,
	})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("gcs emulator: %w", err)
	}
	s := &Server{Addr: addr, fake: fake, http: &http.Server{Handler: fake.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}}
	for _, b := range buckets {
		s.CreateBucket(b)
	}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// CreateBucket creates an empty bucket (one that exists is kept).
func (s *Server) CreateBucket(name string) {
	s.fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
}

// Close stops the server; it may be called more than once (a test that
// stops storage on purpose, then its cleanup).
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// StartForTest starts a server with the buckets and stops it when t ends.
// The caller points its clients at Addr, e.g. with
// t.Setenv("STORAGE_EMULATOR_HOST", s.Addr).
func StartForTest(t testing.TB, buckets ...string) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", buckets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Put stores an object in the emulator at addr (HOST:PORT) with a plain
// JSON API media upload, for programs that hold no storage client (the
// local stack's demo puts the image it sends).
func Put(ctx context.Context, addr, bucket, name, contentType string, data []byte) error {
	u := "http://" + addr + "/upload/storage/v1/b/" + url.PathEscape(bucket) + "/o?uploadType=media&name=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("put gs://%s/%s: %w", bucket, name, err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("put gs://%s/%s: %w", bucket, name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("put gs://%s/%s: %s: %s", bucket, name, resp.Status, body)
	}
	return nil
}
