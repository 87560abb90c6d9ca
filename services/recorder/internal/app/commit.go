//lint:file-ignore SA1019 WriteBatch is the client's only atomic multi-document commit without a transaction: the recorder guards its commits with preconditions instead of read locks, which saves a BeginTransaction round trip per write and never holds a lock on the hot metrics document.

package app

import (
	"context"

	"cloud.google.com/go/firestore"
)

type opKind int

const (
	opCreate   opKind = iota // precondition: the document does not exist
	opUpdate                 // precondition: exists (and update_time when given)
	opSet                    // replace or create
	opSetMerge               // merge fields, create when missing
)

// op is one write of an atomic commit.
type op struct {
	kind opKind
	ref  *firestore.DocumentRef
	data map[string]any
	pre  []firestore.Precondition // opUpdate only
}

// commit writes ops in one Commit RPC: all or nothing.
func commit(ctx context.Context, c *firestore.Client, ops ...op) error {
	b := c.Batch()
	for _, o := range ops {
		switch o.kind {
		case opCreate:
			b.Create(o.ref, o.data)
		case opUpdate:
			b.Update(o.ref, updates(o.data), o.pre...)
		case opSet:
			b.Set(o.ref, o.data)
		case opSetMerge:
			b.Set(o.ref, o.data, firestore.MergeAll)
		}
	}
	_, err := b.Commit(ctx)
	return err
}
