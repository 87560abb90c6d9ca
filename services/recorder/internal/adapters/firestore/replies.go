package firestore

import (
	"context"
	"path"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

// Fields of a driver's reply document that the web app reads.
const (
	fMessage  = "message"
	fMedia    = "media"
	fReaction = "driverReaction"
	fEditedAt = "editedAt"
	fRevoked  = "revokedAt"

	mediaPending = "pending"
	mediaStored  = "stored"
	mediaFailed  = "failed"
)

// IndexedReply implements app.Replies.
func (s *Store) IndexedReply(ctx context.Context, wamid string) (app.IndexedMessage, bool, error) {
	return s.indexEntry(ctx, dispatch.InboundIndexPath(wamid), "read inbound index")
}

// CreateReply implements app.Replies: the document and, for a reply in an
// enquiry, its inbound index entry in one batch, which fails whole when
// the document exists (a redelivery).
func (s *Store) CreateReply(ctx context.Context, r app.Reply) (bool, error) {
	// A transaction of writes only: both land or neither.
	err := s.db.RunTransaction(ctx, func(_ context.Context, tx *firestore.Transaction) error {
		if err := tx.Create(s.db.Doc(r.Path), replyFields(r)); err != nil {
			return err
		}
		if r.UnmatchedReason != "" {
			return nil
		}
		return tx.Set(s.db.Doc(dispatch.InboundIndexPath(r.In.GetWhatsappMessageId())), map[string]any{
			"messagePath": r.Path, "driverMobileNumber": r.In.GetFrom(), "indexedAt": firestore.ServerTimestamp,
		})
	})
	switch {
	case err == nil:
		return true, nil
	case status.Code(err) == codes.AlreadyExists:
		return false, nil
	}
	return false, unavailable("create driver reply", err)
}

// replyFields is a driver's part as a chatMessages document (ingest skips
// it by its source), or as kept unmatched: its real type, the text the web
// app shows, and what WhatsApp sent under whatsapp, the reply tapped, the
// message quoted and the media.
func replyFields(r app.Reply) map[string]any {
	in := r.In
	m := map[string]any{
		"source":             "driver",
		fMessage:             in.GetText(),
		"type":               in.GetType(),
		"driverMobileNumber": in.GetFrom(),
		"whatsappMessageId":  in.GetWhatsappMessageId(),
		"whatsappType":       in.GetType(),
		"phoneNumberId":      in.GetPhoneNumberId(),
		"leaseIds":           in.GetLeaseIds(),
		"createdAt":          r.At,
		"receivedAt":         firestore.ServerTimestamp,
	}
	if c := in.GetContent(); c != nil {
		m["whatsapp"] = c.AsMap()
	}
	if ref := in.GetReferral(); ref != nil {
		m["referral"] = ref.AsMap()
	}
	if rp := in.GetReply(); rp != nil {
		m["reply"] = map[string]any{"id": rp.GetId(), "title": rp.GetTitle(), "description": rp.GetDescription()}
	}
	if c := in.GetContextMessageId(); c != "" {
		m["contextWhatsappMessageId"] = c
		quoted := map[string]any{"whatsappMessageId": c}
		if r.ContextPath != "" {
			quoted["messagePath"] = r.ContextPath
		}
		m["context"] = quoted
	}
	if md := in.GetMedia(); md != nil {
		media := map[string]any{
			"whatsappMediaId": md.GetId(), "mimeType": md.GetMimeType(), "webhookSha256": md.GetSha256(),
			"caption": md.GetCaption(), "filename": md.GetFilename(), "voice": md.GetVoice(), "status": mediaPending,
		}
		m[fMedia] = media
	}
	if t := in.GetTargetMessageId(); t != "" {
		m["targetWhatsappMessageId"] = t
	}
	if r.UnmatchedReason != "" {
		m["unmatchedReason"] = r.UnmatchedReason
	}
	return m
}

// ApplyChange implements app.Replies in one transaction on the document: a
// change older than the one it holds of its kind is not applied, and a
// revoked message takes no edit.
func (s *Store) ApplyChange(ctx context.Context, path string, c app.Change) (bool, error) {
	doc := s.db.Doc(path)
	applied := false
	err := s.db.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		applied = false
		snap, err := tx.Get(doc)
		if status.Code(err) == codes.NotFound {
			return nil // deleted by the web app: nothing to change
		}
		if err != nil {
			return err
		}
		var updates []firestore.Update
		switch c.Kind {
		case "reaction":
			if !later(snap, []string{fReaction, "reactedAt"}, c.At) {
				return nil
			}
			updates = []firestore.Update{{Path: fReaction, Value: map[string]any{"emoji": c.Emoji, "reactedAt": c.At, "whatsappMessageId": c.Wamid}}}
		case "edit":
			if !later(snap, []string{fEditedAt}, c.At) || snap.Data()[fRevoked] != nil {
				return nil
			}
			updates = []firestore.Update{{Path: fMessage, Value: c.Text}, {Path: fEditedAt, Value: c.At}, {Path: "editWhatsappMessageId", Value: c.Wamid}}
		case "revoke":
			if snap.Data()[fRevoked] != nil {
				return nil
			}
			// Deleted for everyone: what it said goes too.
			updates = []firestore.Update{{Path: fMessage, Value: ""}, {Path: "whatsapp", Value: firestore.Delete}, {Path: fRevoked, Value: c.At}, {Path: "revokeWhatsappMessageId", Value: c.Wamid}}
		}
		applied = true
		return tx.Update(doc, updates)
	})
	if err != nil {
		return false, unavailable("apply "+c.Kind, err)
	}
	return applied, nil
}

