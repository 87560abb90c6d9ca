package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/retry"
	"github.com/visn/wadispatch/pkg/tracing"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// The media fetch: for each MediaFetch the recorder publishes on
// whatsapp-media once a driver's reply document exists, get a fresh
// download URL from the Graph API (Meta's URLs live 5 minutes), download
// the bytes with the lease's token under the type's size limit, check them
// against the webhook's sha256 and store them in Cloud Storage, then publish
// a MediaStored for the recorder and only then ack.
//
//   - A permanent failure (media gone from WhatsApp, too large, checksum
//     mismatch, no token) is a MediaStored with failure_reason: the document
//     shows why, and the message is acked.
//   - A transient one (Graph, the download, Cloud Storage, Secret Manager or
//     Pub/Sub down) is retried in process a few times, then answered
//     Unavailable: the message is held at the media gate (consume.Gate), not
//     nacked, so an outage spends no delivery attempt.
//   - Objects are written only if absent, and only once their bytes passed
//     the checksum: a redelivery finds the object and publishes again.

// MediaGraph fetches media from the Graph API; *whatsapp.Client satisfies
// it. Its failures are *whatsapp.Error; DownloadMedia returns a failure of
// the writer as it is.
type MediaGraph interface {
	RetrieveMedia(ctx context.Context, s whatsapp.Sender, mediaID string) (whatsapp.Media, error)
	DownloadMedia(ctx context.Context, s whatsapp.Sender, url string, maxBytes int64, w io.Writer) (int64, error)
}

// MediaStore holds the media objects (Cloud Storage).
type MediaStore interface {
	// Stat describes a stored object; the error wraps ErrObjectNotFound
	// when there is none.
	Stat(ctx context.Context, name string) (StoredObject, error)
	// Create starts an object that must not exist yet; nothing exists
	// until Commit.
	Create(ctx context.Context, name string, o StoredObject) ObjectWriter
	// URI names an object, gs://bucket/name.
	URI(name string) string
}

// ObjectWriter is an object being written.
type ObjectWriter interface {
	io.Writer
	// Commit makes the object; the error wraps ErrObjectExists when one of
	// that name was made meanwhile.
	Commit() error
	// Abort drops what was written: no object is made.
	Abort()
}

// StoredObject describes an object: its type, size and the hex SHA-256 of
// its bytes (kept in its metadata; an object is only committed once its
// bytes match it), empty when WhatsApp stated none.
type StoredObject struct {
	ContentType string
	Size        int64
	SHA256      string
	Metadata    map[string]string
}

// MediaStore errors.
var (
	ErrObjectNotFound = errors.New("object not found")
	ErrObjectExists   = errors.New("object exists")
)

// MetadataSHA256 is the object metadata key holding the hex SHA-256.
const MetadataSHA256 = "sha256"

// Failure reasons of a MediaStored that WhatsApp's classification does not
// give (those are whatsapp.Reason values: media_not_found, media,
// media_too_large, auth, ...).
const (
	MediaReasonChecksumMismatch = "checksum_mismatch"
	MediaReasonInvalid          = "invalid_media"
	// MediaReasonConflict: an object of the message's name holds other
	// bytes than WhatsApp states.
	MediaReasonConflict = "object_conflict"
)

// MediaConfig holds the media fetch's settings.
type MediaConfig struct {
	// StatusTopic receives the MediaStored messages.
	StatusTopic string
	// DefaultAPIVersion is used when a lease carries no Graph API version.
	DefaultAPIVersion string
	// MaxAttempts bounds the tries (fresh URL and download) of one handling
	// before a transient failure holds the message.
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// DownloadTimeout bounds one download and upload (100 MB documents).
	DownloadTimeout time.Duration
	// StorageTimeout bounds one look at an object: the storage client
	// retries a Cloud Storage that does not answer until its context ends.
	StorageTimeout time.Duration
	// PublishTimeout bounds publishing the MediaStored.
	PublishTimeout time.Duration
}

