package chatmessage_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/chatmessage"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func mediaDoc(typ string, media map[string]any) map[string]any {
	d := textDoc()
	d["type"] = typ
	d["message"] = "Damage on the rear door"
	d["media"] = media
	return d
}

var mediaBuckets = []string{"visn-outbound"}

func TestParseMediaTask(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  map[string]any
		typ  wadispatchv1.MessageType
		want *wadispatchv1.OutboundMedia
	}{
		"image from storage": {mediaDoc("image", map[string]any{"uri": "gs://visn-outbound/leases/l1/dent.jpg"}),
			wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, &wadispatchv1.OutboundMedia{Uri: "gs://visn-outbound/leases/l1/dent.jpg"}},
		"document link": {mediaDoc("document", map[string]any{"link": "https://cdn.example/contract.pdf", "mimeType": "application/pdf", "filename": "contract.pdf"}),
			wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT, &wadispatchv1.OutboundMedia{Link: "https://cdn.example/contract.pdf", MimeType: "application/pdf", Filename: "contract.pdf"}},
		"video": {mediaDoc("video", map[string]any{"uri": "gs://visn-outbound/v.mp4", "mimeType": "video/mp4"}),
			wadispatchv1.MessageType_MESSAGE_TYPE_VIDEO, &wadispatchv1.OutboundMedia{Uri: "gs://visn-outbound/v.mp4", MimeType: "video/mp4"}},
		"voice note without caption": {func() map[string]any {
			d := mediaDoc("audio", map[string]any{"uri": "gs://visn-outbound/n.ogg", "mimeType": "audio/ogg; codecs=opus"})
			delete(d, "message")
			return d
		}(), wadispatchv1.MessageType_MESSAGE_TYPE_AUDIO, &wadispatchv1.OutboundMedia{Uri: "gs://visn-outbound/n.ogg", MimeType: "audio/ogg; codecs=opus"}},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := chatmessage.Parse(ref, tc.doc, "GB")
			if err == nil {
				err = m.CheckMediaBucket(mediaBuckets)
			}
			if err != nil {
				t.Fatal(err)
			}
			task, err := m.Task(testConfig, "ev", time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if task.Type != tc.typ || !proto.Equal(task.Media, tc.want) {
				t.Fatalf("task type %s media %v, want %s %v", task.Type, task.Media, tc.typ, tc.want)
			}
		})
	}
}

func TestMediaRejections(t *testing.T) {
	img := func(media any) func() map[string]any {
		return func() map[string]any { d := mediaDoc("image", nil); d["media"] = media; return d }
	}
	for _, tc := range []struct {
		name   string
		doc    func() map[string]any
		field  string
		detail string
	}{
		{"no media", img(nil), "media", "missing"},
		{"media not a map", img("gs://visn-outbound/a.jpg"), "media", "want a map"},
		{"uri not a string", img(map[string]any{"uri": int64(1)}), "media.uri", "integer"},
		{"neither uri nor link", img(map[string]any{"mimeType": "image/png"}), "media", "required"},
		{"both uri and link", img(map[string]any{"uri": "gs://visn-outbound/a.jpg", "link": "https://x.example/a.jpg", "mimeType": "image/jpeg"}), "media", "not both"},
		{"uri not gs", img(map[string]any{"uri": "s3://visn-outbound/a.jpg"}), "media.uri", "gs://bucket/object"},
		{"bucket not allowed", img(map[string]any{"uri": "gs://someone-else/a.jpg"}), "media.uri", `"someone-else" is not one`},
		{"link without mimeType", img(map[string]any{"link": "https://x.example/a.jpg"}), "media.mimeType", "required with a link"},
		{"link not https", img(map[string]any{"link": "http://x.example/a.jpg", "mimeType": "image/jpeg"}), "media.link", "https"},
		{"image as webp", img(map[string]any{"link": "https://x.example/a.webp", "mimeType": "image/webp"}), "media.mimeType", "image/webp"},
		{"plain ogg voice note", func() map[string]any {
			d := mediaDoc("audio", map[string]any{"uri": "gs://visn-outbound/n.ogg", "mimeType": "audio/ogg"})
			d["message"] = ""
			return d
		}, "media.mimeType", "opus"},
		{"audio with a caption", func() map[string]any {
			return mediaDoc("audio", map[string]any{"uri": "gs://visn-outbound/n.ogg"})
		}, "message", "no caption"},
		{"filename on an image", img(map[string]any{"uri": "gs://visn-outbound/a.jpg", "filename": "a.jpg"}), "media.filename", "only a document"},
		{"caption over 1024", func() map[string]any {
			d := mediaDoc("image", map[string]any{"uri": "gs://visn-outbound/a.jpg"})
			d["message"] = strings.Repeat("c", 1025)
			return d
		}, "message", "1025 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := chatmessage.Parse(ref, tc.doc(), "GB")
			if err == nil {
				err = m.CheckMediaBucket(mediaBuckets)
			}
			if err == nil {
				_, err = m.Task(testConfig, "ev", time.Time{})
			}
			r := rejection(t, err)
			if r.Reason != chatmessage.ReasonInvalidData || r.Field != tc.field || !strings.Contains(r.Detail, tc.detail) || !r.Actionable() {
				t.Fatalf("rejection %+v, want invalid_data on %s saying %q", r, tc.field, tc.detail)
			}
		})
	}
}
