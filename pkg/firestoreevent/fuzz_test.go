package firestoreevent_test

import (
	"bytes"
	"errors"
	"net/http"
	"testing"

	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
)

// FuzzDecode feeds arbitrary attributes and bodies through ReadRequest and
// Decode: every input must end in an event, a rejection or ErrNotCloudEvent,
// never a panic, and an accepted event must name a chat message consistently.
func FuzzDecode(f *testing.F) {
	ev := sample()
	f.Add(false, firestoreevent.TypeCreated, "application/protobuf", msgPath, "documents/"+msgPath, ev.BinaryBody())
	f.Add(false, firestoreevent.TypeCreatedWithAuthContext, "application/protobuf", msgPath, "", ev.BinaryBody())
	f.Add(false, firestoreevent.TypeCreated, "application/json", "", "documents/"+msgPath, []byte(`{"value":{"name":"projects/p/databases/(default)/documents/`+msgPath+`","fields":{"message":{"stringValue":"x"}}}}`))
	f.Add(false, "google.cloud.firestore.document.v1.updated", "application/protobuf", msgPath, "documents/"+msgPath, ev.BinaryBody())
	f.Add(true, "", "application/cloudevents+json", "", "", ev.StructuredBody(true))
	f.Add(true, "", "application/cloudevents+json", "", "", ev.StructuredBody(false))
	f.Add(true, "", "application/cloudevents-batch+json", "", "", []byte("["+string(ev.StructuredBody(true))+"]"))
	f.Add(false, firestoreevent.TypeCreated, "application/protobuf", "a/b", "documents/a/b", []byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, structured bool, ceType, contentType, document, subject string, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "http://ingest/", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if structured {
			req.Header.Set("Content-Type", contentType)
		} else {
			h := eventarctest.Event{ID: "fuzz", Path: msgPath}.BinaryHeaders()
			setOrDel(h, "Ce-Type", ceType)
			setOrDel(h, "Content-Type", contentType)
			setOrDel(h, "Ce-Document", document)
			setOrDel(h, "Ce-Subject", subject)
			req.Header = h
		}
		ce, err := firestoreevent.ReadRequest(req)
		if err != nil {
			if !errors.Is(err, firestoreevent.ErrNotCloudEvent) {
				t.Fatalf("ReadRequest error outside ErrNotCloudEvent: %v", err)
			}
			return
		}
		got, err := firestoreevent.Decode(ce)
		if err != nil {
			var rej *firestoreevent.Rejection
			if !errors.As(err, &rej) || rej.Reason == "" {
				t.Fatalf("Decode error is not a Rejection: %v", err)
			}
			return
		}
		if got.Ref.Path() != got.Path {
			t.Fatalf("ref %+v does not match path %q", got.Ref, got.Path)
		}
	})
}

func setOrDel(h http.Header, key, value string) {
	// Header values cannot carry newlines; net/http would refuse to send
	// them, so a receiver never sees them.
	if value == "" || bytes.ContainsAny([]byte(value), "\r\n\x00") {
		h.Del(key)
		return
	}
	h.Set(key, value)
}
