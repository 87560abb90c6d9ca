package whatsapp

// Media a WhatsApp user sent: Meta's webhook carries only a media id; the
// bytes are fetched in two steps (Meta's "Media" reference,
// developers.facebook.com/docs/whatsapp/cloud-api/reference/media, and its
// "Retrieve media URL" and "Download media" pages, read on 2026-12-02 through
// their copies at whatsapp-docs.kap.so/documentation/whatsapp/reference/media/media-api
// and .../media-download-api):
//
//  1. GET /{api-version}/{media-id}[?phone_number_id=...] with the bearer
//     token answers {"messaging_product","url","mime_type","sha256",
//     "file_size","id"}. "The URL is only valid for 5 minutes"; the
//     phone_number_id query makes Meta check that the media belongs to that
//     business number.
//  2. GET {url} with the same bearer token answers the bytes ("performing a
//     generic GET will not return the media; you must include an access
//     token"). An expired URL must be retrieved again.
//
// Media ids from webhooks can be downloaded for 7 days (the Media page,
// "Get media ID").

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Reasons of media failures that are not Meta error codes.
const (
	// ReasonMediaNotFound: Meta does not know the media id (any more), or
	// not for this business number: code 100 (its "Object with ID ... does
	// not exist" answer) or a 404 on the media id. Permanent.
	ReasonMediaNotFound Reason = "media_not_found"
	// ReasonMediaURLExpired: the download URL was refused (401, 403, 404,
	// 410): it lives 5 minutes. Retryable by retrieving a fresh URL.
	ReasonMediaURLExpired Reason = "media_url_expired"
	// ReasonMediaTooLarge: larger than MediaLimit allows for its type.
	// Permanent.
	ReasonMediaTooLarge Reason = "media_too_large"
)

// Media is Meta's description of a media object, from RetrieveMedia.
type Media struct {
	ID  string
	URL string
	// MIMEType as Meta states it, e.g. "audio/ogg; codecs=opus".
	MIMEType string
	// SHA256 as Meta states it (hex in the answers seen; see ParseSHA256).
	SHA256   string
	FileSize int64
}

type mediaBody struct {
	URL      string          `json:"url"`
	MIMEType string          `json:"mime_type"`
	SHA256   string          `json:"sha256"`
	FileSize json.RawMessage `json:"file_size"`
	ID       string          `json:"id"`
}

// RetrieveMedia asks Meta for a media object's download URL and metadata.
// Every failure is an *Error; Retryable() is true for network failures,
// 5xx, 429 and Meta's retryable codes (a GET can always be repeated).
func (c *Client) RetrieveMedia(ctx context.Context, s Sender, mediaID string) (Media, error) {
	if err := s.validate(); err != nil {
		return Media{}, transportError(0, ReasonInvalidMessage, false, err)
	}
	if mediaID == "" || strings.ContainsAny(mediaID, "/?#") {
		return Media{}, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: media id %q", ErrInvalidMessage, mediaID))
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	endpoint := c.base + "/" + s.APIVersion + "/" + url.PathEscape(mediaID) + "?phone_number_id=" + url.QueryEscape(s.PhoneNumberID)
	resp, err := c.get(ctx, s.Token, endpoint)
	if err != nil {
		return Media{}, err
	}
	defer drain(resp)
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return Media{}, transportError(resp.StatusCode, ReasonNetwork, true, fmt.Errorf("read media answer: %w", err))
	}
	m, err := parseMedia(resp.StatusCode, resp.Header.Get("Retry-After"), data)
	if err != nil {
		scrub(err, s.Token.Reveal())
	}
	return m, err
}

