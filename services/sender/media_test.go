package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/testinfra/gcsemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// The media fetch through the sender's own wiring (run): MediaFetch on
// whatsapp-media from the pstest server, the simulator's Graph API media
// endpoints and download URLs, fake-gcs-server reached by the official
// client through STORAGE_EMULATOR_HOST, and MediaStored read back from
// whatsapp-status-events.

const mediaBucket = "wadispatch-media-test"

type mediaStack struct {
	*stack
	emu *gcsemu.Server
	gcs *storage.Client
	pub *pubsub.Publisher

	mu     sync.Mutex
	stored map[string][]*wadispatchv1.MediaStored
}

func newMediaStack(t *testing.T) *mediaStack {
	s := &mediaStack{stack: newStack(t, simOptions(), false), stored: map[string][]*wadispatchv1.MediaStored{}}
	emu := gcsemu.StartForTest(t, mediaBucket)
	s.emu = emu
	t.Setenv("STORAGE_EMULATOR_HOST", emu.Addr)
	gcs, err := storage.NewClient(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.gcs = gcs
	s.pub = s.ps.Publisher(topology.MediaTopic)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.ps.Subscriber(topology.StatusEventsSubscription).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			if bytes.Contains(m.Data, []byte(testToken)) || strings.Contains(fmt.Sprint(m.Attributes), testToken) {
				t.Error("a MediaStored carries the token")
			}
			ms := &wadispatchv1.MediaStored{}
			if m.Attributes["schema"] != "wadispatch.v1.MediaStored" || proto.Unmarshal(m.Data, ms) != nil || m.Attributes["messagePath"] != ms.GetMessageDocId() {
				t.Errorf("status event %v %q is not a MediaStored", m.Attributes, m.Data)
			}
			s.mu.Lock()
			s.stored[ms.GetMessageDocId()] = append(s.stored[ms.GetMessageDocId()], ms)
			s.mu.Unlock()
			s.notify()
			m.Ack()
		})
		if err != nil {
			t.Errorf("receive status events: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		s.pub.Stop()
		_ = gcs.Close()
	})
	cfg := s.testSpec("sender-media")
	cfg.OutageProbe = time.Second
	cfg.MediaBucket = mediaBucket
	cfg.MediaSubscription = topology.MediaSubscription
	cfg.MediaStoredTopic = topology.StatusEventsTopic
	cfg.MediaMaxInFlight = 4
	cfg.MediaMaxAttempts = 3
	cfg.MediaDownloadTimeout = 10 * time.Second
	cfg.MediaStorageTimeout = 2 * time.Second
	s.startSender(cfg)
	return s
}

// fetch publishes the recorder's MediaFetch for a driver's reply wa-in-id
// carrying media, and returns the reply's path.
func (s *mediaStack) fetch(id string, media *wadispatchv1.InboundMedia) string {
	s.t.Helper()
	path := "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/wa-in-" + id
	f := &wadispatchv1.MediaFetch{
		MessageDocId: path, LeaseId: "l1", EnquiryId: "e1",
		// base64's '/', '+' and '=' must not shape the object's name.
		WhatsappMessageId: "wamid.HBgL" + id + "/+=",
		Media:             media,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{
			PhoneNumberId: phoneID, ApiVersion: "v21.0", TokenRef: "lease-l1",
		},
	}
	data, err := proto.Marshal(f)
	if err != nil {
		s.t.Fatal(err)
	}
	m := &pubsub.Message{Data: data, Attributes: map[string]string{"messagePath": path, "schema": string(proto.MessageName(f))}}
	if _, err := s.pub.Publish(context.Background(), m).Get(context.Background()); err != nil {
		s.t.Fatalf("publish MediaFetch: %v", err)
	}
	return path
}

func (s *mediaStack) waitStored(path string, n int) []*wadispatchv1.MediaStored {
	s.t.Helper()
	var got []*wadispatchv1.MediaStored
	s.waitFor(20*time.Second, fmt.Sprintf("%d MediaStored for %s", n, path), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		got = append([]*wadispatchv1.MediaStored(nil), s.stored[path]...)
		return len(got) >= n
	})
	return got
}

// objects lists the bucket's objects under the enquiry's media prefix.
func (s *mediaStack) objects() map[string]*storage.ObjectAttrs {
	s.t.Helper()
	out := map[string]*storage.ObjectAttrs{}
	it := s.gcs.Bucket(mediaBucket).Objects(context.Background(), &storage.Query{Prefix: "leasecompany/l1/enquiries/e1/media/"})
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			s.t.Fatal(err)
		}
		out[a.Name] = a
	}
}

