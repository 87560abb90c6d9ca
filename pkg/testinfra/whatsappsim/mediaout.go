package whatsappsim

// Media messages the business sends (image, document, video, audio), by an
// uploaded media id or a link, following Meta's pages as read on
// 2026-12-02 through the copies the project's search holds:
//
//   - "Supported media types" (the Media reference,
//     developers.facebook.com/docs/whatsapp/cloud-api/reference/media#supported-media-types;
//     copied at docs.weni.ai/l/en/weni-integrations/supported-media-sending-whats-app-cloud):
//     audio audio/aac, audio/amr, audio/mpeg, audio/mp4, audio/ogg (opus
//     codecs only; "base audio/ogg not supported") 16 MB; document
//     text/plain, the Excel, Word and PowerPoint types, application/pdf
//     100 MB; image image/jpeg, image/png 5 MB; sticker image/webp 500 KB;
//     video video/3gp (video/3gpp elsewhere), video/mp4 16 MB. An upload
//     of another type or over the size is refused 131053 (Media upload
//     error, the error codes page).
//   - "Document messages" and the other media message pages
//     (support.chatarchitect.com/books/meta-whatsapp/page/document-messages-developer-documentation,
//     docs.360dialog.com/docs/messaging/message-types/document): the
//     object holds "id" (uploaded media) or "link" (hosted media), an
//     optional "caption" of at most 1024 characters, and for a document an
//     optional "filename".
//
// The table is the simulator's own, from these pages, not pkg/whatsapp's,
// so a limit wrong in one shows up against the other.

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"
)

// maxMediaCaption is Meta's limit on a media caption, in characters.
const maxMediaCaption = 1024

// uploadTypes is Meta's supported media types table: the largest file of
// each MIME type (MB as binary).
var uploadTypes = map[string]int64{
	"audio/aac": 16 << 20, "audio/amr": 16 << 20, "audio/mpeg": 16 << 20, "audio/mp4": 16 << 20, "audio/ogg": 16 << 20,
	"text/plain": 100 << 20, "application/pdf": 100 << 20,
	"application/vnd.ms-excel": 100 << 20, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 << 20,
	"application/msword": 100 << 20, "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 << 20,
	"application/vnd.ms-powerpoint": 100 << 20, "application/vnd.openxmlformats-officedocument.presentationml.presentation": 100 << 20,
	"image/jpeg": 5 << 20, "image/png": 5 << 20,
	"image/webp": 500 << 10,
	"video/mp4":  16 << 20, "video/3gpp": 16 << 20, "video/3gp": 16 << 20,
}

// uploadLimit is the largest upload of a MIME type, and false for a type
// Meta does not support (audio/ogg only with the opus codec).
func uploadLimit(mimeType string) (int64, bool) {
	mt, params, err := mime.ParseMediaType(mimeType)
	if err != nil {
		return 0, false
	}
	limit, ok := uploadTypes[mt]
	if mt == "audio/ogg" && !strings.EqualFold(params["codecs"], "opus") {
		return 0, false
	}
	return limit, ok
}

// mediaMessageTypes are the media types a message may have, with the MIME
// types each accepts.
var mediaMessageTypes = map[string]string{
	"image": "image/", "video": "video/", "audio": "audio/", "document": "",
}

func isMediaMessage(typ string) bool {
	_, ok := mediaMessageTypes[typ]
	return ok
}

// AcceptedMedia is the media object of an accepted media message.
type AcceptedMedia struct {
	ID       string `json:"id,omitempty"`
	Link     string `json:"link,omitempty"`
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
}

func validateMedia(top map[string]json.RawMessage, m *message) *apiError {
	raw, ok := top[m.typ]
	if !ok {
		return newAPIError(131008, fmt.Sprintf("The parameter %s is required.", m.typ))
	}
	var o AcceptedMedia
	if err := strictDecode(raw, &o); err != nil {
		return newAPIError(131009, fmt.Sprintf("Param %s must be an object with id or link, caption and (documents) filename: %v.", m.typ, err))
	}
	switch {
	case o.ID == "" && o.Link == "":
		return newAPIError(131008, fmt.Sprintf("The parameter %s['id'] or %s['link'] is required.", m.typ, m.typ))
	case o.ID != "" && o.Link != "":
		return newAPIError(131009, fmt.Sprintf("Param %s must have either id or link, not both.", m.typ))
	}
	if o.Link != "" {
		if u, err := url.Parse(o.Link); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return newAPIError(131009, fmt.Sprintf("Param %s['link'] is not a valid URL.", m.typ))
		}
	}
	if o.Caption != "" && m.typ == "audio" {
		return newAPIError(131009, "Param audio['caption'] is not allowed: audio has no caption.")
	}
	if n := utf8.RuneCountInString(o.Caption); n > maxMediaCaption {
		return newAPIError(131009, fmt.Sprintf("Param %s['caption'] must be at most %d characters long (got %d).", m.typ, maxMediaCaption, n))
	}
	if o.Filename != "" && m.typ != "document" {
		return newAPIError(131009, fmt.Sprintf("Param %s['filename'] is only for documents.", m.typ))
	}
	m.media = &o
	return nil
}

// checkMediaID refuses a media id the business number never uploaded, or
// one of a type the message type does not carry (131053).
func (s *Simulator) checkMediaID(phoneID string, msg *message) *apiError {
	if msg.media == nil || msg.media.ID == "" {
		return nil
	}
	s.media.mu.Lock()
	b, ok := s.media.blobs[msg.media.ID]
	s.media.mu.Unlock()
	if !ok || b.PhoneNumberID != phoneID {
		return newAPIError(131009, fmt.Sprintf("Param %s['id'] is not a media id of this phone number.", msg.typ))
	}
	prefix := mediaMessageTypes[msg.typ]
	mt, _, _ := mime.ParseMediaType(b.MIMEType)
	if (prefix != "" && !strings.HasPrefix(mt, prefix)) || (prefix == "" && (strings.HasPrefix(mt, "image/") || strings.HasPrefix(mt, "audio/") || strings.HasPrefix(mt, "video/"))) {
		return newAPIError(131053, fmt.Sprintf("Media of type %s cannot be sent as %s.", b.MIMEType, msg.typ))
	}
	return nil
}
