package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/visn/wadispatch/services/sender/internal/app"
)

// Storage is the media bucket in Cloud Storage, the fetch's app.MediaStore.
// The official client reaches the local emulator through
// STORAGE_EMULATOR_HOST.
type Storage struct {
	bucket *storage.BucketHandle
	name   string
}

// NewStorage stores in bucket through client.
func NewStorage(client *storage.Client, bucket string) *Storage {
	return &Storage{bucket: client.Bucket(bucket), name: bucket}
}

// URI implements app.MediaStore.
func (s *Storage) URI(name string) string { return "gs://" + s.name + "/" + name }

// Stat implements app.MediaStore.
func (s *Storage) Stat(ctx context.Context, name string) (app.StoredObject, error) {
	attrs, err := s.bucket.Object(name).Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return app.StoredObject{}, fmt.Errorf("%s: %w", s.URI(name), app.ErrObjectNotFound)
	}
	if err != nil {
		return app.StoredObject{}, fmt.Errorf("stat %s: %w", s.URI(name), err)
	}
	return app.StoredObject{ContentType: attrs.ContentType, Size: attrs.Size, SHA256: attrs.Metadata[app.MetadataSHA256], Metadata: attrs.Metadata}, nil
}

// Create implements app.MediaStore: an upload with the precondition that
// no object of the name exists (ifGenerationMatch=0), which also makes the
// client's own retries of it safe.
func (s *Storage) Create(ctx context.Context, name string, o app.StoredObject) app.ObjectWriter {
	ctx, cancel := context.WithCancel(ctx)
	w := s.bucket.Object(name).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ContentType = o.ContentType
	w.Metadata = maps.Clone(o.Metadata)
	if o.SHA256 != "" {
		if w.Metadata == nil {
			w.Metadata = map[string]string{}
		}
		w.Metadata[app.MetadataSHA256] = o.SHA256
	}
	return &objectWriter{w: w, cancel: cancel, uri: s.URI(name)}
}

type objectWriter struct {
	w      *storage.Writer
	cancel context.CancelFunc
	uri    string
}

func (o *objectWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// Commit finishes the upload; nothing exists before.
func (o *objectWriter) Commit() error {
	defer o.cancel()
	err := o.w.Close()
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed {
		return fmt.Errorf("%s: %w", o.uri, app.ErrObjectExists)
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", o.uri, err)
	}
	return nil
}

// Abort ends the upload's context before Close, so the object is never
// made.
func (o *objectWriter) Abort() {
	o.cancel()
	_ = o.w.Close()
}

// OutboundStorage reads the objects media messages name, in any bucket the
// sender was granted: app.OutboundObjects.
type OutboundStorage struct {
	client *storage.Client
}

// NewOutboundStorage reads through client.
func NewOutboundStorage(client *storage.Client) *OutboundStorage {
	return &OutboundStorage{client: client}
}

// Attrs implements app.OutboundObjects.
func (s *OutboundStorage) Attrs(ctx context.Context, bucket, object string) (app.OutboundObject, error) {
	attrs, err := s.client.Bucket(bucket).Object(object).Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return app.OutboundObject{}, fmt.Errorf("gs://%s/%s: %w", bucket, object, app.ErrObjectNotFound)
	}
	if err != nil {
		return app.OutboundObject{}, fmt.Errorf("stat gs://%s/%s: %w", bucket, object, err)
	}
	return app.OutboundObject{ContentType: attrs.ContentType, Size: attrs.Size, Generation: attrs.Generation}, nil
}

// Open implements app.OutboundObjects: that generation, so the bytes sent
// are those Attrs described.
func (s *OutboundStorage) Open(ctx context.Context, bucket, object string, generation int64) (io.ReadCloser, error) {
	r, err := s.client.Bucket(bucket).Object(object).Generation(generation).NewReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("read gs://%s/%s: %w", bucket, object, err)
	}
	return r, nil
}
