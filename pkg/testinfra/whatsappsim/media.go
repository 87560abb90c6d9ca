package whatsappsim

// Media, following Meta's Media reference
// (developers.facebook.com/docs/whatsapp/cloud-api/reference/media; its
// "Retrieve media URL" and "Download media" pages as copied at
// whatsapp-docs.kap.so/documentation/whatsapp/reference/media/media-api and
// .../media-download-api, read on 2026-12-02):
//
//   - POST /{version}/{phone-number-id}/media, multipart (file, type,
//     messaging_product=whatsapp), answers {"id"};
//   - GET /{version}/{media-id}[?phone_number_id=] answers
//     {"messaging_product","url","mime_type","sha256","file_size","id"}, the
//     URL valid for 5 minutes;
//   - GET {url} with the bearer token answers the bytes.
//
// Media a driver sends is added through AddMedia (the admin API's POST
// /_sim/media) and referred to by an Inbound's MediaID.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMediaURLTTL is how long Meta's download URLs are valid.
const DefaultMediaURLTTL = 5 * time.Minute

// downloadPath is where the simulator serves download URLs, shaped like
// Meta's (lookaside.fbsbx.com/whatsapp_business/attachments/?mid=&ext=&hash=).
const downloadPath = "/whatsapp_business/attachments/"

// maxUpload bounds an uploaded file: Meta's largest type (document) is 100 MB.
const maxUpload = 100 << 20

var (
	mediaIDPath     = regexp.MustCompile(`^/(v[0-9]+\.[0-9]+)/([0-9]+)$`)
	mediaUploadPath = regexp.MustCompile(`^/(v[0-9]+\.[0-9]+)/([0-9]+)/media$`)
)

// MediaFaultKind selects what a media fault does to a download.
type MediaFaultKind string

// Media fault kinds.
const (
	// MediaFaultDownloadStatus answers the next downloads HTTPStatus
	// (default 503) with a non-JSON body.
	MediaFaultDownloadStatus MediaFaultKind = "download_status"
	// MediaFaultExpireURL treats the URL of the next downloads as expired,
	// whatever its age.
	MediaFaultExpireURL MediaFaultKind = "expire_url"
)

// MediaFault fails the next Times downloads (at least one).
type MediaFault struct {
	Kind       MediaFaultKind `json:"kind"`
	HTTPStatus int            `json:"http_status,omitempty"`
	Times      int            `json:"times,omitempty"`
}

// AddedMedia is a media object the simulator holds.
type AddedMedia struct {
	ID            string `json:"id"`
	PhoneNumberID string `json:"phone_number_id"`
	MIMEType      string `json:"mime_type"`
	// SHA256 is base64 of the SHA-256 of the bytes, as webhooks state it.
	SHA256 string `json:"sha256"`
	Size   int    `json:"file_size"`
	// Unavailable media answers GET /{media-id} with 131052 (Media
	// download error), as for a file WhatsApp could not fetch from the user.
	Unavailable bool `json:"unavailable,omitempty"`
}

// MediaCounts are the media calls since start or the last Reset.
type MediaCounts struct {
	URLRequests    int `json:"url_requests"`
	Downloads      int `json:"downloads"`
	DownloadFaults int `json:"download_faults"`
	ExpiredURLs    int `json:"expired_urls"`
	Uploads        int `json:"uploads"`
}

// media is the simulator's media store.
type media struct {
	key []byte

	mu     sync.Mutex
	ttl    time.Duration
	seq    int
	blobs  map[string]*blob
	faults []MediaFault
	counts MediaCounts
}

type blob struct {
	AddedMedia
	data []byte
}

func newMedia(ttl time.Duration) *media {
	if ttl <= 0 {
		ttl = DefaultMediaURLTTL
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &media{key: key, ttl: ttl, blobs: map[string]*blob{}}
}

func (m *media) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs, m.faults, m.counts = map[string]*blob{}, nil, MediaCounts{}
}

