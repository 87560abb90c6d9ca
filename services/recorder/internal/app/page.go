package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/visn/wadispatch/pkg/dispatch"
)

// Page sizes of the List methods (AIP-158): the default for 0, and the
// most one page holds, which a larger page_size is cut down to.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Cursor is where a page of a listing ended: the last state listed, by the
// listing's ordered value (zero when the listing orders by path only) and
// its message's path, which breaks ties.
type Cursor struct {
	At          time.Time
	MessagePath string
}

// Page is one page of states and where the next one starts; Next is nil
// on the last page.
type Page struct {
	States []*State
	Next   *Cursor
}

// pageSize is a request's page_size as the store takes it.
func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, invalid("page_size %d: want 0 (default %d) or more (at most %d per page)", n, DefaultPageSize, MaxPageSize)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return int(n), nil
}

// A page token is base64url of its JSON fields and the first bytes of
// their SHA-256. The checksum makes an altered or truncated token an error
// rather than another position; it is no signature (replicas share no key),
// and needs none: a token only says where to resume a listing the caller may
// read from its start anyway, and the filter is the request's, which the
// token must match.
type pageToken struct {
	// Version of the token's layout; another one is refused.
	Version int `json:"v"`
	// Filter is filterDigest of the listing the token continues.
	Filter string `json:"f"`
	// At is Cursor.At in Unix nanoseconds; 0 for none.
	At   int64  `json:"t,omitempty"`
	Path string `json:"p"`
}

const (
	pageTokenVersion = 1
	checksumLen      = 8
)

// notAToken starts the reason for refusing a page token that is not, intact,
// one this listing issued.
const notAToken = "not a page token of this listing"

// filterDigest names a listing and its filter without carrying the filter
// itself (a driver's number) in the token.
func filterDigest(filter string) string {
	sum := sha256.Sum256([]byte(filter))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// encodePageToken is the next_page_token for c in the listing filter names;
// "" when there is no next page.
func encodePageToken(filter string, c *Cursor) string {
	if c == nil {
		return ""
	}
	t := pageToken{Version: pageTokenVersion, Filter: filterDigest(filter), Path: c.MessagePath}
	if !c.At.IsZero() {
		t.At = c.At.UnixNano()
	}
	payload, _ := json.Marshal(t) // strings and integers always marshal
	sum := sha256.Sum256(payload)
	return base64.RawURLEncoding.EncodeToString(append(payload, sum[:checksumLen]...))
}

// decodePageToken is where a request's page_token resumes the listing
// filter names: nil for "" (the first page), an INVALID_ARGUMENT for a
// token that is damaged, altered, or from another listing or filter.
func decodePageToken(filter, token string) (*Cursor, error) {
	if token == "" {
		return nil, nil
	}
	c, err := parsePageToken(filter, token)
	if err != nil {
		return nil, invalid("page_token: %v; pass the next_page_token of the previous page unchanged, with the same filter, or no page_token to start again", err)
	}
	return c, nil
}

func parsePageToken(filter, token string) (*Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) <= checksumLen {
		return nil, errors.New(notAToken + " (malformed)")
	}
	payload, sum := raw[:len(raw)-checksumLen], raw[len(raw)-checksumLen:]
	if want := sha256.Sum256(payload); !bytes.Equal(sum, want[:checksumLen]) {
		return nil, errors.New(notAToken + " (damaged or altered)")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var t pageToken
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf(notAToken+" (malformed: %w)", err)
	}
	switch {
	case t.Version != pageTokenVersion:
		return nil, fmt.Errorf(notAToken+" (version %d; this recorder issues %d)", t.Version, pageTokenVersion)
	case t.Filter != filterDigest(filter):
		return nil, errors.New("issued for another method or filter than this request's")
	}
	if !resumable(t.Path) {
		return nil, errors.New(notAToken + " (no message path)")
	}
	c := &Cursor{MessagePath: t.Path}
	if t.At != 0 {
		c.At = time.Unix(0, t.At).UTC()
	}
	return c, nil
}

// resumable reports whether a token's path is a document a listing orders
// by: a message, or a lease's unmatched reply.
func resumable(p string) bool {
	if ref, err := dispatch.ParseMessagePath(p); err == nil && ref.Path() == p {
		return true
	}
	parts := strings.Split(p, "/")
	return len(parts) == 4 && dispatch.UnmatchedReplyPath(parts[1], parts[3]) == p &&
		dispatch.CheckDocumentID(parts[1]) == nil && dispatch.CheckDocumentID(parts[3]) == nil
}
