package stack_test

import (
	"bytes"
	"testing"

	"cloud.google.com/go/storage"

	"github.com/visn/wadispatch/tools/stack"
)

// An image in Cloud Storage sent to a driver: uploaded to WhatsApp once,
// its media id reused for the same object, and an image over Meta's 5 MB
// refused FAILED media_too_large without a call.
func TestImageFromCloudStorage(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	const driver = "+447911123401"
	if err := s.OpenWindow(ctx, driver); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", s.StorageAddr)
	gcs, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gcs.Close()
	put := func(name string, data []byte) string {
		w := gcs.Bucket(s.MediaBucket).Object(name).NewWriter(ctx)
		w.ContentType = "image/jpeg"
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return "gs://" + s.MediaBucket + "/" + name
	}
	photo := put("outbound/handover.jpg", bytes.Repeat([]byte("\xff\xd8 the van at handover "), 4000))
	big := put("outbound/too-big.jpg", bytes.Repeat([]byte{0xff}, 5<<20+1))
	before, err := s.SimulatorMediaCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(id, uri string) string {
		c := demoCase(t, "msg-text", id)
		c.Fields["type"] = "image"
		c.Fields["message"] = "Your van at handover"
		c.Fields["media"] = map[string]any{"uri": uri}
		if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
			t.Fatal(err)
		}
		return c.Path()
	}

	first := waitForStatus(t, ctx, fs, send("img-1", photo), "SENT")
	second := waitForStatus(t, ctx, fs, send("img-2", photo), "SENT")
	if first["whatsappMessageId"] == second["whatsappMessageId"] {
		t.Errorf("both messages have wamid %v", first["whatsappMessageId"])
	}
	after, err := s.SimulatorMediaCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.Uploads - before.Uploads; n != 1 {
		t.Errorf("%d uploads for two messages of one object, want 1", n)
	}
	acc, err := s.Accepted(ctx, driver)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, a := range acc {
		if a.Type == "image" && a.Media != nil {
			ids[a.Media.ID] = true
			if a.Media.Caption != "Your van at handover" {
				t.Errorf("caption %q", a.Media.Caption)
			}
		}
	}
	if len(ids) != 1 {
		t.Errorf("image messages with media ids %v, want one id reused", ids)
	}

	callsBefore, err := s.SimulatorCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failed := waitForStatus(t, ctx, fs, send("img-big", big), "FAILED")
	if failed["failureReason"] != "media_too_large" {
		t.Errorf("failureReason %v, want media_too_large (document %v)", failed["failureReason"], failed)
	}
	callsAfter, err := s.SimulatorCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	final, _ := s.SimulatorMediaCounts(ctx)
	if callsAfter.Requests != callsBefore.Requests || final.Uploads != after.Uploads {
		t.Errorf("the oversized image made %d message calls and %d uploads, want none",
			callsAfter.Requests-callsBefore.Requests, final.Uploads-after.Uploads)
	}
}
