package firestoreemu

import (
	"fmt"
	"strings"
	"sync"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// docVersion is one state of a document; doc is nil when the version is a
// deletion. Versions are kept for the retention window to answer read_time
// reads and read-only transactions.
type docVersion struct {
	doc *pb.Document
	at  time.Time
}

type docEntry struct {
	name     string
	versions []docVersion
}

func (e *docEntry) current() *pb.Document {
	return e.versions[len(e.versions)-1].doc
}

// at returns the document as of t (zero t means now).
func (e *docEntry) at(t time.Time) *pb.Document {
	if t.IsZero() {
		return e.current()
	}
	for i := len(e.versions) - 1; i >= 0; i-- {
		if !e.versions[i].at.After(t) {
			return e.versions[i].doc
		}
	}
	return nil
}

// prune drops the versions that no read within the retention window can
// see: all but the newest one at or before cutoff.
func (e *docEntry) prune(cutoff time.Time) {
	drop := 0
	for drop+1 < len(e.versions) && !e.versions[drop+1].at.After(cutoff) {
		drop++
	}
	if drop > 0 {
		e.versions = append(e.versions[:0:0], e.versions[drop:]...)
	}
}

// database holds the documents of one Firestore database. Everything in it is
// guarded by mu; commits are serialized per database, which is what makes a
// commit atomic for readers.
type database struct {
	name string // projects/{p}/databases/{d}
	root string // name + "/documents"

	mu      sync.Mutex
	docs    map[string]*docEntry
	colls   map[string]map[string]*docEntry // collection path -> its documents
	collIDs map[string]map[string]*docEntry // collection id -> documents in any collection of that id
	locks   map[string]*docLock
	txns    map[string]*txn
	targets map[*listenTarget]struct{}
	commits int // drives the periodic sweep of expired versions
}

func newDatabase(name string) *database {
	return &database{
		name:    name,
		root:    name + "/documents",
		docs:    map[string]*docEntry{},
		colls:   map[string]map[string]*docEntry{},
		collIDs: map[string]map[string]*docEntry{},
		locks:   map[string]*docLock{},
		txns:    map[string]*txn{},
		targets: map[*listenTarget]struct{}{},
	}
}

// clear drops all documents; open transactions are aborted so that none of
// them can resurrect cleared data by committing.
func (db *database) clear() {
	for _, t := range db.txns {
		db.abortTxn(t)
	}
	db.docs = map[string]*docEntry{}
	db.colls = map[string]map[string]*docEntry{}
	db.collIDs = map[string]map[string]*docEntry{}
}

func (db *database) get(name string, at time.Time) *pb.Document {
	e := db.docs[name]
	if e == nil {
		return nil
	}
	return e.at(at)
}

// put records a new version of a document (doc nil = deleted) and prunes
// versions older than the retention window.
func (db *database) put(name string, doc *pb.Document, at time.Time, retention time.Duration) {
	e := db.docs[name]
	if e == nil {
		if doc == nil {
			return
		}
		e = &docEntry{name: name}
		db.docs[name] = e
		coll, id := collectionOf(name)
		if db.colls[coll] == nil {
			db.colls[coll] = map[string]*docEntry{}
		}
		db.colls[coll][name] = e
		if db.collIDs[id] == nil {
			db.collIDs[id] = map[string]*docEntry{}
		}
		db.collIDs[id][name] = e
	}
	e.versions = append(e.versions, docVersion{doc: doc, at: at})
	cutoff := at.Add(-retention)
	e.prune(cutoff)
	db.commits++
	if db.commits%sweepEvery == 0 {
		db.sweep(cutoff)
	}
}

// sweepEvery is how many writes pass between sweeps; a sweep walks every
// document, so this keeps its cost per write small.
const sweepEvery = 4096

// sweep drops versions older than cutoff and forgets documents deleted
// before it, so deleted documents do not slow queries forever.
func (db *database) sweep(cutoff time.Time) {
	for _, e := range db.docs {
		e.prune(cutoff)
		if len(e.versions) == 1 && e.versions[0].doc == nil && !e.versions[0].at.After(cutoff) {
			db.remove(e)
		}
	}
}

func (db *database) remove(e *docEntry) {
	delete(db.docs, e.name)
	coll, id := collectionOf(e.name)
	delete(db.colls[coll], e.name)
	if len(db.colls[coll]) == 0 {
		delete(db.colls, coll)
	}
	delete(db.collIDs[id], e.name)
	if len(db.collIDs[id]) == 0 {
		delete(db.collIDs, id)
	}
}

// collectionOf returns the collection path and the collection id of a
// document name.
func collectionOf(name string) (coll, id string) {
	coll = name[:strings.LastIndexByte(name, '/')]
	return coll, coll[strings.LastIndexByte(coll, '/')+1:]
}

// databaseOf returns "projects/{p}/databases/{d}" of a resource name.
func databaseOf(name string) (string, error) {
	parts := strings.SplitN(name, "/", 5)
	if len(parts) < 4 || parts[0] != "projects" || parts[2] != "databases" || parts[1] == "" || parts[3] == "" {
		return "", status.Errorf(codes.InvalidArgument, "invalid resource name %q", name)
	}
	return strings.Join(parts[:4], "/"), nil
}

// checkDocName validates a document name of database db.
func checkDocName(db *database, name string) error {
	rel, ok := strings.CutPrefix(name, db.root+"/")
	if !ok {
		return status.Errorf(codes.InvalidArgument, "document name %q is not in database %q", name, db.name)
	}
	segs := strings.Split(rel, "/")
	if len(segs)%2 != 0 {
		return status.Errorf(codes.InvalidArgument, "%q is not a document name (odd number of path segments)", name)
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || (strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__")) {
			return status.Errorf(codes.InvalidArgument, "invalid path segment %q in document name %q", s, name)
		}
	}
	return nil
}

// checkParent validates a parent (the database root or a document name).
func checkParent(db *database, parent string) error {
	if parent == db.root {
		return nil
	}
	if err := checkDocName(db, parent); err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	return nil
}
