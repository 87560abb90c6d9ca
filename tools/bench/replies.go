package bench

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/pkg/dispatch"
)

// Reply is a driver's message a workload sent to the business number.
type Reply struct {
	Wamid, Driver, Text string
	// Enquiry is the driver's enquiry: where the reply belongs once a
	// message to the driver there is recorded.
	Enquiry dispatch.MessageRef
	// UnmatchedLease is the lease that keeps it when no enquiry takes it
	// yet: the first of the leases of the number.
	UnmatchedLease string
	// Media is what a photo reply sent (Text is its caption); nil for text.
	Media *SentMedia
}

// SentMedia is the file a driver's media reply carried.
type SentMedia struct {
	// SHA256 is hex.
	SHA256 string
	Size   int64
}

// Paths are the two places the reply may be stored; it must be in exactly
// one.
func (r Reply) Paths() [2]string {
	id := dispatch.DriverReplyDocID(r.Wamid)
	in := r.Enquiry
	in.MessageID = id
	return [2]string{in.Path(), dispatch.UnmatchedReplyPath(r.UnmatchedLease, id)}
}

// AuditReplies waits until every reply is stored (within the wait), a
// media reply's file too, and checks each was stored once, in one place,
// with its text, a media reply with its file's size and sha256: none lost,
// none doubled. It returns the violations, one line each.
func AuditReplies(ctx context.Context, fs *firestore.Client, replies []Reply, wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		var refs []*firestore.DocumentRef
		for _, r := range replies {
			for _, p := range r.Paths() {
				refs = append(refs, fs.Doc(p))
			}
		}
		snaps, err := fs.GetAll(ctx, refs)
		if err != nil {
			return nil, fmt.Errorf("read replies: %w", err)
		}
		var violations []string
		missing := 0 // stored nowhere yet, or its media still pending
		for i, r := range replies {
			in, kept := snaps[2*i], snaps[2*i+1]
			switch {
			case in.Exists() && kept.Exists():
				violations = append(violations, fmt.Sprintf("reply %s stored twice: in its enquiry and kept unmatched", r.Wamid))
			case !in.Exists() && !kept.Exists():
				missing++
				violations = append(violations, fmt.Sprintf("reply %s lost: in neither its enquiry nor the unmatched replies", r.Wamid))
			default:
				d := in
				if !in.Exists() {
					d = kept
				}
				if got, _ := d.Data()["message"].(string); got != r.Text {
					violations = append(violations, fmt.Sprintf("reply %s stored with text %q, sent %q", r.Wamid, got, r.Text))
				}
				if r.Media == nil {
					break
				}
				m, _ := d.Data()["media"].(map[string]any)
				switch size, _ := m["size"].(int64); {
				case m["status"] == "pending":
					missing++
					violations = append(violations, fmt.Sprintf("reply %s: its media never stored (still pending)", r.Wamid))
				case m["status"] != "stored":
					violations = append(violations, fmt.Sprintf("reply %s: media %v (%v), want stored", r.Wamid, m["status"], m["failureReason"]))
				case m["sha256"] != r.Media.SHA256 || size != r.Media.Size:
					violations = append(violations, fmt.Sprintf("reply %s: media stored as %v bytes, sha256 %v; sent %d bytes, sha256 %s", r.Wamid, m["size"], m["sha256"], r.Media.Size, r.Media.SHA256))
				}
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return violations, nil
		}
		select {
		case <-ctx.Done():
			return violations, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}
