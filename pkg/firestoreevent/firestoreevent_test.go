package firestoreevent_test

import (
	"bytes"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"google.golang.org/genproto/googleapis/type/latlng"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
)

const msgPath = "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1"

var created = time.Date(2026, 11, 25, 12, 0, 0, 123000000, time.UTC)

func sample() eventarctest.Event {
	return eventarctest.Event{
		ID:         "ev-1",
		Path:       msgPath,
		CreateTime: created,
		Fields: eventarctest.Fields(map[string]any{
			"message":            "Hello",
			"type":               "text",
			"driverMobileNumber": "07700 900123",
			"ETA":                int64(15),
		}),
	}
}

func decodeRequest(t *testing.T, req *http.Request) (*firestoreevent.Event, error) {
	t.Helper()
	ce, err := firestoreevent.ReadRequest(req)
	if err != nil {
		t.Fatalf("ReadRequest: %v", err)
	}
	return firestoreevent.Decode(ce)
}

func TestDecodeModes(t *testing.T) {
	ev := sample()
	for name, req := range map[string]*http.Request{
		"binary protobuf":            ev.Binary("http://ingest/"),
		"structured JSON data":       ev.Structured("http://ingest/", true),
		"structured protobuf base64": ev.Structured("http://ingest/", false),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decodeRequest(t, req)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: "m1"}
			if got.Ref != want || got.Path != msgPath {
				t.Errorf("ref %+v path %q, want %+v %q", got.Ref, got.Path, want, msgPath)
			}
			if got.ID != "ev-1" || got.Type != firestoreevent.TypeCreated || got.Project != "wadispatch-local" || got.Database != "(default)" {
				t.Errorf("attributes: %+v", got)
			}
			if !got.CreateTime.Equal(created) || !got.Time.Equal(created) {
				t.Errorf("times: create %v event %v, want %v", got.CreateTime, got.Time, created)
			}
			wantFields := map[string]any{
				"message": "Hello", "type": "text", "driverMobileNumber": "07700 900123", "ETA": int64(15),
			}
			if !reflect.DeepEqual(got.Fields, wantFields) {
				t.Errorf("fields %#v, want %#v", got.Fields, wantFields)
			}
		})
	}
}

func TestDecodeWithAuthContext(t *testing.T) {
	ev := sample()
	ev.Type = firestoreevent.TypeCreatedWithAuthContext
	req := ev.Binary("http://ingest/")
	req.Header.Set("Ce-Authtype", "service_account")
	req.Header.Set("Ce-Authid", "web@example.iam.gserviceaccount.com")
	if _, err := decodeRequest(t, req); err != nil {
		t.Fatalf("Decode: %v", err)
	}
}

func reasonOf(err error) string {
	var r interface{ RejectReason() string }
	if errors.As(err, &r) {
		return r.RejectReason()
	}
	return ""
}

func TestDecodeRejections(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(h http.Header, body *[]byte)
		reason string
	}{
		{"updated event", func(h http.Header, _ *[]byte) { h.Set("Ce-Type", "google.cloud.firestore.document.v1.updated") }, firestoreevent.ReasonWrongEventType},
		{"written event", func(h http.Header, _ *[]byte) { h.Set("Ce-Type", "google.cloud.firestore.document.v1.written") }, firestoreevent.ReasonWrongEventType},
		{"storage event", func(h http.Header, _ *[]byte) { h.Set("Ce-Type", "google.cloud.storage.object.v1.finalized") }, firestoreevent.ReasonWrongEventType},
		{"garbage protobuf", func(_ http.Header, b *[]byte) { *b = []byte{0xff, 0xff, 0xff} }, firestoreevent.ReasonInvalidEvent},
		{"empty data", func(_ http.Header, b *[]byte) { *b = nil }, firestoreevent.ReasonInvalidEvent},
		{"xml data", func(h http.Header, _ *[]byte) { h.Set("Content-Type", "application/xml") }, firestoreevent.ReasonInvalidEvent},
		{"document extension disagrees", func(h http.Header, _ *[]byte) {
			h.Set("Ce-Document", "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/OTHER")
		}, firestoreevent.ReasonInvalidEvent},
		{"subject disagrees", func(h http.Header, _ *[]byte) {
			h.Set("Ce-Subject", "documents/leasecompany/l2/enquiries/e1/whatsapp/messages/chatMessages/m1")
		}, firestoreevent.ReasonInvalidEvent},
		{"subject without documents/", func(h http.Header, _ *[]byte) { h.Set("Ce-Subject", msgPath) }, firestoreevent.ReasonInvalidEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := sample()
			h := ev.BinaryHeaders()
			body := ev.BinaryBody()
			tc.mutate(h, &body)
			req, _ := http.NewRequest(http.MethodPost, "http://ingest/", bytes.NewReader(body))
			req.Header = h
			_, err := decodeRequest(t, req)
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("err = %v (reason %q), want reason %q", err, got, tc.reason)
			}
		})
	}
}

