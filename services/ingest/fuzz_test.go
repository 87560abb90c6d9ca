package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// FuzzHandler posts arbitrary requests to the handler backed by the
// emulators: with Firestore and Pub/Sub up, every answer is 200 (published or
// rejected with a reason) or a 4xx for a request that is not a CloudEvent;
// never a 5xx, never a panic.
func FuzzHandler(f *testing.F) {
	e := newEnv(f, nil)
	e.seedLeaseAndEnquiry(f)
	valid := e.chatEvent(f, "seed", msgPath, textMessage())
	f.Add(false, firestoreevent.TypeCreated, "application/protobuf", valid.BinaryBody())
	f.Add(false, firestoreevent.TypeCreated, "application/json", []byte(`{"value":{"name":"projects/p/databases/(default)/documents/`+msgPath+`","fields":{"type":{"stringValue":"text"}}}}`))
	f.Add(false, "google.cloud.firestore.document.v1.deleted", "application/protobuf", valid.BinaryBody())
	f.Add(true, "", "application/cloudevents+json", valid.StructuredBody(true))
	f.Add(true, "", "application/cloudevents+json", valid.StructuredBody(false))
	f.Add(true, "", "text/plain", []byte("hello"))
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, structured bool, ceType, contentType string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if structured {
			setHeader(req.Header, "Content-Type", contentType)
		} else {
			h := eventarctest.Event{ID: fmt.Sprintf("fuzz-%d", seq.Add(1)), Path: msgPath, Project: project}.BinaryHeaders()
			setHeader(h, "Ce-Type", ceType)
			setHeader(h, "Content-Type", contentType)
			req.Header = h
		}
		rec := httptest.NewRecorder()
		e.events.ServeHTTP(rec, req)
		var ans map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &ans)
		switch rec.Code {
		case http.StatusOK:
			if o := ans["outcome"]; o != app.OutcomePublished && !(o == app.OutcomeRejected && ans["reason"] != "") {
				t.Fatalf("200 with body %s", rec.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d, body %s", rec.Code, rec.Body)
		}
	})
}

func setHeader(h http.Header, key, value string) {
	if value == "" || strings.ContainsAny(value, "\r\n\x00") {
		h.Del(key)
		return
	}
	h.Set(key, value)
}
