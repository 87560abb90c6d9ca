package whatsapp_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/visn/wadispatch/pkg/whatsapp"
)

// The client's upload and media messages against the simulator, which
// checks Meta's types and sizes on its own.
func TestUploadAndSendMediaAgainstTheSimulator(t *testing.T) {
	sim, c, _ := simulator(t, nil)
	ctx := context.Background()
	id, err := c.UploadMedia(ctx, from(), "image/png", "dent.png", bytes.NewReader([]byte("png bytes")))
	if err != nil || id == "" {
		t.Fatalf("upload: %q, %v", id, err)
	}
	if got := sim.MediaCounts().Uploads; got != 1 {
		t.Errorf("%d uploads", got)
	}
	for _, m := range []whatsapp.MediaObject{{ID: id, Caption: "Rear door"}, {Link: "https://cdn.example/dent.png"}} {
		msg, err := whatsapp.MediaMessage("+"+driver, whatsapp.TypeImage, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(ctx, from(), msg); err != nil {
			t.Fatalf("send %+v: %v", m, err)
		}
	}
	acc := sim.Messages(phoneID, "")
	if len(acc) != 2 || acc[0].Media == nil || acc[0].Media.ID != id || acc[0].Media.Caption != "Rear door" || acc[1].Media.Link == "" {
		t.Fatalf("accepted %+v", acc)
	}

	// An image id sent as a document, an unsupported type, a voice note
	// without opus, an image over 5 MB: 131053.
	doc, _ := whatsapp.MediaMessage("+"+driver, whatsapp.TypeDocument, whatsapp.MediaObject{ID: id})
	_, err = c.Send(ctx, from(), doc)
	if e := werr(t, err, whatsapp.ReasonMedia, false); e.Code != 131053 {
		t.Errorf("image as document: %v", err)
	}
	for _, u := range []struct {
		mime string
		size int
	}{{"image/gif", 10}, {"audio/ogg", 10}, {"image/jpeg", 5<<20 + 1}} {
		_, err := c.UploadMedia(ctx, from(), u.mime, "f", bytes.NewReader(make([]byte, u.size)))
		if e := werr(t, err, whatsapp.ReasonMedia, false); e.Code != 131053 {
			t.Errorf("upload %s of %d bytes: %v", u.mime, u.size, err)
		}
	}
	if _, err := c.UploadMedia(ctx, from(), "audio/ogg; codecs=opus", "n.ogg", bytes.NewReader([]byte("ogg"))); err != nil {
		t.Errorf("voice note upload: %v", err)
	}
}