func (s *mediaStack) read(name string) []byte {
	s.t.Helper()
	r, err := s.gcs.Bucket(mediaBucket).Object(name).NewReader(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func inbound(m whatsappsim.AddedMedia) *wadispatchv1.InboundMedia {
	return &wadispatchv1.InboundMedia{Id: m.ID, MimeType: m.MIMEType, Sha256: m.SHA256}
}

func TestMediaIsFetchedCheckedAndStored(t *testing.T) {
	s := newMediaStack(t)
	photoBytes := bytes.Repeat([]byte("\xff\xd8 a photo of the dent "), 4000)
	photo := s.sim.AddMedia(phoneID, "image/jpeg", photoBytes)

	// The download fails twice (Meta's CDN answering 503); the third try,
	// in the same handling, stores it once.
	for range 2 {
		if err := s.sim.AddMediaFault(whatsappsim.MediaFault{Kind: whatsappsim.MediaFaultDownloadStatus, HTTPStatus: 503}); err != nil {
			t.Fatal(err)
		}
	}
	path := s.fetch("photo", inbound(photo))
	got := s.waitStored(path, 1)[0]
	name := "leasecompany/l1/enquiries/e1/media/wamid.HBgLphoto%2F%2B%3D"
	sum := sha256.Sum256(photoBytes)
	if got.GetFailureReason() != "" || got.GetUri() != "gs://"+mediaBucket+"/"+name || got.GetSha256() != hex.EncodeToString(sum[:]) ||
		got.GetSize() != int64(len(photoBytes)) || got.GetMimeType() != "image/jpeg" || got.GetMediaId() != photo.ID ||
		got.GetWhatsappMessageId() != "wamid.HBgLphoto/+=" || got.GetStoredAt() == nil {
		t.Fatalf("MediaStored %v", got)
	}
	objs := s.objects()
	if len(objs) != 1 || objs[name] == nil || objs[name].ContentType != "image/jpeg" || !bytes.Equal(s.read(name), photoBytes) {
		t.Fatalf("objects %v", objs)
	}
	if mc := s.sim.MediaCounts(); mc.Downloads != 3 || mc.URLRequests != 3 {
		t.Errorf("media counts %+v: want three URLs and downloads, the first two failed", mc)
	}

	// Redelivered (the recorder published it again): the stored object is
	// found and published again, nothing downloaded.
	s.fetch("photo", inbound(photo))
	again := s.waitStored(path, 2)[1]
	if again.GetUri() != got.GetUri() || again.GetSha256() != got.GetSha256() || again.GetFailureReason() != "" {
		t.Fatalf("redelivery: %v", again)
	}
	if mc := s.sim.MediaCounts(); mc.Downloads != 3 {
		t.Errorf("the redelivery downloaded again: %+v", mc)
	}

	// The URL has expired by the time it is used: a fresh one is asked
	// for at once.
	voiceBytes := []byte("OggS voice note")
	voice := s.sim.AddMedia(phoneID, "audio/ogg; codecs=opus", voiceBytes)
	if err := s.sim.AddMediaFault(whatsappsim.MediaFault{Kind: whatsappsim.MediaFaultExpireURL}); err != nil {
		t.Fatal(err)
	}
	before := s.sim.MediaCounts()
	vpath := s.fetch("voice", inbound(voice))
	if v := s.waitStored(vpath, 1)[0]; v.GetFailureReason() != "" || v.GetMimeType() != "audio/ogg; codecs=opus" {
		t.Fatalf("voice note: %v", v)
	}
	if mc := s.sim.MediaCounts(); mc.URLRequests-before.URLRequests != 2 || mc.ExpiredURLs-before.ExpiredURLs != 1 {
		t.Errorf("expired URL: %+v then %+v", before, mc)
	}
	if !bytes.Equal(s.read("leasecompany/l1/enquiries/e1/media/wamid.HBgLvoice%2F%2B%3D"), voiceBytes) {
		t.Error("voice note stored wrong")
	}
	s.waitForLogs(10*time.Second, `"wamid":"wamid.HBgLvoice/+="`, `"messagePath":"`+vpath+`"`, "media stored; published")
}

func TestMediaThatCanNeverBeStoredIsReported(t *testing.T) {
	s := newMediaStack(t)
	doc := s.sim.AddMedia(phoneID, "application/pdf", []byte("%PDF-1.7 the invoice"))
	other := sha256.Sum256([]byte("other bytes"))
	tampered := inbound(doc)
	tampered.Sha256 = base64.StdEncoding.EncodeToString(other[:])
	big := s.sim.AddMedia(phoneID, "image/png", make([]byte, 5<<20+1))
	gone := s.sim.AddMedia(phoneID, "image/jpeg", []byte("jpeg"))
	if err := s.sim.SetMediaUnavailable(gone.ID); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		media  *wadispatchv1.InboundMedia
		reason string
	}{
		"mismatch":    {tampered, "checksum_mismatch"},
		"too-large":   {inbound(big), "media_too_large"},
		"unknown":     {&wadispatchv1.InboundMedia{Id: "999", MimeType: "image/jpeg"}, "media_not_found"},
		"unavailable": {inbound(gone), "media"},
		"no-id":       {&wadispatchv1.InboundMedia{MimeType: "image/jpeg"}, "invalid_media"},
	}
	paths := map[string]string{}
	for id, c := range cases {
		paths[id] = s.fetch(id, c.media)
	}
	for id, c := range cases {
		got := s.waitStored(paths[id], 1)[0]
		if got.GetFailureReason() != c.reason || got.GetFailureDetail() == "" || got.GetUri() != "" {
			t.Errorf("%s: %v, want failure %s", id, got, c.reason)
		}
	}
	if objs := s.objects(); len(objs) != 0 {
		t.Errorf("objects stored for media that failed: %v", objs)
	}
	if mc := s.sim.MediaCounts(); mc.Downloads != 1 {
		t.Errorf("media counts %+v: only the mismatching document is downloaded (the large one is refused by its stated size)", mc)
	}
}

// WhatsApp's CDN down for longer than the in-process tries: the fetch is
// held at the media gate and handled again, not nacked, so it is stored on
// its first delivery attempt.
func TestMediaOutageHoldsTheFetch(t *testing.T) {
	s := newMediaStack(t)
	photo := s.sim.AddMedia(phoneID, "image/jpeg", []byte("jpeg bytes"))
	if err := s.sim.AddMediaFault(whatsappsim.MediaFault{Kind: whatsappsim.MediaFaultDownloadStatus, HTTPStatus: 502, Times: 5}); err != nil {
		t.Fatal(err)
	}
	path := s.fetch("held", inbound(photo))
	if got := s.waitStored(path, 1)[0]; got.GetFailureReason() != "" {
		t.Fatalf("held fetch: %v", got)
	}
	if mc := s.sim.MediaCounts(); mc.Downloads != 6 {
		t.Errorf("media counts %+v: want five failed downloads and one stored", mc)
	}
	s.waitForLogs(10*time.Second, "holding the message", "media stored; published")
	for _, e := range s.logs.Entries(t) {
		if e["message"] == "media stored; published" && e["messagePath"] == path && e["deliveryAttempt"] != float64(1) {
			t.Errorf("stored on delivery attempt %v, want 1: the outage must not spend attempts", e["deliveryAttempt"])
		}
	}
}

// Cloud Storage down: the fetch is held, not nacked, and stored on its
// first delivery attempt once storage is back.
func TestStorageOutageHoldsTheFetch(t *testing.T) {
	s := newMediaStack(t)
	photo := s.sim.AddMedia(phoneID, "image/jpeg", []byte("jpeg bytes"))
	if err := s.emu.Close(); err != nil {
		t.Fatal(err)
	}
	path := s.fetch("storage-down", inbound(photo))
	s.waitForLogs(20*time.Second, `"reason":"storage"`, "holding the message")
	back, err := gcsemu.Start(s.emu.Addr, mediaBucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = back.Close() })
	if got := s.waitStored(path, 1)[0]; got.GetFailureReason() != "" {
		t.Fatalf("fetch after the outage: %v", got)
	}
	if !bytes.Equal(s.read("leasecompany/l1/enquiries/e1/media/wamid.HBgLstorage-down%2F%2B%3D"), []byte("jpeg bytes")) {
		t.Error("stored wrong")
	}
	s.waitForLogs(10*time.Second, "media stored; published")
	for _, e := range s.logs.Entries(t) {
		if e["message"] == "media stored; published" && e["messagePath"] == path && e["deliveryAttempt"] != float64(1) {
			t.Errorf("stored on delivery attempt %v, want 1", e["deliveryAttempt"])
		}
	}
}

// A document larger than the storage client's 16 MiB chunk goes up as a
// resumable upload, with the same DoesNotExist precondition.
func TestLargeDocumentIsStoredResumably(t *testing.T) {
	s := newMediaStack(t)
	data := bytes.Repeat([]byte("%PDF page "), (17<<20)/10)
	doc := s.sim.AddMedia(phoneID, "application/pdf", data)
	media := inbound(doc)
	media.Filename = "contract.pdf"
	path := s.fetch("big-doc", media)
	if got := s.waitStored(path, 1)[0]; got.GetFailureReason() != "" || got.GetSize() != int64(len(data)) {
		t.Fatalf("large document: %v", got)
	}
	name := "leasecompany/l1/enquiries/e1/media/wamid.HBgLbig-doc%2F%2B%3D"
	if !bytes.Equal(s.read(name), data) {
		t.Error("large document stored wrong")
	}
	if a := s.objects()[name]; a == nil || a.Metadata["filename"] != "contract.pdf" || a.Metadata["sha256"] != s.waitStored(path, 1)[0].GetSha256() {
		t.Errorf("object metadata %v", a)
	}
}
