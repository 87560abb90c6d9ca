package whatsapp

// Media the business sends: an image, document, video or audio message
// whose media is a media id (uploaded with UploadMedia) or a link WhatsApp
// fetches itself. Meta's pages, read on 2026-12-02 through the copies the
// project's search holds (support.chatarchitect.com/books/meta-whatsapp/page/document-messages-developer-documentation,
// docs.360dialog.com/docs/messaging/message-types/document,
// docs.weni.ai/l/en/weni-integrations/supported-media-sending-whats-app-cloud):
//
//   - "Supported media types": audio (audio/aac, audio/amr, audio/mpeg,
//     audio/mp4, audio/ogg with the opus codec only) 16 MB; document
//     (text/plain, the Excel, Word and PowerPoint types, application/pdf)
//     100 MB; image (image/jpeg, image/png) 5 MB; video (video/mp4,
//     video/3gp, which other copies spell video/3gpp) 16 MB.
//   - The message object {"id"|"link", "caption", "filename"}: a caption
//     (at most 1024 characters) for image, video and document, none for
//     audio; a filename for documents only.
//   - POST /{phone-number-id}/media, multipart: messaging_product=whatsapp,
//     type (the MIME type) and file; answers {"id"}. An uploaded media id
//     lives 30 days.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"unicode/utf8"
)

// The media message types.
const (
	TypeImage    MessageType = "image"
	TypeDocument MessageType = "document"
	TypeVideo    MessageType = "video"
	TypeAudio    MessageType = "audio"
)

// MaxMediaCaption is the limit on a media caption, in characters.
const MaxMediaCaption = 1024

// Reasons of refused outbound media, decided before any call.
const (
	// ReasonMediaTypeUnsupported: a MIME type WhatsApp does not carry for
	// the message type (Meta's 131053 when sent anyway). Permanent.
	ReasonMediaTypeUnsupported Reason = "media_type_unsupported"
)

