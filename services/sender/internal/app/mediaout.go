package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/visn/wadispatch/pkg/expiring"
	"github.com/visn/wadispatch/pkg/retry"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Media out: an image, document, video or audio message whose media is a
// Cloud Storage object. Before the claim, the object's bucket must be one
// the sender may send from and its attributes (size, content type) must
// pass Meta's limits (whatsapp.CheckMedia); a refusal becomes a FAILED
// result without any call. After the claim the object is uploaded to
// WhatsApp's /media endpoint once per object generation and business
// number, and the media id is reused while it is younger than
// MediaIDReuse. The ids are kept in this process only (pkg/expiring): a
// restarted sender, or another replica, uploads again.

// Reasons of media refused before any call.
const (
	ReasonMediaBucketNotAllowed = "media_bucket_not_allowed"
	ReasonMediaTooLarge         = string(whatsapp.ReasonMediaTooLarge)
	ReasonMediaTypeUnsupported  = string(whatsapp.ReasonMediaTypeUnsupported)
	ReasonMediaNotFound         = string(whatsapp.ReasonMediaNotFound)
	// ReasonMediaUploadFailed: the object could not be read for the upload.
	ReasonMediaUploadFailed = "media_upload_failed"
)

// MediaIDReuse is how long an uploaded media id is reused: WhatsApp keeps
// uploaded media 30 days; a day is kept in hand.
const MediaIDReuse = 29 * 24 * time.Hour

// OutboundObject describes a Cloud Storage object to send.
type OutboundObject struct {
	ContentType string
	Size        int64
	Generation  int64
}

// OutboundObjects reads the objects media messages name (Cloud Storage).
type OutboundObjects interface {
	// Attrs describes an object; the error wraps ErrObjectNotFound when
	// there is none.
	Attrs(ctx context.Context, bucket, object string) (OutboundObject, error)
	// Open reads one generation of an object.
	Open(ctx context.Context, bucket, object string, generation int64) (io.ReadCloser, error)
}

// MediaUploader uploads media to WhatsApp; *whatsapp.Client satisfies it.
// Failures are *whatsapp.Error, except those of reading r.
type MediaUploader interface {
	UploadMedia(ctx context.Context, s whatsapp.Sender, mimeType, filename string, r io.Reader) (string, error)
}

// MediaOut sends Cloud Storage objects as WhatsApp media.
type MediaOut struct {
	buckets  map[string]bool
	objects  OutboundObjects
	uploader MediaUploader
	ids      *expiring.Cache[string]
}

// NewMediaOut sends media from the objects of buckets.
func NewMediaOut(buckets []string, objects OutboundObjects, uploader MediaUploader, now func() time.Time) *MediaOut {
	m := &MediaOut{buckets: map[string]bool{}, objects: objects, uploader: uploader, ids: expiring.New[string](now)}
	for _, b := range buckets {
		m.buckets[b] = true
	}
	return m
}

// SetMediaOut lets p send media from Cloud Storage; without it every
// media object is refused media_bucket_not_allowed.
func (p *Processor) SetMediaOut(m *MediaOut) { p.media = m }

// outboundMedia is a task's object, checked and ready to upload.
type outboundMedia struct {
	bucket, object string
	mimeType       string
	attrs          OutboundObject
}

// mediaRefusal decides, without reading anything, whether a media task's
// object may be sent at all. Nil when it may (or the task has no object).
func mediaRefusal(allowed map[string]bool, task *wadispatchv1.SendTask) (bucket, object string, refusal *wadispatchv1.WhatsAppError) {
	uri := task.GetMedia().GetUri()
	if sendtask.MediaType(task.GetType()) == "" || uri == "" {
		return "", "", nil
	}
	bucket, object, err := sendtask.ParseGCSURI(uri)
	if err != nil {
		return "", "", &wadispatchv1.WhatsAppError{Reason: string(whatsapp.ReasonInvalidMessage), Message: err.Error()}
	}
	if !allowed[bucket] {
		return "", "", &wadispatchv1.WhatsAppError{Reason: ReasonMediaBucketNotAllowed, Message: fmt.Sprintf("the sender sends no media from bucket %q", bucket)}
	}
	return bucket, object, nil
}

