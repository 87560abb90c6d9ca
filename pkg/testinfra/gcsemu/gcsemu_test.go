package gcsemu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
)

// The official client, configured only by STORAGE_EMULATOR_HOST as the
// services are, does what the sender needs against the emulator: an upload
// that must not overwrite (ifGenerationMatch=0), in one request and
// resumable, and the XML API read.
func TestOfficialClientThroughEmulatorHost(t *testing.T) {
	s := StartForTest(t, "media")
	for _, host := range []string{s.Addr, "http://" + s.Addr} {
		t.Run(host, func(t *testing.T) {
			t.Setenv("STORAGE_EMULATOR_HOST", host)
			ctx := context.Background()
			c, err := storage.NewClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, chunk := range []int{0, 256 << 10} {
				name := host + "/obj-" + map[int]string{0: "single", 256 << 10: "resumable"}[chunk]
				data := bytes.Repeat([]byte("x"), 600<<10)
				put := func() error {
					w := c.Bucket("media").Object(name).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
					w.ChunkSize = chunk
					w.ContentType = "image/jpeg"
					w.Metadata = map[string]string{"sha256": "abc"}
					if _, err := w.Write(data); err != nil {
						return err
					}
					return w.Close()
				}
				if err := put(); err != nil {
					t.Fatalf("chunk %d: first upload: %v", chunk, err)
				}
				var gerr *googleapi.Error
				if err := put(); !errors.As(err, &gerr) || gerr.Code != http.StatusPreconditionFailed {
					t.Fatalf("chunk %d: second upload: %v, want 412", chunk, err)
				}
				r, err := c.Bucket("media").Object(name).NewReader(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				_ = r.Close()
				if err != nil || !bytes.Equal(got, data) || r.Attrs.ContentType != "image/jpeg" {
					t.Fatalf("chunk %d: read %d bytes (%v), type %q", chunk, len(got), err, r.Attrs.ContentType)
				}
				attrs, err := c.Bucket("media").Object(name).Attrs(ctx)
				if err != nil || attrs.Metadata["sha256"] != "abc" || attrs.Size != int64(len(data)) {
					t.Fatalf("chunk %d: attrs %+v, %v", chunk, attrs, err)
				}
			}
			if _, err := c.Bucket("media").Object("missing").Attrs(ctx); !errors.Is(err, storage.ErrObjectNotExist) {
				t.Fatalf("missing object: %v", err)
			}
		})
	}
}

// An upload whose context ends before Close leaves no object: the sender
// aborts an upload whose bytes fail their checksum that way.
func TestCanceledUploadLeavesNoObject(t *testing.T) {
	s := StartForTest(t, "media")
	t.Setenv("STORAGE_EMULATOR_HOST", s.Addr)
	c, err := storage.NewClient(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, chunk := range []int{0, 256 << 10} {
		ctx, cancel := context.WithCancel(context.Background())
		w := c.Bucket("media").Object("aborted").If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
		w.ChunkSize = chunk
		if _, err := w.Write(bytes.Repeat([]byte("y"), 600<<10)); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := w.Close(); err == nil {
			t.Fatalf("chunk %d: Close after cancel succeeded", chunk)
		}
		if _, err := c.Bucket("media").Object("aborted").Attrs(context.Background()); !errors.Is(err, storage.ErrObjectNotExist) {
			t.Fatalf("chunk %d: aborted object: %v", chunk, err)
		}
	}
}

func TestPutIsReadByTheOfficialClient(t *testing.T) {
	s := StartForTest(t, "outbound")
	ctx := context.Background()
	data := []byte("\xff\xd8 a photo")
	if err := Put(ctx, s.Addr, "outbound", "demo/handover.jpg", "image/jpeg", data); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", s.Addr)
	c, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	attrs, err := c.Bucket("outbound").Object("demo/handover.jpg").Attrs(ctx)
	if err != nil || attrs.ContentType != "image/jpeg" || attrs.Size != int64(len(data)) {
		t.Fatalf("attrs %+v, %v", attrs, err)
	}
	if err := Put(ctx, s.Addr, "no-such-bucket", "a", "image/jpeg", data); err == nil {
		t.Error("put into a missing bucket succeeded")
	}
}