// MediaFetcher runs the media fetch; it is safe for concurrent use.
type MediaFetcher struct {
	cfg       MediaConfig
	graph     MediaGraph
	store     MediaStore
	tokens    TokenResolver
	publisher Publisher
	clock     Clock
	metrics   *MediaMetrics
	log       *logrus.Entry
}

// NewMediaFetcher builds a MediaFetcher.
func NewMediaFetcher(cfg MediaConfig, graph MediaGraph, store MediaStore, tokens TokenResolver, publisher Publisher, clock Clock, metrics *MediaMetrics, log *logrus.Entry) *MediaFetcher {
	return &MediaFetcher{cfg: cfg, graph: graph, store: store, tokens: tokens, publisher: publisher, clock: clock, metrics: metrics, log: log}
}

// Verdict reasons of the media fetch.
const (
	mediaStored        = "stored"
	mediaAlreadyStored = "already_stored"
	mediaFailed        = "failed"
	mediaPoison        = "poison"
	mediaCanceled      = "canceled"
	mediaUnavailable   = "unavailable"
)

// Fetch handles one MediaFetch delivery.
func (f *MediaFetcher) Fetch(ctx context.Context, d consume.Message) consume.Verdict {
	log := logging.WithContext(ctx, f.log).WithField("deliveryAttempt", d.DeliveryAttempt)
	req := &wadispatchv1.MediaFetch{}
	if err := proto.Unmarshal(d.Data, req); err != nil {
		return f.poison(log.WithField("messagePath", d.Attributes["messagePath"]), "undecodable", err)
	}
	log = log.WithFields(logrus.Fields{"messagePath": req.GetMessageDocId(), "wamid": req.GetWhatsappMessageId(), "mediaId": req.GetMedia().GetId()})
	name, err := MediaObjectName(req)
	if err != nil {
		return f.poison(log, "invalid_fetch", err)
	}
	out := f.fetch(ctx, log, req, name)
	switch {
	case out.unavailable != nil:
		f.metrics.results.WithLabelValues(mediaUnavailable, out.reason).Inc()
		log.WithError(out.unavailable).WithField("reason", out.reason).Warn("media fetch failed for now; holding the message")
		return consume.Verdict{Reason: out.reason, Unavailable: true}
	case out.stored == nil:
		// Only the sender stopping ends a handling with nothing to publish.
		log.Info("stopping; media fetch left for redelivery")
		return consume.Verdict{Reason: mediaCanceled}
	}
	if err := f.publish(ctx, out.stored); err != nil {
		f.metrics.results.WithLabelValues(mediaUnavailable, "publish").Inc()
		log.WithError(err).Warn("publishing MediaStored failed; holding the message (the object, if stored, is kept)")
		return consume.Verdict{Reason: "publish_failed", Unavailable: true}
	}
	reason := out.stored.GetFailureReason()
	f.metrics.results.WithLabelValues(out.verdict, reason).Inc()
	if out.verdict == mediaFailed {
		log.WithFields(logrus.Fields{"reason": reason, "detail": out.stored.GetFailureDetail()}).Warn("media can never be stored; failure published")
	} else {
		log.WithFields(logrus.Fields{"uri": out.stored.GetUri(), "size": out.stored.GetSize()}).Info("media stored; published")
	}
	return consume.Verdict{Ack: true, Reason: out.verdict}
}

// fetchOutcome is how one handling ended: a MediaStored to publish (stored
// or failed, per verdict), or a transient failure.
type fetchOutcome struct {
	stored      *wadispatchv1.MediaStored
	verdict     string
	unavailable error
	reason      string
}

func transient(reason string, err error) fetchOutcome {
	return fetchOutcome{unavailable: err, reason: reason}
}

func (f *MediaFetcher) failed(req *wadispatchv1.MediaFetch, reason, detail string) fetchOutcome {
	s := f.newStored(req)
	s.FailureReason, s.FailureDetail = reason, dispatch.Clip(detail, 500)
	return fetchOutcome{stored: s, verdict: mediaFailed}
}