func TestDecodeOtherDocuments(t *testing.T) {
	for _, path := range []string{
		"leasecompany/l1",
		"leasecompany/l1/enquiries/e1",
		"leasecompany/l1/enquiries/e1/whatsapp/messages/otherMessages/m1",
		"users/u1/whatsapp/messages/chatMessages/m1/x/y",
	} {
		ev := sample()
		ev.Path = path
		_, err := decodeRequest(t, ev.Binary("http://ingest/"))
		if got := reasonOf(err); got != firestoreevent.ReasonNotAChatMessage {
			t.Errorf("%s: err = %v, want %s", path, err, firestoreevent.ReasonNotAChatMessage)
		}
	}
}

func TestDecodeWithoutDocumentValue(t *testing.T) {
	ev := sample()
	req := ev.Binary("http://ingest/")
	req.Body = http.NoBody
	req.ContentLength = 0
	ce, err := firestoreevent.ReadRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	// An empty protobuf body is a valid, empty DocumentEventData.
	_, err = firestoreevent.Decode(ce)
	if got := reasonOf(err); got != firestoreevent.ReasonInvalidEvent || !strings.Contains(err.Error(), "no document") {
		t.Fatalf("err = %v, want invalid_event about the missing document", err)
	}
}

func TestDecodePathFromDocumentNameOnly(t *testing.T) {
	ev := sample()
	h := ev.BinaryHeaders()
	h.Del("Ce-Document")
	h.Del("Ce-Subject")
	req, _ := http.NewRequest(http.MethodPost, "http://ingest/", bytes.NewReader(ev.BinaryBody()))
	req.Header = h
	got, err := decodeRequest(t, req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != msgPath {
		t.Fatalf("path %q", got.Path)
	}
}

func TestReadRequestNotACloudEvent(t *testing.T) {
	for name, req := range map[string]*http.Request{
		"plain JSON": func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://ingest/", strings.NewReader(`{"hello":"world"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}(),
		"binary without id": func() *http.Request {
			r := sample().Binary("http://ingest/")
			r.Header.Del("Ce-Id")
			return r
		}(),
		"structured garbage": func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://ingest/", strings.NewReader(`{"specversion":`))
			r.Header.Set("Content-Type", "application/cloudevents+json")
			return r
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := firestoreevent.ReadRequest(req)
			if !errors.Is(err, firestoreevent.ErrNotCloudEvent) {
				t.Fatalf("err = %v, want ErrNotCloudEvent", err)
			}
		})
	}
}

func TestReadRequestTooLarge(t *testing.T) {
	req := sample().Binary("http://ingest/")
	req.Body = http.MaxBytesReader(nil, req.Body, 10)
	_, err := firestoreevent.ReadRequest(req)
	var tooLarge *http.MaxBytesError
	if !errors.As(err, &tooLarge) || errors.Is(err, firestoreevent.ErrNotCloudEvent) {
		t.Fatalf("err = %v, want a MaxBytesError that is not ErrNotCloudEvent", err)
	}
}

