package adapters

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"cloud.google.com/go/storage"

	"github.com/visn/wadispatch/pkg/testinfra/gcsemu"
	"github.com/visn/wadispatch/services/sender/internal/app"
)

// The outbound objects through the official client and the emulator: the
// attributes the sender checks, the generation it reads, and a missing
// object or bucket told apart from a failure.
func TestOutboundStorage(t *testing.T) {
	emu := gcsemu.StartForTest(t, "outbound")
	t.Setenv("STORAGE_EMULATOR_HOST", emu.Addr)
	ctx := context.Background()
	c, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := bytes.Repeat([]byte("\xff\xd8 jpeg "), 1000)
	w := c.Bucket("outbound").Object("leases/l1/dent.jpg").NewWriter(ctx)
	w.ContentType = "image/jpeg"
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	s := NewOutboundStorage(c)
	o, err := s.Attrs(ctx, "outbound", "leases/l1/dent.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if o.ContentType != "image/jpeg" || o.Size != int64(len(data)) || o.Generation == 0 {
		t.Fatalf("attrs %+v", o)
	}
	r, err := s.Open(ctx, "outbound", "leases/l1/dent.jpg", o.Generation)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the object", len(got), err)
	}
	for _, at := range [][2]string{{"outbound", "gone.jpg"}, {"no-such-bucket", "a.jpg"}} {
		if _, err := s.Attrs(ctx, at[0], at[1]); !errors.Is(err, app.ErrObjectNotFound) {
			t.Errorf("Attrs(%s, %s) = %v, want ErrObjectNotFound", at[0], at[1], err)
		}
	}
}
