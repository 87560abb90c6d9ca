// Package firestoreemu is a Firestore emulator in pure Go: a gRPC server for
// google.firestore.v1.Firestore, driven through the official
// cloud.google.com/go/firestore client, with Eventarc-shaped triggers. It
// stands in for Firestore in wadispatch's tests and local stack because
// Google's emulator (a Java download of the gcloud SDK) cannot be installed
// from the registries the project builds with.
//
// # Use
//
// In tests:
//
//	srv := firestoreemu.StartForTest(t) // closed when the test ends
//	t.Setenv("FIRESTORE_EMULATOR_HOST", srv.Addr())
//	client, err := firestore.NewClient(ctx, "any-project")
//
// or, without the environment variable (parallel tests):
//
//	client, err := firestore.NewClientWithDatabase(ctx, "p", "ancillary", srv.ClientOptions()...)
//
// As a program (tools/cmd/firestore-emulator):
//
//	firestore-emulator --host-port 127.0.0.1:8080 \
//	  --trigger 'created:leasecompany/{leaseId}/enquiries/{enquiryId}/whatsapp/messages/chatMessages/{messageId}=http://127.0.0.1:8081/' \
//	  --import seed.json --export-on-exit seed.json \
//	  --indexes charts/wadispatch/firestore.indexes.json
//
// It prints "firestore-emulator ready on HOST:PORT" and
// "export FIRESTORE_EMULATOR_HOST=HOST:PORT", and exits on SIGTERM/SIGINT.
//
// # Indexes
//
// Firestore refuses a query that no index serves (FAILED_PRECONDITION, "The
// query requires an index"); Google's emulator runs it anyway. Options.Indexes
// (--indexes [DATABASE=]FILE, IndexesForTest) gives databases the composite
// indexes of a firestore.indexes.json file, and their queries are then
// checked. Firestore's automatic single-field indexes serve a collection
// query without ordering, or ordered by one field without equality or
// array-contains filters, and a collection-group query with neither
// filters nor ordering (filters and ordering on __name__ aside). Any other
// query needs a declared index of its collection group and scope with its
// equality and array-contains fields first, in any order, then exactly its
// ordering (order by, then inequality fields), in its directions or all
// reversed; filters under OR count as under AND. Databases without a
// configuration are not checked. Single-field index settings
// (fieldOverrides) are not read, so a collection-group query that needs one
// is refused.
//
// # Writes to one document
//
// Firestore sustains about one write per second to one document ("Cloud
// Firestore has a limit of one sustained write per second, per document",
// Firebase's distributed counters page; "Maximum sustained write rate to a
// document: 1 per second" in its limits); writes beyond it contend, and
// Google's guide to latency ("Resolve latency issues") lists "updating a
// single document too frequently" as a cause of latency for reads and
// writes. Google's emulator does not model it, so a design that writes
// one document per message looks as fast as one that does not.
// Options.DocumentWriteRate (--document-write-rate, writes per second per
// document; 0, the default, is unlimited) and DocumentWriteBurst
// (--document-write-burst, default 1) model it: a token bucket per
// document, and a commit (or BatchWrite) waits until every document it
// writes has a token, so it is as slow as its hottest document. Tokens are
// taken in arrival order when the request comes. A transaction's commit
// waits holding its locks, so transactions on the document queue behind
// it. The model only delays: Firestore may instead answer ABORTED ("too
// much contention") or DEADLINE_EXCEEDED to a write queued too long, which
// client libraries retry; a delay is the same cost without the retries'
// randomness, so benchmarks compare designs, not luck. Tests scale the
// rate up with the load (20/s against a burst of a few hundred messages
// per second shows in seconds what 1/s does in minutes).
//
// # Triggers
//
// A trigger has an event kind (created, updated, deleted or written), a
// document path pattern relative to the database root (literal segments,
// {var} or * for one segment, {var=**} or ** for any number), a database
// (default "(default)") and a URL. The --trigger flag syntax is
// KIND[@DATABASE]:PATTERN=URL, e.g.
// "written@ancillary:users/{uid}=http://127.0.0.1:9000/". After each commit,
// every matching document change is POSTed asynchronously (never delaying
// the commit) as Eventarc does: a CloudEvent in binary content mode with
// ce-id, ce-source (//firestore.googleapis.com/projects/P/databases/D),
// ce-specversion 1.0, ce-type google.cloud.firestore.document.v1.KIND,
// ce-subject documents/PATH, ce-time (commit time), ce-dataschema and the
// extensions ce-database, ce-namespace, ce-document, ce-location,
// ce-project; the body is a protobuf
// google.events.cloud.firestore.v1.DocumentEventData (value, old_value,
// update_mask), content-type application/protobuf. A connection failure or
// non-2xx answer is retried with exponential backoff (DeliveryPolicy:
// default 10 attempts from 100ms doubling up to 10s), then logged and
// dropped. Deliveries are at least once and unordered, as with Eventarc.
// For tests of what must cope with lost events, DropDeliveries(true) (or
// HTTP POST /emulator/v1/triggers:dropDeliveries, undone by
// .../triggers:resumeDeliveries) drops the events of the commits that
// follow: each is logged and never delivered. Eventarc has no such switch.
//
// # What is emulated
//
//   - Any project id; the (default) database and named databases, fully
//     separate, created on first use.
//   - Commit (atomic: all writes or none) and BatchWrite (independent
//     writes, one status each): set, merge with field masks, update,
//     delete; preconditions exists (ALREADY_EXISTS, NOT_FOUND) and
//     update_time (FAILED_PRECONDITION); every field transform (server
//     timestamp, increment with int/double semantics and integer
//     saturation, maximum, minimum, array union, array remove) with
//     transform results. Commit times have microsecond precision and
//     strictly increase; a write that leaves a document unchanged keeps its
//     update time and fires no trigger. Documents over 1 MiB are rejected.
//   - GetDocument, BatchGetDocuments (missing documents reported),
//     ListDocuments (name order, paging, show_missing), ListCollectionIds,
//     UpdateDocument, DeleteDocument.
//   - RunQuery: field, composite AND/OR and unary filters; ==, !=, <, <=, >,
//     >=, in, not-in, array-contains, array-contains-any, with the matching
//     rules of the Firebase SDKs' local query engine (a missing field never
//     matches; range filters only match values of the operand's type, NaN
//     counting as the smallest number; != and not-in match any other value,
//     null included; not-in with null in its list matches nothing); order by
//     with the implicit ordering by inequality fields and __name__; limit, offset, start/end cursors; collection
//     group queries; projections. Values order across types as Firestore
//     documents: null < booleans < NaN < numbers (integers and doubles
//     mixed) < timestamps < strings < bytes < references < geo points <
//     arrays < maps.
//   - RunAggregationQuery: count (with up_to), sum (integer while exact,
//     else double), avg (null without numeric values).
//   - Transactions: read-write transactions lock the documents they read,
//     as Firestore does for server client libraries, so concurrent
//     read-modify-write transactions run one after another instead of
//     failing. A deadlock, or a non-transactional write to something a
//     transaction read, answers ABORTED (at the read or the commit) and the
//     client library retries. Queries in a transaction are re-run at
//     commit, so phantoms abort too. A transaction idle for longer than
//     TransactionIdleTimeout (60s) loses its locks to a waiting one.
//     Read-only transactions read a consistent snapshot; read_time reads
//     work within VersionRetention (one hour by default). new_transaction
//     in read options is supported.
//   - Listen: document and query targets (collection groups, limits,
//     cursors) with added, modified and removed documents, CURRENT and
//     global NO_CHANGE with read times, so DocumentRef.Snapshots and
//     Query.Snapshots work. A resumed target is answered with RESET and the
//     full current state.
//   - Admin: HTTP DELETE /emulator/v1/projects/P/databases/D/documents
//     clears a database, on the same port as gRPC (connections starting
//     with the HTTP/2 preface go to the gRPC server, others to HTTP).
//     Export and Import (--import, --export-on-exit) save and load every
//     database's documents as JSON.
//
// # What is not emulated
//
// Security rules and authentication (every request is accepted), index
// management (indexes are declared up front and never built), index
// merging (a checked query must be served by one declared index), quotas,
// limits other than the document size and, when asked, the rate of
// writes to one document (writes per commit, request sizes), the REST/JSON
// API, the deprecated streaming Write RPC, PartitionQuery, pipelines (ExecutePipeline), vector
// search (find_nearest), explain options, bundles, TTL policies,
// point-in-time recovery beyond the retention window, and the
// withAuthContext event types. Listen does not send existence filters and
// answers a resume with a full reset rather than a delta. Queries scan their
// collection (indexes only decide whether they may run), which is fast
// enough for tests: a few milliseconds over 10,000 documents.
package firestoreemu
