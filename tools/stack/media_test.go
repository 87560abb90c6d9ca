package stack_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/tools/stack"
)

// A driver's photo, end to end: the simulator's media webhook, ingest, the
// reply written with its media pending and a MediaFetch from the recorder,
// the sender's fetch into the stack's Cloud Storage emulator, and the
// MediaStored the recorder writes on the reply.
func TestDriverPhotoStoredAndRecordedOnTheReply(t *testing.T) {
	s, fs, ctx := setup(t, stack.Options{})
	const driver = "+447911123401"
	if err := s.OpenWindow(ctx, driver); err != nil {
		t.Fatal(err)
	}
	c := demoCase(t, "msg-text", "before-photo")
	if _, err := fs.Doc(c.Path()).Create(ctx, c.Fields); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, ctx, fs, c.Path(), "READ")

	photo := bytes.Repeat([]byte("\xff\xd8 the scratch on the door "), 2000)
	media, err := s.AddMedia(ctx, "image/jpeg", photo)
	if err != nil {
		t.Fatal(err)
	}
	inID, err := s.ReplyMedia(ctx, driver, "image", media.ID, "here it is")
	if err != nil {
		t.Fatal(err)
	}
	path := dispatch.MessageRef{LeaseID: stack.DemoLease, EnquiryID: stack.DemoEnquiry, MessageID: dispatch.DriverReplyDocID(inID)}.Path()
	reply := waitForDocWhere(t, ctx, fs, path, "media stored", func(doc map[string]any) bool {
		m, _ := doc["media"].(map[string]any)
		return m["status"] == "stored"
	})
	m := reply["media"].(map[string]any)
	sum := sha256.Sum256(photo)
	prefix := "gs://" + s.MediaBucket + "/leasecompany/" + stack.DemoLease + "/enquiries/" + stack.DemoEnquiry + "/media/"
	uri, _ := m["uri"].(string)
	if !strings.HasPrefix(uri, prefix) || m["sha256"] != hex.EncodeToString(sum[:]) || m["mimeType"] != "image/jpeg" || reply["message"] != "here it is" {
		t.Fatalf("reply %v", reply)
	}

	gcs, err := s.Storage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gcs.Close()
	r, err := gcs.Bucket(s.MediaBucket).Object(strings.TrimPrefix(uri, "gs://"+s.MediaBucket+"/")).NewReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || !bytes.Equal(got, photo) {
		t.Fatalf("stored %d bytes (%v), want the photo", len(got), err)
	}
}
