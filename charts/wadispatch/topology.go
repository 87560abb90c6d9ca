// Package wadispatch gives Go code the files of the Helm chart that are also
// the source of truth for local runs, so the two cannot drift.
package wadispatch

import _ "embed"

// Topology is topology.yaml: the Pub/Sub topics and subscriptions.
//
//go:embed topology.yaml
var Topology []byte

// FirestoreIndexes is firestore.indexes.json: the composite indexes the
// recorder's queries and ingest's reconciler need in the messages database.
//
//go:embed firestore.indexes.json
var FirestoreIndexes []byte
