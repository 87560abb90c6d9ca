// Package firestoreevent decodes the CloudEvents Eventarc delivers when a
// chat message document is created in Firestore.
//
// Eventarc posts `google.cloud.firestore.document.v1.created` events in
// binary content mode with a protobuf google.events.cloud.firestore.v1.DocumentEventData
// body (content-type application/protobuf) and the document path in the
// `document` extension and the subject (`documents/{path}`). The package also
// reads structured mode and protojson data, which other producers (and
// hand-written test requests) use. Sources: github.com/googleapis/google-cloudevents
// (proto/google/events/cloud/firestore/v1/data.proto and its testdata) and the
// Eventarc Firestore event docs.
//
// Everything here is pure except ReadRequest, which only reads the request.
package firestoreevent

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/dispatch"
)

// The event types ingest acts on: a document was created, with or without
// the authentication context of the writer.
const (
	TypeCreated                = "google.cloud.firestore.document.v1.created"
	TypeCreatedWithAuthContext = "google.cloud.firestore.document.v1.created.withAuthContext"
)

// Machine-readable reasons for events that can never be turned into a task.
const (
	// ReasonWrongEventType: not a document creation (an update, a deletion,
	// or an event of another product reaching the endpoint).
	ReasonWrongEventType = "wrong_event_type"
	// ReasonNotAChatMessage: the document is not a chatMessages document.
	ReasonNotAChatMessage = "not_a_chat_message"
	// ReasonInvalidEvent: a CloudEvent whose data or attributes are not a
	// usable Firestore document event (undecodable data, no document,
	// attributes disagreeing with the document name).
	ReasonInvalidEvent = "invalid_event"
)

// ErrNotCloudEvent is wrapped by ReadRequest errors for requests that are not
// CloudEvents at all (no specversion, missing required attributes, a body
// that is not a structured event).
var ErrNotCloudEvent = errors.New("not a CloudEvent")

// Rejection is a permanent failure: retrying the same event can never
// succeed.
type Rejection struct {
	Reason string
	Detail string
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Detail }

// RejectReason returns the machine-readable reason; callers find rejections
// of any package with errors.As on interface{ RejectReason() string }.
func (r *Rejection) RejectReason() string { return r.Reason }

func reject(reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Event is a decoded creation of a chat message document.
type Event struct {
	ID     string
	Type   string
	Source string
	Time   time.Time
	// Project and Database come from the document's resource name.
	Project  string
	Database string
	// Path is the document path relative to the database root,
	// leasecompany/{leaseId}/enquiries/{enquiryId}/whatsapp/messages/chatMessages/{messageId}.
	Path       string
	Ref        dispatch.MessageRef
	CreateTime time.Time
	UpdateTime time.Time
	// Fields are the document's fields as plain Go values (see Plain).
	Fields map[string]any
}

// ReadRequest reads a CloudEvent in binary or structured content mode. Its
// errors wrap ErrNotCloudEvent unless the body could not be read (for
// example because it exceeded an http.MaxBytesReader limit).
func ReadRequest(r *http.Request) (*event.Event, error) {
	e, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("read CloudEvent: %w", err)
		}
		return nil, fmt.Errorf("%w: %w", ErrNotCloudEvent, err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCloudEvent, err)
	}
	return e, nil
}

// Decode turns a CloudEvent into an Event. Its errors are *Rejection.
func Decode(e *event.Event) (*Event, error) {
	switch e.Type() {
	case TypeCreated, TypeCreatedWithAuthContext:
	default:
		return nil, reject(ReasonWrongEventType, "event type %q is not a document creation", dispatch.Clip(e.Type(), 200))
	}
	data, err := DecodeData(e.DataContentType(), e.Data())
	if err != nil {
		return nil, reject(ReasonInvalidEvent, "%v", err)
	}
	doc := data.GetValue()
	if doc == nil {
		return nil, reject(ReasonInvalidEvent, "event carries no document value")
	}
	path, err := eventPath(e)
	if err != nil {
		return nil, err
	}
	project, database, rel, ok := splitName(doc.GetName())
	if !ok {
		return nil, reject(ReasonInvalidEvent, "document name %q is not projects/{p}/databases/{d}/documents/{path}", dispatch.Clip(doc.GetName(), 200))
	}
	if path == "" {
		path = rel
	} else if path != rel {
		return nil, reject(ReasonInvalidEvent, "event names document %q but carries %q", dispatch.Clip(path, 200), dispatch.Clip(rel, 200))
	}
	ref, err := dispatch.ParseMessagePath(path)
	if err != nil {
		return nil, reject(ReasonNotAChatMessage, "%v", err)
	}
	return &Event{
		ID:         e.ID(),
		Type:       e.Type(),
		Source:     e.Source(),
		Time:       e.Time(),
		Project:    project,
		Database:   database,
		Path:       path,
		Ref:        ref,
		CreateTime: doc.GetCreateTime().AsTime(),
		UpdateTime: doc.GetUpdateTime().AsTime(),
		Fields:     Fields(doc.GetFields()),
	}, nil
}

// DecodeData decodes DocumentEventData in the encoding contentType names:
// protobuf (what Eventarc sends) or protojson. An empty content type means
// JSON, as the CloudEvents JSON format specifies.
func DecodeData(contentType string, data []byte) (*firestoredata.DocumentEventData, error) {
	mediaType := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, fmt.Errorf("data content type %q: %w", dispatch.Clip(contentType, 200), err)
		}
		mediaType = mt
	}
	out := &firestoredata.DocumentEventData{}
	switch mediaType {
	case "application/protobuf", "application/x-protobuf":
		if err := proto.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("protobuf DocumentEventData: %w", err)
		}
	case "", "application/json":
		// Unknown fields are tolerated so a newer producer adding fields
		// does not stop the pipeline.
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("JSON DocumentEventData: %w", err)
		}
	default:
		return nil, fmt.Errorf("data content type %q is neither application/protobuf nor application/json", dispatch.Clip(contentType, 200))
	}
	return out, nil
}

// eventPath is the document path the attributes name: the `document`
// extension, else the subject; "" when neither is set. When both are set
// they must agree.
func eventPath(e *event.Event) (string, error) {
	var doc string
	if v, ok := e.Extensions()["document"]; ok {
		s, ok := v.(string)
		if !ok {
			return "", reject(ReasonInvalidEvent, "document extension is a %T, not a string", v)
		}
		doc = strings.TrimPrefix(s, "documents/")
	}
	subject := e.Subject()
	if subject != "" {
		rel, ok := strings.CutPrefix(subject, "documents/")
		if !ok {
			return "", reject(ReasonInvalidEvent, "subject %q does not start with documents/", dispatch.Clip(subject, 200))
		}
		if doc != "" && doc != rel {
			return "", reject(ReasonInvalidEvent, "document extension %q and subject %q disagree", dispatch.Clip(doc, 200), dispatch.Clip(subject, 200))
		}
		doc = rel
	}
	return doc, nil
}

// splitName splits projects/{p}/databases/{d}/documents/{path}.
func splitName(name string) (project, database, rel string, ok bool) {
	rest, ok := strings.CutPrefix(name, "projects/")
	if !ok {
		return "", "", "", false
	}
	project, rest, ok = strings.Cut(rest, "/databases/")
	if !ok || project == "" || strings.Contains(project, "/") {
		return "", "", "", false
	}
	database, rel, ok = strings.Cut(rest, "/documents/")
	if !ok || database == "" || rel == "" || strings.Contains(database, "/") {
		return "", "", "", false
	}
	return project, database, rel, true
}