func (f *MediaFetcher) fetch(ctx context.Context, log *logrus.Entry, req *wadispatchv1.MediaFetch, name string) fetchOutcome {
	media := req.GetMedia()
	if media.GetId() == "" {
		return f.failed(req, MediaReasonInvalid, "the webhook named no media id")
	}
	stated, statedErr := statedChecksum(media.GetSha256())
	if statedErr != nil {
		// The bytes are still checked against what the Graph API states.
		log.WithError(statedErr).Warn("the webhook's sha256 does not parse")
	}

	// A redelivery of a fetch whose object was stored but whose MediaStored
	// was not confirmed: publish again without downloading.
	if obj, err := f.stat(ctx, name); err == nil {
		return f.existing(req, name, obj, stated)
	} else if !errors.Is(err, ErrObjectNotFound) {
		return transient("storage", err)
	}

	tok, err := f.tokens.Token(ctx, req.GetLeaseWhatsappDetails().GetTokenRef())
	switch {
	case errors.Is(err, ErrTokenUnavailable):
		return f.failed(req, ReasonTokenUnavailable, err.Error())
	case err != nil:
		return transient("token_lookup", err)
	}
	sender := whatsapp.Sender{PhoneNumberID: req.GetLeaseWhatsappDetails().GetPhoneNumberId(), APIVersion: req.GetLeaseWhatsappDetails().GetApiVersion(), Token: tok}
	if sender.APIVersion == "" {
		sender.APIVersion = f.cfg.DefaultAPIVersion
	}

	bo := retry.Backoff(f.cfg.InitialBackoff, f.cfg.MaxBackoff)
	var last *whatsapp.Error
	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			wait := max(bo.NextBackOff(), last.RetryAfter())
			if last.Reason == whatsapp.ReasonMediaURLExpired {
				// A fresh URL is all it needs.
				wait = 0
			}
			f.metrics.retries.WithLabelValues(string(last.Reason)).Inc()
			log.WithError(last).WithField("attempt", attempt).Infof("media fetch failed; trying again in %s", wait.Round(time.Millisecond))
			if f.clock.Sleep(ctx, wait) != nil {
				return fetchOutcome{}
			}
		}
		out, werr := f.attempt(ctx, req, name, sender, stated)
		if werr == nil {
			return out
		}
		if !werr.Retryable() {
			return f.failed(req, string(werr.Reason), werr.Error())
		}
		if ctx.Err() != nil {
			return fetchOutcome{}
		}
		last = werr
	}
	return transient("whatsapp", last)
}