// AddMedia stores data as media of phoneNumberID (as if a user had sent
// it, or the business had uploaded it) and returns its description, whose
// ID an Inbound's MediaID names.
func (s *Simulator) AddMedia(phoneNumberID, mimeType string, data []byte) AddedMedia {
	m := s.media
	sum := sha256.Sum256(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	b := &blob{AddedMedia: AddedMedia{
		ID:            strconv.FormatInt(1_000_000_000_000_000+int64(m.seq), 10),
		PhoneNumberID: phoneNumberID,
		MIMEType:      mimeType,
		SHA256:        base64.StdEncoding.EncodeToString(sum[:]),
		Size:          len(data),
	}, data: append([]byte(nil), data...)}
	m.blobs[b.ID] = b
	return b.AddedMedia
}

// SetMediaUnavailable makes GET /{media-id} answer 131052 for id.
func (s *Simulator) SetMediaUnavailable(id string) error {
	m := s.media
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[id]
	if !ok {
		return fmt.Errorf("whatsappsim: no media %q", id)
	}
	b.Unavailable = true
	return nil
}

// Media returns a media object's description and bytes.
func (s *Simulator) Media(id string) (AddedMedia, []byte, bool) {
	m := s.media
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[id]
	if !ok {
		return AddedMedia{}, nil, false
	}
	return b.AddedMedia, append([]byte(nil), b.data...), true
}

// SetMediaURLTTL changes how long download URLs issued from now on are
// valid (Meta: 5 minutes), for tests of expiry.
func (s *Simulator) SetMediaURLTTL(ttl time.Duration) {
	if ttl <= 0 {
		ttl = DefaultMediaURLTTL
	}
	s.media.mu.Lock()
	defer s.media.mu.Unlock()
	s.media.ttl = ttl
}

// AddMediaFault installs a download fault after those installed.
func (s *Simulator) AddMediaFault(f MediaFault) error {
	switch f.Kind {
	case MediaFaultDownloadStatus:
		if f.HTTPStatus != 0 && (f.HTTPStatus < 400 || f.HTTPStatus > 599) {
			return fmt.Errorf("media fault %q: http_status %d is not an error status", f.Kind, f.HTTPStatus)
		}
	case MediaFaultExpireURL:
	default:
		return fmt.Errorf("unknown media fault kind %q", f.Kind)
	}
	if f.Times < 0 {
		return fmt.Errorf("media fault %q: times must be >= 0", f.Kind)
	}
	f.Times = max(f.Times, 1)
	s.media.mu.Lock()
	defer s.media.mu.Unlock()
	s.media.faults = append(s.media.faults, f)
	return nil
}

// MediaCounts returns a copy of the media counters.
func (s *Simulator) MediaCounts() MediaCounts {
	s.media.mu.Lock()
	defer s.media.mu.Unlock()
	return s.media.counts
}

// serveMedia serves the media routes and reports whether r was one.
func (s *Simulator) serveMedia(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case r.URL.Path == downloadPath && r.Method == http.MethodGet:
		s.serveDownload(w, r)
	case r.Method == http.MethodGet && mediaIDPath.MatchString(r.URL.Path):
		s.serveMediaURL(w, r, mediaIDPath.FindStringSubmatch(r.URL.Path)[2])
	case r.Method == http.MethodPost && mediaUploadPath.MatchString(r.URL.Path):
		s.serveUpload(w, r, mediaUploadPath.FindStringSubmatch(r.URL.Path)[2])
	default:
		return false
	}
	return true
}

// serveMediaURL answers GET /{version}/{media-id}: the token must be the one
// of the phone number the media belongs to, and a phone_number_id query
// must name that number.
func (s *Simulator) serveMediaURL(w http.ResponseWriter, r *http.Request, id string) {
	m := s.media
	m.mu.Lock()
	m.counts.URLRequests++
	b, ok := m.blobs[id]
	var desc AddedMedia
	if ok {
		desc = b.AddedMedia
	}
	ttl := m.ttl
	m.mu.Unlock()
	notFound := newAPIError(100, fmt.Sprintf("Unsupported get request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation.", id))
	notFound.subcode = 33
	if !ok {
		if e := s.anyToken(r); e != nil {
			s.reject(w, e)
			return
		}
		s.reject(w, notFound)
		return
	}
	if e := s.authenticate(r, desc.PhoneNumberID); e != nil {
		s.reject(w, e)
		return
	}
	if p := r.URL.Query().Get("phone_number_id"); p != "" && p != desc.PhoneNumberID {
		s.reject(w, notFound)
		return
	}
	if desc.Unavailable {
		s.reject(w, newAPIError(131052, "Unable to download the media sent by the user."))
		return
	}
	sum, _ := base64.StdEncoding.DecodeString(desc.SHA256)
	writeJSON(w, http.StatusOK, map[string]any{
		"messaging_product": "whatsapp",
		"url":               s.downloadURL(r, id, time.Now().Add(ttl)),
		"mime_type":         desc.MIMEType,
		// Meta's answers state it in hex, its webhooks in base64.
		"sha256":    hex.EncodeToString(sum),
		"file_size": desc.Size,
		"id":        id,
	})
}

