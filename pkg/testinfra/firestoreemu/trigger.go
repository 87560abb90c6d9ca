package firestoreemu

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/uuid"
	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/testinfra/eventdelivery"
)

// EventKind is the Firestore event a trigger fires on.
type EventKind string

// The Eventarc Firestore event kinds.
const (
	Created EventKind = "created"
	Updated EventKind = "updated"
	Deleted EventKind = "deleted"
	Written EventKind = "written"
)

const dataSchema = "https://github.com/googleapis/google-cloudevents/blob/main/proto/google/events/cloud/firestore/v1/data.proto"

// Trigger delivers a CloudEvent to URL for every committed document change
// of kind Event whose path matches Pattern, as an Eventarc Firestore trigger
// does.
type Trigger struct {
	Event EventKind
	// Pattern is a document path relative to the database root, as in
	// Eventarc: literal segments, {var} or * for one segment, {var=**} or **
	// for any number of segments.
	Pattern string
	// URL receives the POST.
	URL string
	// Database is the database id; empty means "(default)".
	Database string
	// Project restricts the trigger to one project; empty matches any.
	Project string
}

// ParseTrigger parses the program's --trigger syntax:
// KIND[@DATABASE]:PATTERN=URL, e.g.
// created:leasecompany/{leaseId}/enquiries/{enquiryId}=http://127.0.0.1:8081/
func ParseTrigger(spec string) (Trigger, error) {
	head, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return Trigger{}, fmt.Errorf("trigger %q: want KIND[@DATABASE]:PATTERN=URL", spec)
	}
	var t Trigger
	kind, db, _ := strings.Cut(head, "@")
	t.Event, t.Database = EventKind(kind), db
	i := strings.LastIndex(rest, "=http")
	if i < 0 {
		return Trigger{}, fmt.Errorf("trigger %q: missing =URL (http:// or https://)", spec)
	}
	t.Pattern, t.URL = rest[:i], rest[i+1:]
	if err := t.validate(); err != nil {
		return Trigger{}, err
	}
	return t, nil
}

func (t Trigger) validate() error {
	switch t.Event {
	case Created, Updated, Deleted, Written:
	default:
		return fmt.Errorf("trigger: unknown event kind %q (want created, updated, deleted or written)", t.Event)
	}
	if t.Pattern == "" || strings.HasPrefix(t.Pattern, "/") {
		return fmt.Errorf("trigger: pattern %q must be a document path relative to the database root", t.Pattern)
	}
	if !strings.HasPrefix(t.URL, "http://") && !strings.HasPrefix(t.URL, "https://") {
		return fmt.Errorf("trigger: URL %q must be http:// or https://", t.URL)
	}
	return nil
}

func (t Trigger) databaseID() string {
	if t.Database == "" {
		return "(default)"
	}
	return t.Database
}

func matchPattern(pattern, path []string) bool {
	if len(pattern) == 0 {
		return len(path) == 0
	}
	p := pattern[0]
	if p == "**" || (strings.HasPrefix(p, "{") && strings.HasSuffix(p, "=**}")) {
		for i := 0; i <= len(path); i++ {
			if matchPattern(pattern[1:], path[i:]) {
				return true
			}
		}
		return false
	}
	if len(path) == 0 {
		return false
	}
	if p != "*" && !(strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}")) && p != path[0] {
		return false
	}
	return matchPattern(pattern[1:], path[1:])
}

// DeliveryPolicy sets how trigger deliveries are retried: a non-2xx answer
// or a connection failure is retried with exponential backoff.
type DeliveryPolicy = eventdelivery.Policy

// DropDeliveries makes every trigger drop the events of the commits that
// follow, until called with false (eventdelivery.Queue.Drop).
func (s *Server) DropDeliveries(drop bool) { s.deliveries.Drop(drop) }

// AddTrigger registers a trigger for subsequent commits.
func (s *Server) AddTrigger(t Trigger) error {
	if err := t.validate(); err != nil {
		return err
	}
	s.trigMu.Lock()
	s.trigs = append(s.trigs, t)
	s.trigMu.Unlock()
	return nil
}

