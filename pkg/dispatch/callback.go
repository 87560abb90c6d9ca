package dispatch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// MaxCallbackLength is Meta's limit on biz_opaque_callback_data (512
// characters); bytes are counted, which is never more characters.
const MaxCallbackLength = 512

// callbackVersion starts every callback this code writes, so that a later
// format can be told apart and a foreign value is refused at once.
const callbackVersion = "wd1"

// Callback is what a send carries in biz_opaque_callback_data, which
// WhatsApp echoes in the message's sent, delivered and read status
// webhooks: the claim the call was made under and the message it sent.
// With it a status finds its message even when no result recorded the
// wamid (the sender died after calling WhatsApp), and the recorder can
// tell whether the call was made under the message's current claim.
type Callback struct {
	ClaimID string
	Ref     MessageRef
}

// Encode is the callback as sent: "wd1/{claimId}/{leaseId}/{enquiryId}/{messageId}".
// Document ids never hold a slash, so the slash separates unambiguously;
// the value holds ids only, never a phone number. ok is false when the
// callback cannot be carried (over MaxCallbackLength with very long ids,
// or not a claim this code makes): the message is then sent without one.
func (c Callback) Encode() (string, bool) {
	s := callbackVersion + "/" + c.ClaimID + "/" + c.Ref.LeaseID + "/" + c.Ref.EnquiryID + "/" + c.Ref.MessageID
	if _, err := ParseCallback(s); err != nil {
		return "", false
	}
	return s, true
}

// ParseCallback reads a callback as Encode writes it. The value comes back
// in a webhook from outside, so it is read strictly: its length bounded,
// its claim a canonical UUID (the only claim ids the recorder makes), each
// id a valid document id. An error means it is not ours and is ignored.
func ParseCallback(s string) (Callback, error) {
	if s == "" {
		return Callback{}, errors.New("no callback data")
	}
	if len(s) > MaxCallbackLength {
		return Callback{}, fmt.Errorf("callback data of %d bytes, over %d", len(s), MaxCallbackLength)
	}
	p := strings.Split(s, "/")
	if len(p) != 5 || p[0] != callbackVersion {
		return Callback{}, fmt.Errorf("callback data %q is not %s/{claimId}/{leaseId}/{enquiryId}/{messageId}", Clip(s, 40), callbackVersion)
	}
	if u, err := uuid.Parse(p[1]); err != nil || u.String() != p[1] {
		return Callback{}, fmt.Errorf("callback claim %q is not a canonical UUID", Clip(p[1], 40))
	}
	for i, name := range []string{"lease", "enquiry", "message"} {
		if err := CheckDocumentID(p[2+i]); err != nil {
			return Callback{}, fmt.Errorf("callback %s id %w", name, err)
		}
	}
	ref := MessageRef{LeaseID: p[2], EnquiryID: p[3], MessageID: p[4]}
	// The path must read back as the same message, as every other
	// service reads message paths.
	if back, err := ParseMessagePath(ref.Path()); err != nil || back != ref {
		return Callback{}, errors.New("callback ids do not make a message path")
	}
	return Callback{ClaimID: p[1], Ref: ref}, nil
}