// parseMedia turns a complete answer to GET /{media-id} into a Media or an
// *Error. It never panics, whatever the body (FuzzParseMedia).
func parseMedia(status int, retryAfter string, body []byte) (Media, error) {
	if status >= 200 && status < 300 {
		var b mediaBody
		if err := json.Unmarshal(body, &b); err != nil {
			return Media{}, transportError(status, ReasonHTTPStatus, true, fmt.Errorf("unparseable media answer: %w", err))
		}
		if b.URL == "" {
			return Media{}, transportError(status, ReasonHTTPStatus, true, errors.New("media answer without url"))
		}
		m := Media{ID: b.ID, URL: b.URL, MIMEType: b.MIMEType, SHA256: b.SHA256}
		// Meta's reference shows file_size as a number, some copies as a
		// string: both are read.
		if raw := bytes.Trim(b.FileSize, `"`); len(raw) > 0 {
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil || n < 0 {
				return Media{}, transportError(status, ReasonHTTPStatus, true, fmt.Errorf("media answer: file_size %s", b.FileSize))
			}
			m.FileSize = n
		}
		return m, nil
	}
	var e struct {
		Error *errorBody `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == nil {
		if status == http.StatusNotFound || status == http.StatusGone {
			return Media{}, transportError(status, ReasonMediaNotFound, false, errors.New("media id not found"))
		}
		return Media{}, mediaStatusError(status, retryAfter, errors.New("answer without a Meta error object"))
	}
	me := metaError(status, *e.Error.Code, *e.Error, parseRetryAfter(retryAfter))
	if me.Code == 100 {
		// Graph's answer to an id it cannot load: "Unsupported get request.
		// Object with ID '...' does not exist, cannot be loaded due to
		// missing permissions, or does not support this operation".
		me.Reason = ReasonMediaNotFound
	}
	return Media{}, me
}

// DownloadMedia downloads a URL from RetrieveMedia into w, with the token,
// and returns the number of bytes written. A body over maxBytes (by its
// Content-Length or as read) fails with ReasonMediaTooLarge. The caller's
// ctx bounds the download (the client's timeout is for API calls, not for
// 100 MB). Failures of the download are *Error; a failure of w is
// returned wrapped as it is, so the caller can tell its own storage from
// WhatsApp.
func (c *Client) DownloadMedia(ctx context.Context, s Sender, mediaURL string, maxBytes int64, w io.Writer) (int64, error) {
	if s.Token.IsZero() {
		return 0, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: empty access token", ErrInvalidMessage))
	}
	if err := c.checkMediaURL(mediaURL); err != nil {
		return 0, transportError(0, ReasonInvalidMessage, false, err)
	}
	resp, err := c.get(ctx, s.Token, mediaURL)
	if err != nil {
		return 0, err
	}
	defer drain(resp)
	switch st := resp.StatusCode; {
	case st == http.StatusUnauthorized || st == http.StatusForbidden || st == http.StatusNotFound || st == http.StatusGone:
		return 0, transportError(st, ReasonMediaURLExpired, true, errors.New("download URL refused; a fresh one is needed"))
	case st < 200 || st > 299:
		return 0, mediaStatusError(st, resp.Header.Get("Retry-After"), errors.New("download failed"))
	}
	if resp.ContentLength > maxBytes {
		return 0, transportError(resp.StatusCode, ReasonMediaTooLarge, false, fmt.Errorf("%d bytes, more than the %d allowed", resp.ContentLength, maxBytes))
	}
	return copyAtMost(w, resp.Body, maxBytes)
}

// copyAtMost copies src to dst, failing once src holds more than max
// bytes; read failures are *Error, write failures wrapped as they are.
func copyAtMost(dst io.Writer, src io.Reader, max int64) (int64, error) {
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if n+int64(k) > max {
				return n, transportError(http.StatusOK, ReasonMediaTooLarge, false, fmt.Errorf("more than the %d bytes allowed", max))
			}
			if _, err := dst.Write(buf[:k]); err != nil {
				return n, fmt.Errorf("write media: %w", err)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, transportError(http.StatusOK, ReasonNetwork, true, fmt.Errorf("read media: %w", rerr))
		}
	}
}

// checkMediaURL refuses a URL the token must not be sent to: not absolute,
// or plain http while the client speaks https to Meta.
func (c *Client) checkMediaURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%w: media URL is not an absolute http(s) URL", ErrInvalidMessage)
	}
	if u.Scheme == "http" && !strings.HasPrefix(c.base, "http://") {
		return fmt.Errorf("%w: media URL is plain http", ErrInvalidMessage)
	}
	return nil
}

// get sends an authenticated GET. A failure to get an answer is an *Error:
// retryable, since a GET changes nothing.
func (c *Client) get(ctx context.Context, tok Token, endpoint string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, transportError(0, ReasonInvalidMessage, false, fmt.Errorf("%w: build request: %v", ErrInvalidMessage, err))
	}
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := c.http.Do(req)
	if err != nil {
		reason := ReasonNetwork
		if ctx.Err() != nil {
			reason = ReasonCanceled
		}
		// The URL (with Meta's signature) and the error are kept; the token
		// is only in the header, which errors never print.
		return nil, transportError(0, reason, true, err)
	}
	return resp, nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
}

// mediaStatusError classifies a non-2xx answer without a Meta error
// object to a GET: 5xx (a gateway timeout too: nothing was changed), 429
// and 408 are retryable.
func mediaStatusError(status int, retryAfter string, cause error) *Error {
	retryable := status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
	e := transportError(status, ReasonHTTPStatus, retryable, cause)
	if d := parseRetryAfter(retryAfter); d > 0 {
		e.retryAfter = d
	}
	return e
}

// MediaLimit is the largest media of a MIME type WhatsApp carries, by
// Meta's "Supported media types" table (the Media page; the same table at
// docs-wa.neuapix.com/whatsapp-api/whatsapp-api/media and
// support.chatarchitect.com/books/meta-whatsapp/page/media-developer-documentation):
// audio and video 16 MB, image 5 MB, sticker (image/webp) 500 KB animated
// and 100 KB static, document 100 MB. A webp cannot be told animated from
// static before it is read, so stickers get the larger limit; any other
// type is a document. MB and KB are taken as binary, the generous reading.
func MediaLimit(mimeType string) int64 {
	mt, _, err := mime.ParseMediaType(mimeType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(mimeType))
	}
	switch {
	case mt == "image/webp":
		return 500 << 10
	case strings.HasPrefix(mt, "image/"):
		return 5 << 20
	case strings.HasPrefix(mt, "audio/"), strings.HasPrefix(mt, "video/"):
		return 16 << 20
	}
	return 100 << 20
}

// ParseSHA256 reads a SHA-256 as WhatsApp states it: Meta's webhook
// reference documents base64 (its examples show both base64 and hex, and
// GET /{media-id} answers hex), so 64 hex digits and base64 (standard or
// URL alphabet, padded or not) of 32 bytes are accepted.
func ParseSHA256(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == hex.EncodedLen(sha256.Size) {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == sha256.Size {
			return b, nil
		}
	}
	return nil, fmt.Errorf("sha256 %q is neither 64 hex digits nor base64 of 32 bytes", s)
}
