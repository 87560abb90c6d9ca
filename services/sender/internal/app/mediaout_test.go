package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// fakeObjects is a bucket of objects by "bucket/object".
type fakeObjects struct {
	objs    map[string]OutboundObject
	statErr error
}

func (f *fakeObjects) Attrs(_ context.Context, bucket, object string) (OutboundObject, error) {
	if f.statErr != nil {
		return OutboundObject{}, f.statErr
	}
	o, ok := f.objs[bucket+"/"+object]
	if !ok {
		return OutboundObject{}, fmt.Errorf("gs://%s/%s: %w", bucket, object, ErrObjectNotFound)
	}
	return o, nil
}

func (f *fakeObjects) Open(_ context.Context, bucket, object string, generation int64) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("bytes of " + object)), nil
}

type fakeUploader struct {
	mu      sync.Mutex
	uploads []string // mime types
	fail    []error
}

func (f *fakeUploader) UploadMedia(_ context.Context, s whatsapp.Sender, mimeType, filename string, r io.Reader) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := io.ReadAll(r); err != nil {
		return "", err
	}
	f.uploads = append(f.uploads, mimeType)
	if len(f.fail) > 0 {
		err := f.fail[0]
		f.fail = f.fail[1:]
		return "", err
	}
	return fmt.Sprintf("media-%d", len(f.uploads)), nil
}

func mediaTask(typ wadispatchv1.MessageType, caption, uri string) *wadispatchv1.SendTask {
	task := textTask()
	task.Type, task.Message = typ, caption
	task.Media = &wadispatchv1.OutboundMedia{Uri: uri}
	return task
}

func mediaHarness(t *testing.T, objs map[string]OutboundObject, answers ...answer) (*harness, *fakeObjects, *fakeUploader) {
	h := newHarness(t, nil, answers...)
	fo, fu := &fakeObjects{objs: objs}, &fakeUploader{}
	h.proc.SetMediaOut(NewMediaOut([]string{"outbound"}, fo, fu, h.clock.Now))
	return h, fo, fu
}

func TestImageFromStorageUploadedOnceAndReused(t *testing.T) {
	h, _, fu := mediaHarness(t, map[string]OutboundObject{
		"outbound/dent.jpg": {ContentType: "image/jpeg", Size: 200 << 10, Generation: 7},
	}, ok("wamid.1"), ok("wamid.2"))
	for i := range 2 {
		v := h.proc.Process(t.Context(), delivery(t, mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "Rear door", "gs://outbound/dent.jpg")))
		wantVerdict(t, v, true, OutcomeSent)
		if n := len(h.pub.on(topology.ResultsTopic)); n != i+1 {
			t.Fatalf("send %d: %d results", i, n)
		}
	}
	if len(fu.uploads) != 1 || fu.uploads[0] != "image/jpeg" {
		t.Errorf("uploads %v, want one of image/jpeg", fu.uploads)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, req := range h.requests {
		img, _ := req["image"].(map[string]any)
		if req["type"] != "image" || img["id"] != "media-1" || img["caption"] != "Rear door" {
			t.Errorf("request %d = %v", i, req)
		}
	}
}

func TestMediaRefusedWithoutACall(t *testing.T) {
	objs := map[string]OutboundObject{
		"outbound/big.jpg":  {ContentType: "image/jpeg", Size: 5<<20 + 1, Generation: 1},
		"outbound/a.gif":    {ContentType: "image/gif", Size: 10, Generation: 1},
		"outbound/note.ogg": {ContentType: "audio/ogg", Size: 10, Generation: 1},
		"outbound/doc.zip":  {ContentType: "application/zip", Size: 10, Generation: 1},
		"outbound/big.pdf":  {ContentType: "application/pdf", Size: 100<<20 + 1, Generation: 1},
	}
	for _, c := range []struct {
		name   string
		task   *wadispatchv1.SendTask
		reason string
	}{
		{"image over 5 MB", mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", "gs://outbound/big.jpg"), ReasonMediaTooLarge},
		{"gif image", mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", "gs://outbound/a.gif"), ReasonMediaTypeUnsupported},
		{"ogg without opus", mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_AUDIO, "", "gs://outbound/note.ogg"), ReasonMediaTypeUnsupported},
		{"zip document", mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT, "", "gs://outbound/doc.zip"), ReasonMediaTypeUnsupported},
		{"document over 100 MB", mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT, "", "gs://outbound/big.pdf"), ReasonMediaTooLarge},
		{"bucket not allowed", mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", "gs://elsewhere/dent.jpg"), ReasonMediaBucketNotAllowed},
		{"no such object", mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", "gs://outbound/gone.jpg"), ReasonMediaNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _, fu := mediaHarness(t, objs)
			v := h.proc.Process(t.Context(), delivery(t, c.task))
			wantVerdict(t, v, true, OutcomeFailed)
			r := h.result()
			if r.GetOutcome() != wadispatchv1.Outcome_OUTCOME_FAILED || r.GetError().GetReason() != c.reason || r.GetClaimId() != "claim-1" {
				t.Errorf("result %v, want FAILED %s", r, c.reason)
			}
			if h.calls() != 0 || len(fu.uploads) != 0 {
				t.Errorf("%d calls and %d uploads for refused media", h.calls(), len(fu.uploads))
			}
		})
	}
}

func TestMediaWithoutMediaOutIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	v := h.proc.Process(t.Context(), delivery(t, mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", "gs://outbound/dent.jpg")))
	wantVerdict(t, v, true, OutcomeFailed)
	if r := h.result(); r.GetError().GetReason() != ReasonMediaBucketNotAllowed || h.calls() != 0 {
		t.Errorf("result %v after %d calls", r, h.calls())
	}
}

func TestMediaLinkSentAsLink(t *testing.T) {
	h, _, fu := mediaHarness(t, nil, ok("wamid.L"))
	task := textTask()
	task.Type, task.Message = wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT, "Contract"
	task.Media = &wadispatchv1.OutboundMedia{Link: "https://cdn.example/c.pdf", MimeType: "application/pdf", Filename: "contract.pdf"}
	wantVerdict(t, h.proc.Process(t.Context(), delivery(t, task)), true, OutcomeSent)
	h.mu.Lock()
	defer h.mu.Unlock()
	doc, _ := h.requests[0]["document"].(map[string]any)
	if len(fu.uploads) != 0 || doc["link"] != "https://cdn.example/c.pdf" || doc["filename"] != "contract.pdf" || doc["id"] != nil {
		t.Errorf("request %v after %d uploads", h.requests[0], len(fu.uploads))
	}
}

func TestMediaStorageOutageHoldsTheTask(t *testing.T) {
	h, fo, _ := mediaHarness(t, nil)
	fo.statErr = errors.New("storage: 503")
	v := h.proc.Process(t.Context(), delivery(t, mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", "gs://outbound/dent.jpg")))
	if !v.Unavailable || v.Ack || v.Reason != string(OutcomeMediaUnavailable) || len(h.claims) != 0 {
		t.Errorf("verdict %+v after %d claims, want held before any claim", v, len(h.claims))
	}
}

func TestMediaUploadRefusedIsFailed(t *testing.T) {
	h, fo, _ := mediaHarness(t, map[string]OutboundObject{"outbound/dent.png": {ContentType: "image/png", Size: 10, Generation: 1}})
	var uploads atomic.Int32
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uploads.Add(1)
		if !strings.HasSuffix(r.URL.Path, "/"+testPhone+"/media") || r.FormValue("messaging_product") != "whatsapp" || r.FormValue("type") != "image/png" {
			t.Errorf("upload %s %v", r.URL.Path, r.MultipartForm)
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"message":"(#131053) Media upload error","type":"OAuthException","code":131053,"fbtrace_id":"t"}}`)
	}))
	t.Cleanup(meta.Close)
	wa, err := whatsapp.NewClient(whatsapp.Config{BaseURL: meta.URL})
	if err != nil {
		t.Fatal(err)
	}
	h.proc.SetMediaOut(NewMediaOut([]string{"outbound"}, fo, wa, h.clock.Now))
	v := h.proc.Process(t.Context(), delivery(t, mediaTask(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", "gs://outbound/dent.png")))
	wantVerdict(t, v, true, OutcomeFailed)
	if r := h.result(); r.GetError().GetCode() != 131053 || h.calls() != 0 || uploads.Load() != 1 {
		t.Errorf("result %v after %d calls, %d uploads", r, h.calls(), uploads.Load())
	}
}