// anyToken checks that the request carries some configured token, for an
// id that names no media: Graph refuses a bad token before it looks.
func (s *Simulator) anyToken(r *http.Request) *apiError {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if tok != "" && t == tok {
			return nil
		}
	}
	e := newAPIError(190, "Invalid OAuth access token - Cannot parse access token")
	e.status = http.StatusUnauthorized
	return e
}

// downloadURL is a URL of this server, signed like Meta's: the media id,
// the expiry and an HMAC of both.
func (s *Simulator) downloadURL(r *http.Request, id string, expires time.Time) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ext := strconv.FormatInt(expires.UnixMilli(), 10)
	q := url.Values{"mid": {id}, "ext": {ext}, "hash": {s.media.sign(id, ext)}}
	return scheme + "://" + r.Host + downloadPath + "?" + q.Encode()
}

func (m *media) sign(id, ext string) string {
	mac := hmac.New(sha256.New, m.key)
	mac.Write([]byte(id + "\x00" + ext))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// serveDownload answers a download URL: 401 without the media's token, 404
// for a URL that is expired, forged or of unknown media.
func (s *Simulator) serveDownload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, ext := q.Get("mid"), q.Get("ext")
	m := s.media
	m.mu.Lock()
	m.counts.Downloads++
	b, ok := m.blobs[id]
	m.mu.Unlock()
	if !ok || !hmac.Equal([]byte(q.Get("hash")), []byte(m.sign(id, ext))) {
		http.NotFound(w, r)
		return
	}
	if e := s.authenticate(r, b.PhoneNumberID); e != nil {
		e.write(w)
		return
	}
	var fault *MediaFault
	m.mu.Lock()
	if len(m.faults) > 0 {
		f := m.faults[0]
		fault = &f
		if m.faults[0].Times--; m.faults[0].Times <= 0 {
			m.faults = m.faults[1:]
		}
		m.counts.DownloadFaults++
	}
	m.mu.Unlock()
	expiresMs, _ := strconv.ParseInt(ext, 10, 64)
	expired := time.Now().UnixMilli() > expiresMs
	if fault != nil && fault.Kind == MediaFaultDownloadStatus {
		status := fault.HTTPStatus
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "<html><body>%d %s</body></html>", status, http.StatusText(status))
		return
	}
	if expired || (fault != nil && fault.Kind == MediaFaultExpireURL) {
		m.mu.Lock()
		m.counts.ExpiredURLs++
		m.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", b.MIMEType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b.data)))
	_, _ = w.Write(b.data)
}

// serveUpload answers POST /{version}/{phone-number-id}/media: multipart
// with file, type and messaging_product=whatsapp; a missing field is 131008,
// a file of a type Meta does not support, larger than its type allows or
// unreadable is 131053 (Media upload error); see mediaout.go for the table.
func (s *Simulator) serveUpload(w http.ResponseWriter, r *http.Request, phoneID string) {
	if e := s.authenticate(r, phoneID); e != nil {
		s.reject(w, e)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload+1<<20)
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		s.reject(w, newAPIError(131053, "Unable to read the multipart upload: "+err.Error()))
		return
	}
	if r.FormValue("messaging_product") != "whatsapp" {
		s.reject(w, newAPIError(131008, "The parameter messaging_product is required and must be whatsapp."))
		return
	}
	typ := r.FormValue("type")
	if _, _, err := mime.ParseMediaType(typ); err != nil {
		s.reject(w, newAPIError(131008, "The parameter type is required: the file's MIME type."))
		return
	}
	f, _, err := r.FormFile("file")
	if err != nil {
		s.reject(w, newAPIError(131008, "The parameter file is required."))
		return
	}
	defer func() { _ = f.Close() }()
	limit, supported := uploadLimit(typ)
	if !supported {
		s.reject(w, newAPIError(131053, fmt.Sprintf("Media type %s is not supported.", typ)))
		return
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil || int64(len(data)) > limit {
		s.reject(w, newAPIError(131053, fmt.Sprintf("Media of type %s may be at most %d bytes.", typ, limit)))
		return
	}
	added := s.AddMedia(phoneID, typ, data)
	s.media.mu.Lock()
	s.media.counts.Uploads++
	s.media.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"id": added.ID})
}

