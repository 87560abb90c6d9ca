package whatsapp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheckMedia(t *testing.T) {
	for _, tc := range []struct {
		kind   MessageType
		mime   string
		size   int64
		reason Reason // "" accepted
	}{
		{TypeImage, "image/jpeg", 5 << 20, ""},
		{TypeImage, "image/png", 1, ""},
		{TypeImage, "image/jpeg", 5<<20 + 1, ReasonMediaTooLarge},
		{TypeImage, "image/webp", 10, ReasonMediaTypeUnsupported},
		{TypeImage, "image/gif", 10, ReasonMediaTypeUnsupported},
		{TypeAudio, "audio/ogg; codecs=opus", 16 << 20, ""},
		{TypeAudio, "audio/ogg", 10, ReasonMediaTypeUnsupported},
		{TypeAudio, "audio/mpeg", 16<<20 + 1, ReasonMediaTooLarge},
		{TypeAudio, "audio/aac", 10, ""},
		{TypeAudio, "audio/amr", 10, ""},
		{TypeAudio, "audio/mp4", 10, ""},
		{TypeVideo, "video/mp4", 16 << 20, ""},
		{TypeVideo, "video/3gpp", 10, ""},
		{TypeVideo, "video/quicktime", 10, ReasonMediaTypeUnsupported},
		{TypeVideo, "video/mp4", 16<<20 + 1, ReasonMediaTooLarge},
		{TypeDocument, "application/pdf", 100 << 20, ""},
		{TypeDocument, "application/pdf", 100<<20 + 1, ReasonMediaTooLarge},
		{TypeDocument, "text/plain; charset=utf-8", 10, ""},
		{TypeDocument, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", 10, ""},
		{TypeDocument, "application/zip", 10, ReasonMediaTypeUnsupported},
		{TypeDocument, "", 10, ReasonMediaTypeUnsupported},
		{TypeText, "text/plain", 10, ReasonMediaTypeUnsupported},
		{TypeImage, "image/png", -1, ""},
	} {
		err := CheckMedia(tc.kind, tc.mime, tc.size)
		var r *MediaRefusal
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("CheckMedia(%s, %q, %d) = %v, want nil", tc.kind, tc.mime, tc.size, err)
		case tc.reason != "" && (!errors.As(err, &r) || r.Reason != tc.reason):
			t.Errorf("CheckMedia(%s, %q, %d) = %v, want %s", tc.kind, tc.mime, tc.size, err, tc.reason)
		case err != nil && !errors.Is(err, ErrInvalidMessage):
			t.Errorf("refusal %v is not ErrInvalidMessage", err)
		}
	}
}

func TestMediaMessage(t *testing.T) {
	m, err := MediaMessage("+447700900123", TypeDocument, MediaObject{ID: "42", Caption: "Invoice", Filename: "invoice.pdf"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m.request())
	if got := string(b); !strings.Contains(got, `"type":"document","document":{"id":"42","caption":"Invoice","filename":"invoice.pdf"}`) {
		t.Errorf("request = %s", got)
	}
	pending, err := MediaMessage("+447700900123", TypeImage, MediaObject{Caption: "dent"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pending.Validate(); err == nil {
		t.Error("a media message without id or link validated")
	}
	for _, tc := range []struct {
		kind  MessageType
		o     MediaObject
		field string
	}{
		{TypeAudio, MediaObject{Link: "https://x.example/a.ogg", Caption: "hi"}, "message"},
		{TypeImage, MediaObject{Link: "http://x.example/a.png"}, "media.link"},
		{TypeImage, MediaObject{Link: "https://x.example/a.png", Filename: "a.png"}, "media.filename"},
		{TypeImage, MediaObject{ID: "1", Link: "https://x.example/a.png"}, "media"},
		{TypeImage, MediaObject{ID: "1", Caption: strings.Repeat("é", MaxMediaCaption+1)}, "message"},
		{TypeText, MediaObject{ID: "1"}, "type"},
	} {
		_, err := MediaMessage("+447700900123", tc.kind, tc.o)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("MediaMessage(%s, %+v) = %v, want a field error on %s", tc.kind, tc.o, err, tc.field)
		}
	}
}

func TestParseUpload(t *testing.T) {
	if id, err := parseUpload(200, "", []byte(`{"id":"1013859600285441"}`)); err != nil || id != "1013859600285441" {
		t.Errorf("parseUpload ok = %q, %v", id, err)
	}
	_, err := parseUpload(400, "", []byte(`{"error":{"message":"(#131053) Media upload error","type":"OAuthException","code":131053,"fbtrace_id":"x"}}`))
	var e *Error
	if !errors.As(err, &e) || e.Code != 131053 || e.Retryable() {
		t.Errorf("parseUpload 131053 = %v", err)
	}
	_, err = parseUpload(503, "", nil)
	if !errors.As(err, &e) || !e.Retryable() {
		t.Errorf("parseUpload 503 = %v, want retryable", err)
	}
}
