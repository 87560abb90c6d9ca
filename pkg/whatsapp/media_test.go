package whatsapp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"
)

func TestMediaLimit(t *testing.T) {
	for mt, want := range map[string]int64{
		"image/jpeg":             5 << 20,
		"image/png":              5 << 20,
		"image/webp":             500 << 10,
		"audio/ogg; codecs=opus": 16 << 20,
		"audio/mpeg":             16 << 20,
		"video/mp4":              16 << 20,
		"application/pdf":        100 << 20,
		"text/plain":             100 << 20,
		"":                       100 << 20,
		"IMAGE/JPEG":             5 << 20,
		"not a; mime type=":      100 << 20,
	} {
		if got := MediaLimit(mt); got != want {
			t.Errorf("MediaLimit(%q) = %d, want %d", mt, got, want)
		}
	}
}

func TestParseSHA256(t *testing.T) {
	sum := sha256.Sum256([]byte("photo"))
	for _, s := range []string{
		hex.EncodeToString(sum[:]),
		" " + hex.EncodeToString(sum[:]) + "\n",
		base64.StdEncoding.EncodeToString(sum[:]),
		base64.RawStdEncoding.EncodeToString(sum[:]),
		base64.URLEncoding.EncodeToString(sum[:]),
		base64.RawURLEncoding.EncodeToString(sum[:]),
	} {
		got, err := ParseSHA256(s)
		if err != nil || !bytes.Equal(got, sum[:]) {
			t.Errorf("ParseSHA256(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "abc", hex.EncodeToString(sum[:16]), base64.StdEncoding.EncodeToString(sum[:31]), "zz" + hex.EncodeToString(sum[1:])} {
		if got, err := ParseSHA256(s); err == nil {
			t.Errorf("ParseSHA256(%q) = %x, want an error", s, got)
		}
	}
}

func TestParseMedia(t *testing.T) {
	m, err := parseMedia(200, "", []byte(`{"messaging_product":"whatsapp","url":"https://lookaside.fbsbx.com/x","mime_type":"image/jpeg","sha256":"ab","file_size":"303833","id":"1"}`))
	if err != nil || m.FileSize != 303833 || m.URL == "" {
		t.Fatalf("string file_size: %+v, %v", m, err)
	}
	m, err = parseMedia(200, "", []byte(`{"url":"https://x/y","file_size":12}`))
	if err != nil || m.FileSize != 12 {
		t.Fatalf("number file_size: %+v, %v", m, err)
	}
	for _, c := range []struct {
		status    int
		body      string
		reason    Reason
		retryable bool
	}{
		{200, `{}`, ReasonHTTPStatus, true},
		{200, `{"url":"https://x","file_size":-1}`, ReasonHTTPStatus, true},
		{400, `{"error":{"code":100,"error_subcode":33,"message":"Unsupported get request."}}`, ReasonMediaNotFound, false},
		{400, `{"error":{"code":131052,"message":"Media download error"}}`, ReasonMedia, false},
		{500, `{"error":{"code":131000}}`, ReasonServer, true},
		{404, `not json`, ReasonMediaNotFound, false},
		{504, ``, ReasonHTTPStatus, true},
		{429, ``, ReasonHTTPStatus, true},
		{403, `<html>`, ReasonHTTPStatus, false},
	} {
		_, err := parseMedia(c.status, "", []byte(c.body))
		var e *Error
		if !errors.As(err, &e) || e.Reason != c.reason || e.Retryable() != c.retryable {
			t.Errorf("%d %s: %v, want %s retryable %v", c.status, c.body, err, c.reason, c.retryable)
		}
	}
}

func TestCopyAtMost(t *testing.T) {
	var dst bytes.Buffer
	if n, err := copyAtMost(&dst, bytes.NewReader(make([]byte, 100)), 100); n != 100 || err != nil {
		t.Fatalf("at the cap: %d, %v", n, err)
	}
	dst.Reset()
	_, err := copyAtMost(&dst, bytes.NewReader(make([]byte, 101)), 100)
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonMediaTooLarge || dst.Len() > 100 {
		t.Fatalf("past the cap: %v, %d written", err, dst.Len())
	}
	_, err = copyAtMost(failingWriter{}, bytes.NewReader(make([]byte, 10)), 100)
	if errors.As(err, &e) || !errors.Is(err, errDisk) {
		t.Fatalf("a writer's failure must come back as itself, not a WhatsApp error: %v", err)
	}
}

var errDisk = errors.New("disk full")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errDisk }

func FuzzParseMedia(f *testing.F) {
	f.Add(200, []byte(`{"url":"https://x","mime_type":"image/jpeg","sha256":"ab","file_size":"3","id":"1"}`))
	f.Add(400, []byte(`{"error":{"code":100}}`))
	f.Add(200, []byte(`{"url":"https://x","file_size":1e99}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		m, err := parseMedia(status, "", body)
		if err == nil && (m.URL == "" || m.FileSize < 0 || status < 200 || status > 299) {
			t.Fatalf("accepted %+v from %d %q", m, status, body)
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func FuzzParseSHA256(f *testing.F) {
	sum := sha256.Sum256(nil)
	f.Add(hex.EncodeToString(sum[:]))
	f.Add(base64.StdEncoding.EncodeToString(sum[:]))
	f.Add("=")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseSHA256(s)
		if err == nil && len(b) != sha256.Size {
			t.Fatalf("ParseSHA256(%q) = %d bytes", s, len(b))
		}
	})
}