// InboundMediaObject is the media object of an inbound message
// (messages[].image, .document, .audio, .video, .sticker), as Meta's
// webhook references show it (e.g. "Image messages webhook reference",
// developers.facebook.com/docs/whatsapp/cloud-api/webhooks/reference/messages/image).
type InboundMediaObject struct {
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
	MIMEType string `json:"mime_type"`
	SHA256   string `json:"sha256"`
	ID       string `json:"id"`
	// Voice is set on audio recorded as a voice note.
	Voice bool `json:"voice,omitempty"`
}

// attachMedia makes an inbound message naming added media (Inbound.MediaID)
// a media message of its Type, with the media's object as Part.
func (s *Simulator) attachMedia(msg *InboundMessage, in Inbound) error {
	if in.MediaID == "" {
		return nil
	}
	desc, _, ok := s.Media(in.MediaID)
	if !ok {
		return fmt.Errorf("whatsappsim: inbound media %q was never added", in.MediaID)
	}
	if desc.PhoneNumberID != in.PhoneNumberID {
		return fmt.Errorf("whatsappsim: media %q belongs to phone number %s, not %s", in.MediaID, desc.PhoneNumberID, in.PhoneNumberID)
	}
	obj := &InboundMediaObject{MIMEType: desc.MIMEType, SHA256: desc.SHA256, ID: desc.ID}
	switch in.Type {
	case "image", "video":
		obj.Caption = in.Caption
	case "document":
		obj.Caption, obj.Filename = in.Caption, in.Filename
	case "audio":
		obj.Voice = in.Voice
	case "sticker":
	default:
		return fmt.Errorf("whatsappsim: media type %q is not image, document, audio, video or sticker", in.Type)
	}
	msg.Type, msg.Part = in.Type, obj
	return nil
}

// mediaAdmin adds the media routes of the admin API.
func (s *Simulator) mediaAdmin(mux *http.ServeMux) {
	mux.HandleFunc("POST /_sim/media", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			PhoneNumberID string `json:"phone_number_id"`
			MIMEType      string `json:"mime_type"`
			Data          []byte `json:"data"`
		}
		if err := decodeAdmin(r, &in); err != nil {
			adminError(w, err)
			return
		}
		if in.PhoneNumberID == "" || in.MIMEType == "" {
			adminError(w, fmt.Errorf("phone_number_id and mime_type are required"))
			return
		}
		writeJSON(w, http.StatusOK, s.AddMedia(in.PhoneNumberID, in.MIMEType, in.Data))
	})
	mux.HandleFunc("POST /_sim/media/{id}/unavailable", func(w http.ResponseWriter, r *http.Request) {
		if err := s.SetMediaUnavailable(r.PathValue("id")); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sim/media/counts", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.MediaCounts())
	})
	mux.HandleFunc("POST /_sim/media/faults", func(w http.ResponseWriter, r *http.Request) {
		var f MediaFault
		if err := decodeAdmin(r, &f); err != nil {
			adminError(w, err)
			return
		}
		if err := s.AddMediaFault(f); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/media/url-ttl", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			TTL Duration `json:"ttl"`
		}
		if err := decodeAdmin(r, &in); err != nil {
			adminError(w, err)
			return
		}
		s.SetMediaURLTTL(time.Duration(in.TTL))
		w.WriteHeader(http.StatusNoContent)
	})
}
