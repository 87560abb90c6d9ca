package whatsapp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

// werr asserts err is an *whatsapp.Error of reason and retryability.
func werr(t *testing.T, err error, reason whatsapp.Reason, retryable bool) *whatsapp.Error {
	t.Helper()
	var e *whatsapp.Error
	if !errors.As(err, &e) || e.Reason != reason || e.Retryable() != retryable {
		t.Fatalf("error %v (%#v), want reason %s retryable %v", err, e, reason, retryable)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error %q holds the token", err)
	}
	return e
}

func TestMediaRetrieveAndDownload(t *testing.T) {
	sim, c, _ := simulator(t, nil)
	ctx := context.Background()
	data := bytes.Repeat([]byte("jpeg"), 1000)
	added := sim.AddMedia(phoneID, "image/jpeg", data)

	m, err := c.RetrieveMedia(ctx, from(), added.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != added.ID || m.MIMEType != "image/jpeg" || m.FileSize != int64(len(data)) || m.URL == "" {
		t.Fatalf("media %+v", m)
	}
	// The webhook's base64 and the Graph answer's hex name the same bytes.
	hook, err1 := whatsapp.ParseSHA256(added.SHA256)
	graph, err2 := whatsapp.ParseSHA256(m.SHA256)
	sum := sha256.Sum256(data)
	if err1 != nil || err2 != nil || !bytes.Equal(hook, sum[:]) || !bytes.Equal(graph, sum[:]) {
		t.Fatalf("sha256 webhook %q graph %q: %v %v", added.SHA256, m.SHA256, err1, err2)
	}
	var got bytes.Buffer
	n, err := c.DownloadMedia(ctx, from(), m.URL, whatsapp.MediaLimit(m.MIMEType), &got)
	if err != nil || n != int64(len(data)) || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("download: %d bytes, %v", n, err)
	}

	// Over the cap, by Content-Length: nothing is written.
	got.Reset()
	_, err = c.DownloadMedia(ctx, from(), m.URL, 100, &got)
	werr(t, err, whatsapp.ReasonMediaTooLarge, false)
	if got.Len() != 0 {
		t.Errorf("%d bytes written past the cap", got.Len())
	}
	if mc := sim.MediaCounts(); mc.URLRequests != 1 || mc.Downloads != 2 {
		t.Errorf("media counts %+v", mc)
	}
}

func TestMediaErrorsAreClassified(t *testing.T) {
	sim, c, _ := simulator(t, nil)
	ctx := context.Background()
	added := sim.AddMedia(phoneID, "application/pdf", []byte("%PDF-1.7"))
	gone := sim.AddMedia(phoneID, "image/png", []byte("png"))
	if err := sim.SetMediaUnavailable(gone.ID); err != nil {
		t.Fatal(err)
	}

	wrongToken := from()
	wrongToken.Token = whatsapp.NewToken("EAAG-someone-else")
	_, err := c.RetrieveMedia(ctx, wrongToken, added.ID)
	if e := werr(t, err, whatsapp.ReasonAuth, false); e.Code != 190 || e.HTTPStatus != http.StatusUnauthorized {
		t.Errorf("wrong token: %v", e)
	}
	_, err = c.RetrieveMedia(ctx, from(), "999")
	if e := werr(t, err, whatsapp.ReasonMediaNotFound, false); e.Code != 100 {
		t.Errorf("unknown id: %v", e)
	}
	other := from()
	other.PhoneNumberID = "999999999999999"
	sim.AddPhoneNumber(other.PhoneNumberID, token)
	_, err = c.RetrieveMedia(ctx, other, added.ID)
	werr(t, err, whatsapp.ReasonMediaNotFound, false)
	_, err = c.RetrieveMedia(ctx, from(), gone.ID)
	if e := werr(t, err, whatsapp.ReasonMedia, false); e.Code != 131052 {
		t.Errorf("unavailable media: %v", e)
	}

	m, err := c.RetrieveMedia(ctx, from(), added.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sink bytes.Buffer
	if err := sim.AddMediaFault(whatsappsim.MediaFault{Kind: whatsappsim.MediaFaultDownloadStatus, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DownloadMedia(ctx, from(), m.URL, 1<<20, &sink)
	if e := werr(t, err, whatsapp.ReasonHTTPStatus, true); e.HTTPStatus != http.StatusServiceUnavailable {
		t.Errorf("download fault: %v", e)
	}
	if err := sim.AddMediaFault(whatsappsim.MediaFault{Kind: whatsappsim.MediaFaultExpireURL, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DownloadMedia(ctx, from(), m.URL, 1<<20, &sink)
	werr(t, err, whatsapp.ReasonMediaURLExpired, true)
	_, err = c.DownloadMedia(ctx, wrongToken, m.URL, 1<<20, &sink)
	werr(t, err, whatsapp.ReasonMediaURLExpired, true)
	if _, err := c.DownloadMedia(ctx, from(), m.URL, 1<<20, &sink); err != nil || sink.String() != "%PDF-1.7" {
		t.Fatalf("download after the faults: %q, %v", sink.String(), err)
	}

	// A URL outlives its validity: Meta's 5 minutes, shortened here.
	sim.SetMediaURLTTL(time.Millisecond)
	m, err = c.RetrieveMedia(ctx, from(), added.ID)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	_, err = c.DownloadMedia(ctx, from(), m.URL, 1<<20, &sink)
	werr(t, err, whatsapp.ReasonMediaURLExpired, true)
	if mc := sim.MediaCounts(); mc.ExpiredURLs != 2 || mc.DownloadFaults != 2 {
		t.Errorf("media counts %+v", mc)
	}

	// The client never sends the token to a URL that is not http(s).
	_, err = c.DownloadMedia(ctx, from(), "file:///etc/passwd", 1<<20, &sink)
	werr(t, err, whatsapp.ReasonInvalidMessage, false)
}

func TestMediaUploadAnswersAnID(t *testing.T) {
	sim, _, _ := simulator(t, nil)
	hs := httptest.NewServer(sim.Handler())
	t.Cleanup(hs.Close)
	srv := hs.URL
	upload := func(fields map[string]string, file []byte) *http.Response {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		for k, v := range fields {
			_ = mw.WriteField(k, v)
		}
		if file != nil {
			fw, _ := mw.CreateFormFile("file", "photo.jpg")
			_, _ = fw.Write(file)
		}
		_ = mw.Close()
		req, _ := http.NewRequest(http.MethodPost, srv+"/v21.0/"+phoneID+"/media", &body)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	ok := upload(map[string]string{"messaging_product": "whatsapp", "type": "image/jpeg"}, []byte("jpeg"))
	if ok.StatusCode != http.StatusOK {
		t.Fatalf("upload: %d", ok.StatusCode)
	}
	if mc := sim.MediaCounts(); mc.Uploads != 1 {
		t.Errorf("uploads %d", mc.Uploads)
	}
	for name, c := range map[string]struct {
		fields map[string]string
		file   []byte
		code   string
	}{
		"no messaging_product": {map[string]string{"type": "image/jpeg"}, []byte("x"), "131008"},
		"no file":              {map[string]string{"messaging_product": "whatsapp", "type": "image/jpeg"}, nil, "131008"},
		"too large":            {map[string]string{"messaging_product": "whatsapp", "type": "image/webp"}, make([]byte, 600<<10), "131053"},
	} {
		resp := upload(c.fields, c.file)
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(b.String(), `"code":`+c.code) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b.String())
		}
	}
}