// RecordMedia implements app.Replies in one transaction on the reply.
func (s *Store) RecordMedia(ctx context.Context, path string, m *wadispatchv1.MediaStored) (written, found bool, err error) {
	doc := s.db.Doc(path)
	err = s.db.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		written, found = false, false
		snap, err := tx.Get(doc)
		if status.Code(err) == codes.NotFound {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		media, _ := snap.Data()[fMedia].(map[string]any)
		if media == nil || media["status"] == mediaStored {
			return nil
		}
		written = true
		at := time.Now()
		if t := m.GetStoredAt(); t.IsValid() {
			at = t.AsTime()
		}
		if m.GetUri() != "" {
			return tx.Update(doc, []firestore.Update{
				{FieldPath: []string{fMedia, "status"}, Value: mediaStored},
				{FieldPath: []string{fMedia, "uri"}, Value: m.GetUri()},
				{FieldPath: []string{fMedia, "mimeType"}, Value: m.GetMimeType()},
				{FieldPath: []string{fMedia, "size"}, Value: m.GetSize()},
				{FieldPath: []string{fMedia, "sha256"}, Value: m.GetSha256()},
				{FieldPath: []string{fMedia, "storedAt"}, Value: at},
			})
		}
		return tx.Update(doc, []firestore.Update{
			{FieldPath: []string{fMedia, "status"}, Value: mediaFailed},
			{FieldPath: []string{fMedia, "failureReason"}, Value: m.GetFailureReason()},
			{FieldPath: []string{fMedia, "failureDetail"}, Value: m.GetFailureDetail()},
			{FieldPath: []string{fMedia, "failedAt"}, Value: at},
		})
	})
	if err != nil {
		return false, false, unavailable("record media", err)
	}
	return written, found, nil
}

// Unmatched implements app.Replies, in createdAt order, latest first, and
// by path among equal times: served by the collection's automatic
// single-field index.
func (s *Store) Unmatched(ctx context.Context, leaseID string, after *app.Cursor, limit int) ([]*wadispatchv1.UnmatchedReply, *app.Cursor, error) {
	coll := path.Dir(dispatch.UnmatchedReplyPath(leaseID, "x"))
	q := s.db.Collection(coll).OrderBy("createdAt", firestore.Desc).OrderBy(firestore.DocumentID, firestore.Desc)
	if after != nil {
		q = q.StartAfter(after.At, s.db.Doc(after.MessagePath))
	}
	snaps, err := q.Limit(limit + 1).Documents(ctx).GetAll()
	if err != nil {
		return nil, nil, unavailable("list unmatched replies", err)
	}
	var out []*wadispatchv1.UnmatchedReply
	var next *app.Cursor
	for i, snap := range snaps {
		d := snap.Data()
		at, _ := d["createdAt"].(time.Time)
		if i == limit {
			last := snaps[i-1]
			lastAt, _ := last.Data()["createdAt"].(time.Time)
			next = &app.Cursor{At: lastAt, MessagePath: coll + "/" + last.Ref.ID}
			break
		}
		str := func(k string) string { v, _ := d[k].(string); return v }
		out = append(out, &wadispatchv1.UnmatchedReply{
			Path: coll + "/" + snap.Ref.ID, WhatsappMessageId: str("whatsappMessageId"), DriverMobileNumber: str("driverMobileNumber"),
			Type: str("type"), Message: str(fMessage), Reason: str("unmatchedReason"),
			TargetWhatsappMessageId: str("targetWhatsappMessageId"), CreatedAt: timestamppb.New(at),
		})
	}
	return out, next, nil
}