// attempt gets a fresh URL and downloads it into a new object. A retryable
// WhatsApp failure comes back as the error; anything else as the outcome.
func (f *MediaFetcher) attempt(ctx context.Context, req *wadispatchv1.MediaFetch, name string, s whatsapp.Sender, stated []byte) (fetchOutcome, *whatsapp.Error) {
	media := req.GetMedia()
	info, err := f.graph.RetrieveMedia(ctx, s, media.GetId())
	if err != nil {
		var werr *whatsapp.Error
		if errors.As(err, &werr) {
			return fetchOutcome{}, werr
		}
		return transient("whatsapp", err), nil
	}
	mimeType := contentType(media.GetMimeType(), info.MIMEType)
	limit := whatsapp.MediaLimit(mimeType)
	if info.FileSize > limit {
		return f.failed(req, string(whatsapp.ReasonMediaTooLarge), fmt.Sprintf("WhatsApp states %d bytes; %s may be at most %d", info.FileSize, mimeType, limit)), nil
	}
	want := stated
	if want == nil {
		// Meta's answer states it too (hex); an unparseable one checks nothing.
		want, _ = statedChecksum(info.SHA256)
	}

	dctx, cancel := context.WithTimeout(ctx, f.cfg.DownloadTimeout)
	defer cancel()
	// The object states the checksum it is committed under, so a
	// redelivery can tell it holds the same bytes.
	obj := StoredObject{ContentType: mimeType, Metadata: map[string]string{
		"wamid": req.GetWhatsappMessageId(), "mediaId": media.GetId(), "messagePath": req.GetMessageDocId(),
	}}
	if name := media.GetFilename(); name != "" {
		// The document's name as the driver sent it, for whoever shows it.
		obj.Metadata["filename"] = dispatch.Clip(name, 255)
	}
	if want != nil {
		obj.SHA256 = hex.EncodeToString(want)
	}
	w := f.store.Create(dctx, name, obj)
	sum := sha256.New()
	started := f.clock.Now()
	n, err := f.graph.DownloadMedia(dctx, s, info.URL, limit, io.MultiWriter(sum, w))
	if err != nil {
		w.Abort()
		var werr *whatsapp.Error
		if errors.As(err, &werr) {
			return fetchOutcome{}, werr
		}
		// Not WhatsApp's: the object could not be written.
		return transient("storage", fmt.Errorf("write %s: %w", name, err)), nil
	}
	got := sum.Sum(nil)
	if want != nil && !bytes.Equal(got, want) {
		w.Abort()
		return f.failed(req, MediaReasonChecksumMismatch, fmt.Sprintf("WhatsApp states sha256 %x, the %d bytes downloaded hash to %x", want, n, got)), nil
	}
	if err := w.Commit(); err != nil {
		if errors.Is(err, ErrObjectExists) {
			obj, serr := f.stat(ctx, name)
			if serr != nil {
				return transient("storage", fmt.Errorf("after a concurrent create: %w", serr)), nil
			}
			return f.existing(req, name, obj, got), nil
		}
		return transient("storage", fmt.Errorf("commit %s: %w", name, err)), nil
	}
	f.metrics.bytes.Add(float64(n))
	f.metrics.duration.Observe(f.clock.Now().Sub(started).Seconds())
	stored := f.newStored(req)
	stored.Uri, stored.MimeType, stored.Size, stored.Sha256 = f.store.URI(name), mimeType, n, hex.EncodeToString(got)
	stored.StoredAt = timestamppb.New(f.clock.Now())
	return fetchOutcome{stored: stored, verdict: mediaStored}, nil
}

func (f *MediaFetcher) stat(ctx context.Context, name string) (StoredObject, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.StorageTimeout)
	defer cancel()
	return f.store.Stat(ctx, name)
}

// existing is the outcome for an object already stored under the
// message's name: the same bytes (by its checksum) are a success, other
// bytes a conflict never overwritten. With no checksum stated there is
// nothing to compare: the object was stored by an earlier handling.
func (f *MediaFetcher) existing(req *wadispatchv1.MediaFetch, name string, obj StoredObject, want []byte) fetchOutcome {
	if have, err := hex.DecodeString(obj.SHA256); want != nil && (err != nil || !bytes.Equal(have, want)) {
		return f.failed(req, MediaReasonConflict, fmt.Sprintf("%s holds sha256 %q, WhatsApp states %x", f.store.URI(name), obj.SHA256, want))
	}
	stored := f.newStored(req)
	stored.Uri, stored.MimeType, stored.Size, stored.Sha256 = f.store.URI(name), obj.ContentType, obj.Size, obj.SHA256
	stored.StoredAt = timestamppb.New(f.clock.Now())
	return fetchOutcome{stored: stored, verdict: mediaAlreadyStored}
}

func (f *MediaFetcher) newStored(req *wadispatchv1.MediaFetch) *wadispatchv1.MediaStored {
	return &wadispatchv1.MediaStored{
		MessageDocId:      req.GetMessageDocId(),
		WhatsappMessageId: req.GetWhatsappMessageId(),
		MediaId:           req.GetMedia().GetId(),
	}
}

