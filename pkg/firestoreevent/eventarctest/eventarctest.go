// Package eventarctest builds the HTTP requests Eventarc sends for Firestore
// document events, for tests and benchmarks of their receivers.
//
// Binary mode carries exactly the attributes Eventarc sets for Firestore
// (ce-id, ce-source, ce-specversion, ce-type, ce-subject, ce-time,
// ce-dataschema and the extensions ce-database, ce-namespace, ce-document,
// ce-location, ce-project) with a protobuf DocumentEventData body.
package eventarctest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DataSchema is the ce-dataschema Eventarc sets for Firestore events.
const DataSchema = "https://github.com/googleapis/google-cloudevents/blob/main/proto/google/events/cloud/firestore/v1/data.proto"

// Event describes one document event. Zero fields get Eventarc-like
// defaults: type created, project wadispatch-local, database (default),
// location europe-west2, time and create time now.
type Event struct {
	ID       string
	Type     string
	Project  string
	Database string
	Location string
	// Path is relative to the database root, e.g. leasecompany/l1/enquiries/...
	Path       string
	Fields     map[string]*firestoredata.Value
	CreateTime time.Time
}

func (e Event) withDefaults() Event {
	if e.Type == "" {
		e.Type = "google.cloud.firestore.document.v1.created"
	}
	if e.Project == "" {
		e.Project = "wadispatch-local"
	}
	if e.Database == "" {
		e.Database = "(default)"
	}
	if e.Location == "" {
		e.Location = "europe-west2"
	}
	if e.CreateTime.IsZero() {
		e.CreateTime = time.Now()
	}
	if e.ID == "" {
		e.ID = fmt.Sprintf("ev-%d", time.Now().UnixNano())
	}
	return e
}

// Data is the DocumentEventData of a creation: value set, no old value.
func (e Event) Data() *firestoredata.DocumentEventData {
	e = e.withDefaults()
	ts := timestamppb.New(e.CreateTime)
	return &firestoredata.DocumentEventData{Value: &firestoredata.Document{
		Name:       "projects/" + e.Project + "/databases/" + e.Database + "/documents/" + e.Path,
		Fields:     e.Fields,
		CreateTime: ts,
		UpdateTime: ts,
	}}
}

// BinaryHeaders are the headers of the binary-mode request.
func (e Event) BinaryHeaders() http.Header {
	e = e.withDefaults()
	h := http.Header{}
	h.Set("Content-Type", "application/protobuf")
	h.Set("Ce-Id", e.ID)
	h.Set("Ce-Source", "//firestore.googleapis.com/projects/"+e.Project+"/databases/"+e.Database)
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Type", e.Type)
	h.Set("Ce-Subject", "documents/"+e.Path)
	h.Set("Ce-Time", e.CreateTime.UTC().Format(time.RFC3339Nano))
	h.Set("Ce-Dataschema", DataSchema)
	h.Set("Ce-Database", e.Database)
	h.Set("Ce-Namespace", "(default)")
	h.Set("Ce-Document", e.Path)
	h.Set("Ce-Location", e.Location)
	h.Set("Ce-Project", e.Project)
	return h
}

// BinaryBody is the protobuf body of the binary-mode request.
func (e Event) BinaryBody() []byte {
	b, err := proto.Marshal(e.Data())
	if err != nil {
		panic(fmt.Sprintf("marshal DocumentEventData: %v", err))
	}
	return b
}

// Binary is the request Eventarc sends: binary content mode, protobuf data.
func (e Event) Binary(url string) *http.Request {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(e.BinaryBody()))
	if err != nil {
		panic(err)
	}
	req.Header = e.BinaryHeaders()
	return req
}

// StructuredBody is the structured-mode JSON event; with jsonData the data
// is protojson (datacontenttype application/json), otherwise protobuf in
// data_base64.
func (e Event) StructuredBody(jsonData bool) []byte {
	e = e.withDefaults()
	m := map[string]any{
		"specversion": "1.0",
		"id":          e.ID,
		"source":      "//firestore.googleapis.com/projects/" + e.Project + "/databases/" + e.Database,
		"type":        e.Type,
		"subject":     "documents/" + e.Path,
		"time":        e.CreateTime.UTC().Format(time.RFC3339Nano),
		"dataschema":  DataSchema,
		"database":    e.Database,
		"namespace":   "(default)",
		"document":    e.Path,
		"location":    e.Location,
		"project":     e.Project,
	}
	if jsonData {
		b, err := protojson.Marshal(e.Data())
		if err != nil {
			panic(fmt.Sprintf("protojson DocumentEventData: %v", err))
		}
		m["datacontenttype"] = "application/json"
		m["data"] = json.RawMessage(b)
	} else {
		m["datacontenttype"] = "application/protobuf"
		m["data_base64"] = base64.StdEncoding.EncodeToString(e.BinaryBody())
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// Structured is a structured-mode request (application/cloudevents+json).
func (e Event) Structured(url string, jsonData bool) *http.Request {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(e.StructuredBody(jsonData)))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=UTF-8")
	return req
}

// Fields converts plain Go values to Firestore values with Value.
func Fields(m map[string]any) map[string]*firestoredata.Value {
	out := make(map[string]*firestoredata.Value, len(m))
	for k, v := range m {
		out[k] = Value(v)
	}
	return out
}

// Value converts nil, bool, int, int64, float64, string, []byte, time.Time,
// *latlng.LatLng, []any and map[string]any to a Firestore value; it panics on
// other types (a test bug).
func Value(v any) *firestoredata.Value {
	switch v := v.(type) {
	case nil:
		return &firestoredata.Value{ValueType: &firestoredata.Value_NullValue{NullValue: structpb.NullValue_NULL_VALUE}}
	case bool:
		return &firestoredata.Value{ValueType: &firestoredata.Value_BooleanValue{BooleanValue: v}}
	case int:
		return &firestoredata.Value{ValueType: &firestoredata.Value_IntegerValue{IntegerValue: int64(v)}}
	case int64:
		return &firestoredata.Value{ValueType: &firestoredata.Value_IntegerValue{IntegerValue: v}}
	case float64:
		return &firestoredata.Value{ValueType: &firestoredata.Value_DoubleValue{DoubleValue: v}}
	case string:
		return &firestoredata.Value{ValueType: &firestoredata.Value_StringValue{StringValue: v}}
	case []byte:
		return &firestoredata.Value{ValueType: &firestoredata.Value_BytesValue{BytesValue: v}}
	case time.Time:
		return &firestoredata.Value{ValueType: &firestoredata.Value_TimestampValue{TimestampValue: timestamppb.New(v)}}
	case *latlng.LatLng:
		return &firestoredata.Value{ValueType: &firestoredata.Value_GeoPointValue{GeoPointValue: v}}
	case []any:
		vals := make([]*firestoredata.Value, len(v))
		for i, e := range v {
			vals[i] = Value(e)
		}
		return &firestoredata.Value{ValueType: &firestoredata.Value_ArrayValue{ArrayValue: &firestoredata.ArrayValue{Values: vals}}}
	case map[string]any:
		return &firestoredata.Value{ValueType: &firestoredata.Value_MapValue{MapValue: &firestoredata.MapValue{Fields: Fields(v)}}}
	default:
		panic(fmt.Sprintf("eventarctest.Value: unsupported %T", v))
	}
}