// mediaTypes is Meta's "Supported media types" table for sending; a nil
// params check accepts any parameters.
var mediaTypes = map[MessageType]struct {
	limit int64
	types map[string]bool
}{
	TypeImage: {5 << 20, set("image/jpeg", "image/png")},
	TypeAudio: {16 << 20, set("audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg")},
	TypeVideo: {16 << 20, set("video/mp4", "video/3gpp", "video/3gp")},
	TypeDocument: {100 << 20, set("text/plain", "application/pdf",
		"application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
		"application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		"application/vnd.ms-powerpoint", "application/vnd.openxmlformats-officedocument.presentationml.presentation")},
}

func set(vs ...string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// MediaRefusal is why CheckMedia refuses media: its Reason is
// ReasonMediaTooLarge or ReasonMediaTypeUnsupported.
type MediaRefusal struct {
	Reason Reason
	Detail string
}

func (e *MediaRefusal) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrInvalidMessage, e.Reason, e.Detail)
}

// Unwrap makes a refusal an ErrInvalidMessage.
func (e *MediaRefusal) Unwrap() error { return ErrInvalidMessage }

// IsMediaType reports whether t is one of the media message types.
func IsMediaType(t MessageType) bool {
	_, ok := mediaTypes[t]
	return ok
}

// CheckMedia applies Meta's limits to media of a message type: its MIME
// type must be one Meta lists for the type (audio/ogg only with the opus
// codec, "audio/ogg; codecs=opus"), and its size at most the type's limit
// (MB taken as binary, as MediaLimit does). A size below 0 is not checked
// (a link, whose size only WhatsApp learns). The error is a *MediaRefusal.
func CheckMedia(kind MessageType, mimeType string, size int64) error {
	spec, ok := mediaTypes[kind]
	if !ok {
		return &MediaRefusal{Reason: ReasonMediaTypeUnsupported, Detail: fmt.Sprintf("%q is not a media message type", kind)}
	}
	mt, params, err := mime.ParseMediaType(mimeType)
	if err != nil || !spec.types[mt] {
		return &MediaRefusal{Reason: ReasonMediaTypeUnsupported, Detail: fmt.Sprintf("WhatsApp does not send %q as %s", mimeType, kind)}
	}
	if mt == "audio/ogg" && !strings.EqualFold(params["codecs"], "opus") {
		return &MediaRefusal{Reason: ReasonMediaTypeUnsupported, Detail: `WhatsApp sends audio/ogg only with the opus codec ("audio/ogg; codecs=opus")`}
	}
	if size > spec.limit {
		return &MediaRefusal{Reason: ReasonMediaTooLarge, Detail: fmt.Sprintf("%d bytes, WhatsApp sends %s of at most %d MB", size, kind, spec.limit>>20)}
	}
	return nil
}

// MediaObject is the object of a media message: ID (an uploaded media id)
// or Link (https), a caption (not for audio) and a filename (documents).
type MediaObject struct {
	ID       string `json:"id,omitempty"`
	Link     string `json:"link,omitempty"`
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
}

// MediaMessage builds a media message of kind. The media's ID or Link may
// be left empty while the object is still to be uploaded: Validate (and
// Send) require one of them. Errors are *FieldError.
func MediaMessage(to string, kind MessageType, o MediaObject) (Message, error) {
	if err := o.validate(kind, false); err != nil {
		return Message{}, err
	}
	return Message{To: to, Type: kind, Media: &o}, nil
}

func (o *MediaObject) validate(kind MessageType, needSource bool) error {
	if !IsMediaType(kind) {
		return fieldErr("type", "%q is not a media message type", kind)
	}
	if o.ID != "" && o.Link != "" {
		return fieldErr("media", "either a media id or a link, not both")
	}
	if needSource && o.ID == "" && o.Link == "" {
		return fieldErr("media", "a media id or a link is required")
	}
	if o.Link != "" {
		if u, err := url.Parse(o.Link); err != nil || u.Scheme != "https" || u.Host == "" {
			return fieldErr("media.link", "must be an https URL")
		}
	}
	if o.Caption != "" && kind == TypeAudio {
		return fieldErr("message", "WhatsApp sends no caption with audio")
	}
	if n := utf8.RuneCountInString(o.Caption); n > MaxMediaCaption {
		return fieldErr("message", "a caption has %d characters, the limit is %d", n, MaxMediaCaption)
	}
	if o.Filename != "" && kind != TypeDocument {
		return fieldErr("media.filename", "only a document has a file name")
	}
	return nil
}

// UploadMedia uploads media for s's business number (POST
// /{phone-number-id}/media, multipart) and returns its media id. The body
// is read once; an upload cannot be resumed, but repeating one only makes
// another media id, so failures before an answer are retryable. Every
// failure is an *Error.
func (c *Client) UploadMedia(ctx context.Context, s Sender, mimeType, filename string, body io.Reader) (string, error) {
	if err := s.validate(); err != nil {
		return "", transportError(0, ReasonInvalidMessage, false, err)
	}
	if filename == "" {
		filename = "media"
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("messaging_product", "whatsapp")
	_ = mw.WriteField("type", mimeType)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{"name": "file", "filename": filename}))
	h.Set("Content-Type", mimeType)
	part, err := mw.CreatePart(h)
	if err != nil {
		return "", transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: build upload: %v", ErrInvalidMessage, err))
	}
	if _, err := io.Copy(part, body); err != nil {
		return "", fmt.Errorf("read media to upload: %w", err)
	}
	if err := mw.Close(); err != nil {
		return "", transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: build upload: %v", ErrInvalidMessage, err))
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	endpoint := c.base + "/" + s.APIVersion + "/" + s.PhoneNumberID + "/media"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &buf)
	if err != nil {
		return "", transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: build request: %v", ErrInvalidMessage, err))
	}
	req.Header.Set("Authorization", "Bearer "+s.Token.Reveal())
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.http.Do(req)
	if err != nil {
		reason := ReasonNetwork
		if ctx.Err() != nil {
			reason = ReasonCanceled
		}
		return "", transportError(0, reason, true, err)
	}
	defer drain(resp)
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return "", transportError(resp.StatusCode, ReasonNetwork, true, fmt.Errorf("read upload answer: %w", err))
	}
	id, err := parseUpload(resp.StatusCode, resp.Header.Get("Retry-After"), data)
	if err != nil {
		scrub(err, s.Token.Reveal())
	}
	return id, err
}

// parseUpload turns the answer to an upload into a media id or an *Error.
func parseUpload(status int, retryAfter string, body []byte) (string, error) {
	if status >= 200 && status < 300 {
		var ok struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &ok); err != nil || ok.ID == "" {
			// Nothing was sent to anyone: uploading again is harmless.
			return "", transportError(status, ReasonHTTPStatus, true, errors.New("upload answer without an id"))
		}
		return ok.ID, nil
	}
	var e struct {
		Error *errorBody `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == nil {
		return "", mediaStatusError(status, retryAfter, errors.New("answer without a Meta error object"))
	}
	return "", metaError(status, *e.Error.Code, *e.Error, parseRetryAfter(retryAfter))
}
