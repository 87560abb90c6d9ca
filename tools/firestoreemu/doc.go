// Package firestoreemu is a Firestore emulator in pure Go: a gRPC server for
// google.firestore.v1.Firestore, used through the official
// cloud.google.com/go/firestore client (FIRESTORE_EMULATOR_HOST, or
// Server.ClientOptions), with Eventarc-shaped triggers.
//
// # Use
//
// In tests:
//
//	srv := firestoreemu.StartForTest(t)
//	t.Setenv("FIRESTORE_EMULATOR_HOST", srv.Addr())
//	client, err := firestore.NewClient(ctx, "any-project")
//
// or, without the environment variable (parallel tests):
//
//	client, err := firestore.NewClientWithDatabase(ctx, "p", "ancillary", srv.ClientOptions()...)
//
// As a program: go run ./tools/cmd/firestore-emulator --host-port 127.0.0.1:8080.
//
// # What is emulated
//
//   - Any project id; the (default) database and named databases, fully
//     separate, created on first use.
//   - Commit (atomic: all writes or none) and BatchWrite (independent
//     writes): set, merge with field masks, update, delete; preconditions
//     exists (ALREADY_EXISTS / NOT_FOUND) and update_time
//     (FAILED_PRECONDITION); every field transform (server timestamp,
//     increment with integer saturation, maximum, minimum, array union,
//     array remove) with transform results. Commit timestamps have
//     microsecond precision and strictly increase; a write that does not
//     change a document keeps its update time. Documents over 1 MiB are
//     rejected.
//   - GetDocument, BatchGetDocuments (missing documents reported),
//     ListDocuments (with show_missing), ListCollectionIds.
//   - Transactions: read-write transactions lock the documents they read
//     (as Firestore does for server client libraries), so concurrent
//     read-modify-write transactions run one after another; a deadlock or a
//     non-transactional write to something a transaction read answers
//     ABORTED at commit and the client library retries. Queries in a
//     transaction are re-checked at commit (phantoms abort). Read-only
//     transactions read a consistent snapshot; read_time reads work within
//     the version retention (default one hour). new_transaction in read
//     options is supported.
package firestoreemu