// checkObject applies Meta's limits to an object: the task's MIME type
// when it names one, the object's content type otherwise.
func checkObject(kind whatsapp.MessageType, taskMIME string, o OutboundObject) (string, *wadispatchv1.WhatsAppError) {
	mt := taskMIME
	if mt == "" {
		mt = o.ContentType
	}
	if err := whatsapp.CheckMedia(kind, mt, o.Size); err != nil {
		var r *whatsapp.MediaRefusal
		if errors.As(err, &r) {
			return "", &wadispatchv1.WhatsAppError{Reason: string(r.Reason), Message: r.Detail}
		}
		return "", &wadispatchv1.WhatsAppError{Reason: ReasonMediaTypeUnsupported, Message: err.Error()}
	}
	return mt, nil
}

// prepareMedia checks a media task's object before the claim. A refusal
// is permanent; an error is Cloud Storage failing, transient.
func (p *Processor) prepareMedia(ctx context.Context, task *wadispatchv1.SendTask) (*outboundMedia, *wadispatchv1.WhatsAppError, error) {
	var allowed map[string]bool
	if p.media != nil {
		allowed = p.media.buckets
	}
	bucket, object, refusal := mediaRefusal(allowed, task)
	if refusal != nil || bucket == "" {
		return nil, refusal, nil
	}
	attrs, err := p.media.objects.Attrs(ctx, bucket, object)
	if errors.Is(err, ErrObjectNotFound) {
		return nil, &wadispatchv1.WhatsAppError{Reason: ReasonMediaNotFound, Message: fmt.Sprintf("no object %s in bucket %q", strconv.Quote(object), bucket)}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("media object: %w", err)
	}
	mt, refusal := checkObject(sendtask.MediaType(task.GetType()), task.GetMedia().GetMimeType(), attrs)
	if refusal != nil {
		return nil, refusal, nil
	}
	return &outboundMedia{bucket: bucket, object: object, mimeType: mt, attrs: attrs}, nil, nil
}

// mediaKey names an upload: one object generation for one business number.
func mediaKey(m *outboundMedia, phoneNumberID string) string {
	return m.bucket + "/" + m.object + "#" + strconv.FormatInt(m.attrs.Generation, 10) + "@" + phoneNumberID
}

// uploadMedia returns the media id of m for s, uploading it unless an id
// younger than MediaIDReuse is known. Retryable failures are tried again
// up to MaxAttempts; the error is the last *whatsapp.Error, or a failure
// to read the object.
func (p *Processor) uploadMedia(ctx context.Context, s whatsapp.Sender, m *outboundMedia, filename string) (string, error) {
	return p.media.ids.Get(ctx, mediaKey(m, s.PhoneNumberID), func(ctx context.Context, _ string) (string, time.Duration, error) {
		bo := retry.Backoff(p.cfg.InitialBackoff, p.cfg.MaxBackoff)
		for attempt := 1; ; attempt++ {
			id, err := p.uploadOnce(ctx, s, m, filename)
			if err == nil {
				return id, MediaIDReuse, nil
			}
			var werr *whatsapp.Error
			if !errors.As(err, &werr) || !werr.Retryable() || attempt >= p.cfg.MaxAttempts {
				return "", 0, err
			}
			if p.clock.Sleep(ctx, max(bo.NextBackOff(), werr.RetryAfter())) != nil {
				return "", 0, err
			}
		}
	})
}

// attachMedia uploads (or reuses) m and sets the message's media id; the
// error is what the FAILED result says when it cannot.
func (p *Processor) attachMedia(ctx context.Context, s whatsapp.Sender, msg whatsapp.Message, m *outboundMedia) *wadispatchv1.WhatsAppError {
	id, err := p.uploadMedia(ctx, s, m, msg.Media.Filename)
	if err != nil {
		if werr, ok := errors.AsType[*whatsapp.Error](err); ok {
			return whatsAppError(werr)
		}
		return &wadispatchv1.WhatsAppError{Reason: ReasonMediaUploadFailed, Message: err.Error()}
	}
	msg.Media.ID = id
	return nil
}

func (p *Processor) uploadOnce(ctx context.Context, s whatsapp.Sender, m *outboundMedia, filename string) (string, error) {
	r, err := p.media.objects.Open(ctx, m.bucket, m.object, m.attrs.Generation)
	if err != nil {
		return "", fmt.Errorf("read media object: %w", err)
	}
	defer r.Close()
	id, err := p.media.uploader.UploadMedia(ctx, s, m.mimeType, filename, r)
	if err != nil {
		return "", fmt.Errorf("upload media: %w", err)
	}
	return id, nil
}
