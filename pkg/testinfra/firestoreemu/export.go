package firestoreemu

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// exportFile is the JSON layout of Export and Import: documents in the
// Firestore REST representation, grouped by database resource name.
type exportFile struct {
	Databases map[string][]json.RawMessage `json:"databases"`
}

// Export writes the current documents of every database as JSON.
func (s *Server) Export(w io.Writer) error {
	s.mu.Lock()
	dbs := make([]*database, 0, len(s.dbs))
	for _, db := range s.dbs {
		dbs = append(dbs, db)
	}
	s.mu.Unlock()
	out := exportFile{Databases: map[string][]json.RawMessage{}}
	for _, db := range dbs {
		db.mu.Lock()
		names := make([]string, 0, len(db.docs))
		for name, e := range db.docs {
			if e.current() != nil {
				names = append(names, name)
			}
		}
		sort.Slice(names, func(i, j int) bool { return compareNames(names[i], names[j]) < 0 })
		docs := make([]json.RawMessage, 0, len(names))
		for _, name := range names {
			b, err := protojson.Marshal(db.docs[name].current())
			if err != nil {
				db.mu.Unlock()
				return fmt.Errorf("export %s: %w", name, err)
			}
			docs = append(docs, b)
		}
		db.mu.Unlock()
		if len(docs) > 0 {
			out.Databases[db.name] = docs
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// Import loads documents written by Export, replacing documents of the same
// name and keeping their create and update times. It fires no triggers.
func (s *Server) Import(r io.Reader) error {
	var in exportFile
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return fmt.Errorf("import: decode: %w", err)
	}
	for dbName, docs := range in.Databases {
		db, err := s.database(dbName)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		parsed := make([]*pb.Document, 0, len(docs))
		for _, raw := range docs {
			d := &pb.Document{}
			if err := protojson.Unmarshal(raw, d); err != nil {
				return fmt.Errorf("import: document in %s: %w", dbName, err)
			}
			if err := checkDocName(db, d.Name); err != nil {
				return fmt.Errorf("import: %w", err)
			}
			if d.UpdateTime == nil {
				now := s.commitTime()
				d.UpdateTime, d.CreateTime = timestamppb.New(now), timestamppb.New(now)
			}
			if d.CreateTime == nil {
				d.CreateTime = d.UpdateTime
			}
			parsed = append(parsed, d)
		}
		db.mu.Lock()
		for _, d := range parsed {
			at := d.UpdateTime.AsTime()
			s.observeTime(at)
			if e := db.docs[d.Name]; e != nil {
				db.remove(e)
			}
			db.put(d.Name, d, at, s.opts.VersionRetention)
		}
		db.mu.Unlock()
	}
	return nil
}

// observeTime keeps commit timestamps after imported update times.
func (s *Server) observeTime(t time.Time) {
	s.mu.Lock()
	if t.After(s.last) {
		s.last = t
	}
	s.mu.Unlock()
}