func TestPlain(t *testing.T) {
	ts := time.Date(2020, 4, 23, 14, 23, 53, 241000000, time.UTC)
	ref := &firestoredata.Value{ValueType: &firestoredata.Value_ReferenceValue{ReferenceValue: "projects/p/databases/(default)/documents/a/b"}}
	in := eventarctest.Fields(map[string]any{
		"null":   nil,
		"bool":   true,
		"int":    int64(math.MinInt64),
		"double": 5.5,
		"ts":     ts,
		"str":    "text",
		"bytes":  []byte{1, 2},
		"geo":    &latlng.LatLng{Latitude: 51.4543, Longitude: -0.9781},
		"array":  []any{int64(1), "x"},
		"map":    map[string]any{"field1": "x", "nested": map[string]any{"n": []any{}}},
	})
	in["ref"] = ref
	in["unset"] = &firestoredata.Value{}
	want := map[string]any{
		"null":   nil,
		"bool":   true,
		"int":    int64(math.MinInt64),
		"double": 5.5,
		"ts":     ts,
		"str":    "text",
		"bytes":  []byte{1, 2},
		"geo":    firestoreevent.GeoPoint{Latitude: 51.4543, Longitude: -0.9781},
		"array":  []any{int64(1), "x"},
		"map":    map[string]any{"field1": "x", "nested": map[string]any{"n": []any{}}},
		"ref":    firestoreevent.Reference("projects/p/databases/(default)/documents/a/b"),
		"unset":  nil,
	}
	if got := firestoreevent.Fields(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("Fields:\n got %#v\nwant %#v", got, want)
	}
}

// The google-cloudevents testdata (DocumentEventData-complex.json), in the
// shape Eventarc's JSON encoding produces, decodes to the same values.
func TestDecodeDataGoogleTestdataShape(t *testing.T) {
	data := `{
  "oldValue": {},
  "updateMask": {},
  "value": {
    "createTime": "2020-04-23T14:25:05.349632Z",
    "fields": {
      "arrayValue": {"arrayValue": {"values": [{"integerValue": "1"}, {"integerValue": "2"}]}},
      "booleanValue": {"booleanValue": true},
      "doubleValue": {"doubleValue": 5.5},
      "geoPointValue": {"geoPointValue": {"latitude": 51.4543, "longitude": -0.9781}},
      "intValue": {"integerValue": "50"},
      "mapValue": {"mapValue": {"fields": {"field1": {"stringValue": "x"}, "field2": {"arrayValue": {"values": [{"stringValue": "x"}, {"integerValue": "1"}]}}}}},
      "nullValue": {"nullValue": null},
      "referenceValue": {"referenceValue": "projects/project-id/databases/(default)/documents/foo/bar/baz/qux"},
      "stringValue": {"stringValue": "text"},
      "timestampValue": {"timestampValue": "2020-04-23T14:23:53.241Z"}
    },
    "name": "projects/project-id/databases/(default)/documents/gcf-test/IH75dRdeYJKd4uuQiqch",
    "updateTime": "2020-04-23T14:25:05.349632Z"
  }
}`
	d, err := firestoreevent.DecodeData("application/json; charset=utf-8", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	got := firestoreevent.Fields(d.GetValue().GetFields())
	want := map[string]any{
		"arrayValue":     []any{int64(1), int64(2)},
		"booleanValue":   true,
		"doubleValue":    5.5,
		"geoPointValue":  firestoreevent.GeoPoint{Latitude: 51.4543, Longitude: -0.9781},
		"intValue":       int64(50),
		"mapValue":       map[string]any{"field1": "x", "field2": []any{"x", int64(1)}},
		"nullValue":      nil,
		"referenceValue": firestoreevent.Reference("projects/project-id/databases/(default)/documents/foo/bar/baz/qux"),
		"stringValue":    "text",
		"timestampValue": time.Date(2020, 4, 23, 14, 23, 53, 241000000, time.UTC),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
}