// publish publishes the MediaStored and waits for the confirmation, even
// while the sender stops: the object is stored, and a redelivery would
// only publish it again.
func (f *MediaFetcher) publish(ctx context.Context, s *wadispatchv1.MediaStored) error {
	data, err := proto.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode MediaStored: %w", err)
	}
	outcome := "stored"
	if s.GetFailureReason() != "" {
		outcome = "failed"
	}
	attrs := map[string]string{
		"messagePath": s.GetMessageDocId(),
		"outcome":     outcome,
		"schema":      string(proto.MessageName(s)),
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.PublishTimeout)
	defer cancel()
	return f.publisher.Publish(ctx, f.cfg.StatusTopic, data, tracing.Inject(ctx, attrs))
}

func (f *MediaFetcher) poison(log *logrus.Entry, reason string, err error) consume.Verdict {
	f.metrics.results.WithLabelValues(mediaPoison, reason).Inc()
	log.WithError(err).WithField("reason", reason).Error("poison media fetch; nacking until the subscription dead-letters it")
	return consume.Verdict{Reason: reason, Poison: true}
}

// MediaObjectName is where a driver's media is stored:
// leasecompany/{leaseId}/enquiries/{enquiryId}/media/{wamid}, the ids from
// the message's path (which must agree with the fetch's own) and the wamid
// made a safe object name by SafeObjectName.
func MediaObjectName(req *wadispatchv1.MediaFetch) (string, error) {
	ref, err := dispatch.ParseReplyPath(req.GetMessageDocId())
	if err != nil {
		return "", err
	}
	if (req.GetLeaseId() != "" && req.GetLeaseId() != ref.LeaseID) || (req.GetEnquiryId() != "" && req.GetEnquiryId() != ref.EnquiryID) {
		return "", fmt.Errorf("lease %q / enquiry %q differ from the message path's", req.GetLeaseId(), req.GetEnquiryId())
	}
	wamid := SafeObjectName(req.GetWhatsappMessageId())
	if strings.Trim(wamid, ".") == "" {
		return "", fmt.Errorf("wamid %q cannot name an object", req.GetWhatsappMessageId())
	}
	return ref.MediaFolder() + "/" + wamid, nil
}

// SafeObjectName escapes s into one path segment of an object name:
// letters, digits, '.', '-' and '_' are kept, every other byte (the '/', '+'
// and '=' of a wamid's base64 among them) becomes %XX. '%' is escaped too,
// so two wamids never share a name.
func SafeObjectName(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// statedChecksum reads a sha256 as WhatsApp states it; "" states none.
func statedChecksum(s string) ([]byte, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return whatsapp.ParseSHA256(s)
}

// contentType is the object's Content-Type: the webhook's MIME type, else
// the Graph API's, else application/octet-stream; one that does not parse
// is not used.
func contentType(candidates ...string) string {
	for _, c := range candidates {
		if _, _, err := mime.ParseMediaType(c); err == nil {
			return c
		}
	}
	return "application/octet-stream"
}

// MediaMetrics are the media fetch's Prometheus metrics.
type MediaMetrics struct {
	results  *prometheus.CounterVec
	retries  *prometheus.CounterVec
	bytes    prometheus.Counter
	duration prometheus.Histogram
}

// NewMediaMetrics registers the metrics on reg.
func NewMediaMetrics(reg prometheus.Registerer) *MediaMetrics {
	m := &MediaMetrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_media_fetches_total",
			Help: "Media fetches handled, by result (stored, already_stored, failed, unavailable, poison) and reason (the failure reason, the dependency unavailable or the poison reason).",
		}, []string{"result", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_sender_media_retries_total",
			Help: "In-process retries of a media URL and download, by the reason of the failure retried.",
		}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wadispatch_sender_media_stored_bytes_total",
			Help: "Bytes of media downloaded, checked and stored.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wadispatch_sender_media_download_duration_seconds",
			Help:    "Time to download and store one media object.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
	}
	reg.MustRegister(m.results, m.retries, m.bytes, m.duration)
	return m
}