// fireTriggers starts the deliveries for a commit's changes; it never waits
// for them.
func (s *Server) fireTriggers(dbName string, changes []change, at time.Time) {
	s.trigMu.RLock()
	trigs := s.trigs
	s.trigMu.RUnlock()
	if len(trigs) == 0 || len(changes) == 0 {
		return
	}
	parts := strings.Split(dbName, "/")
	project, database := parts[1], parts[3]
	for _, ch := range changes {
		rel := strings.TrimPrefix(ch.name, dbName+"/documents/")
		segs := strings.Split(rel, "/")
		kind := Updated
		switch {
		case ch.old == nil:
			kind = Created
		case ch.new == nil:
			kind = Deleted
		}
		for _, t := range trigs {
			if t.databaseID() != database || (t.Project != "" && t.Project != project) {
				continue
			}
			if t.Event != kind && t.Event != Written {
				continue
			}
			if !matchPattern(strings.Split(t.Pattern, "/"), segs) {
				continue
			}
			ev, err := s.buildEvent(t, project, database, rel, ch, at)
			if err != nil {
				s.log.WithError(err).WithField("document", rel).Error("firestore-emulator: cannot build trigger event")
				continue
			}
			s.deliveries.Deliver(ev)
		}
	}
}

func (s *Server) buildEvent(t Trigger, project, database, rel string, ch change, at time.Time) (eventdelivery.Event, error) {
	data := &firestoredata.DocumentEventData{}
	var err error
	if data.Value, err = toEventDocument(ch.new); err != nil {
		return eventdelivery.Event{}, err
	}
	if data.OldValue, err = toEventDocument(ch.old); err != nil {
		return eventdelivery.Event{}, err
	}
	if ch.old != nil && ch.new != nil {
		var paths []string
		diffFields(nil, ch.old.Fields, ch.new.Fields, &paths)
		data.UpdateMask = &firestoredata.DocumentMask{FieldPaths: paths}
	}
	body, err := proto.Marshal(data)
	if err != nil {
		return eventdelivery.Event{}, fmt.Errorf("marshal DocumentEventData: %w", err)
	}
	return eventdelivery.Event{
		URL: t.URL,
		Headers: map[string]string{
			"ce-id":          uuid.NewString(),
			"ce-source":      "//firestore.googleapis.com/projects/" + project + "/databases/" + database,
			"ce-specversion": "1.0",
			"ce-type":        "google.cloud.firestore.document.v1." + string(t.Event),
			"ce-subject":     "documents/" + rel,
			"ce-time":        at.UTC().Format(time.RFC3339Nano),
			"ce-dataschema":  dataSchema,
			"ce-database":    database,
			"ce-namespace":   "(default)",
			"ce-document":    rel,
			"ce-location":    s.opts.Location,
			"ce-project":     project,
			"content-type":   "application/protobuf",
		},
		Body: body,
	}, nil
}

// toEventDocument converts between the wire-compatible Firestore API and
// Eventarc document messages.
func toEventDocument(d *pb.Document) (*firestoredata.Document, error) {
	if d == nil {
		return nil, nil
	}
	b, err := proto.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("marshal document: %w", err)
	}
	out := &firestoredata.Document{}
	if err := proto.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("convert document %s: %w", d.Name, err)
	}
	return out, nil
}

// diffFields lists the field paths whose values differ, descending into maps
// present on both sides, as Eventarc's update_mask does.
func diffFields(prefix []string, a, b map[string]*pb.Value, out *[]string) {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		av, aok := a[k]
		bv, bok := b[k]
		path := append(append([]string(nil), prefix...), k)
		if aok && bok {
			am, aIsMap := av.ValueType.(*pb.Value_MapValue)
			bm, bIsMap := bv.ValueType.(*pb.Value_MapValue)
			if aIsMap && bIsMap {
				diffFields(path, am.MapValue.GetFields(), bm.MapValue.GetFields(), out)
				continue
			}
			if proto.Equal(av, bv) {
				continue
			}
		}
		*out = append(*out, formatFieldPath(path))
	}
}
