package stack_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"cloud.google.com/go/storage"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/tools/stack"
)

// The local stack runs the Cloud Storage emulator and gives the sender its
// address and the media bucket: a MediaFetch on whatsapp-media (the
// recorder's, for a driver's photo) ends as an object there.
func TestSenderStoresDriverMediaInTheStacksBucket(t *testing.T) {
	s := stack.StartForTest(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	photo := bytes.Repeat([]byte("photo of the scratch "), 500)
	media, err := s.AddMedia(ctx, "image/jpeg", photo)
	if err != nil {
		t.Fatal(err)
	}
	err = s.PublishMediaFetch(ctx, &wadispatchv1.MediaFetch{
		MessageDocId:      "leasecompany/" + stack.DemoLease + "/enquiries/" + stack.DemoEnquiry + "/whatsapp/messages/chatMessages/wa-in-1",
		WhatsappMessageId: "wamid.media-1",
		Media:             &wadispatchv1.InboundMedia{Id: media.ID, MimeType: media.MIMEType, Sha256: media.SHA256},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", s.StorageAddr)
	gcs, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gcs.Close()
	obj := gcs.Bucket(s.MediaBucket).Object("leasecompany/" + stack.DemoLease + "/enquiries/" + stack.DemoEnquiry + "/media/wamid.media-1")
	for {
		r, err := obj.NewReader(ctx)
		if err == nil {
			got, err := io.ReadAll(r)
			_ = r.Close()
			if err != nil || !bytes.Equal(got, photo) || r.Attrs.ContentType != "image/jpeg" {
				t.Fatalf("stored %d bytes of %s (%v), want the photo", len(got), r.Attrs.ContentType, err)
			}
			return
		}
		if !errors.Is(err, storage.ErrObjectNotExist) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the photo was never stored")
		case <-time.After(100 * time.Millisecond):
		}
	}
}
