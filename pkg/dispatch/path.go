// Package dispatch holds the rules of the send flow that every service
// shares: where a chat message lives and how its status may move.
package dispatch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MessagePattern is the Firestore path of a message the V-Customer sends.
const MessagePattern = "leasecompany/{leaseId}/enquiries/{enquiryId}/whatsapp/messages/chatMessages/{messageId}"

// MessageRef identifies a chatMessages document.
type MessageRef struct {
	LeaseID   string
	EnquiryID string
	MessageID string
}

// ParseMessagePath reads a document path (relative, like
// "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/m1", or a full
// resource name ending in ".../documents/leasecompany/...").
func ParseMessagePath(path string) (MessageRef, error) {
	rel := path
	if i := strings.Index(rel, "/documents/"); i >= 0 {
		rel = rel[i+len("/documents/"):]
	}
	rel = strings.TrimPrefix(rel, "documents/")
	p := strings.Split(rel, "/")
	if len(p) != 8 || p[0] != "leasecompany" || p[2] != "enquiries" || p[4] != "whatsapp" ||
		p[5] != "messages" || p[6] != "chatMessages" || p[1] == "" || p[3] == "" || p[7] == "" {
		return MessageRef{}, fmt.Errorf("path %q does not match %s", Clip(path, 200), MessagePattern)
	}
	return MessageRef{LeaseID: p[1], EnquiryID: p[3], MessageID: p[7]}, nil
}

// Path is the document path relative to the database root.
func (r MessageRef) Path() string {
	return "leasecompany/" + r.LeaseID + "/enquiries/" + r.EnquiryID + "/whatsapp/messages/chatMessages/" + r.MessageID
}

// EnquiryPath is the path of the message's enquiry document.
func (r MessageRef) EnquiryPath() string {
	return "leasecompany/" + r.LeaseID + "/enquiries/" + r.EnquiryID
}

// LeasePath is the path of the lease document holding its WhatsApp configuration.
func (r MessageRef) LeasePath() string { return "leasecompany/" + r.LeaseID }

// AncillaryPath is the ancillary database's record of the conversation
// between a driver and an enquiry.
func AncillaryPath(driverPhoneNumber, enquiryID string) string {
	return "whatsapp/" + driverPhoneNumber + "/enquiryMessages/" + enquiryID
}

// CheckDocumentID reports why id cannot be a Firestore document id
// (https://firebase.google.com/docs/firestore/quotas#collections_documents_and_fields):
// ids that name a document the pipeline writes, such as the sending user's
// metrics document, must be refused before anything is sent.
func CheckDocumentID(id string) error {
	switch {
	case id == "":
		return errors.New("is empty")
	case len(id) > 1500:
		return fmt.Errorf("is %d bytes, over Firestore's 1500", len(id))
	case strings.Contains(id, "/"):
		return errors.New("contains a slash")
	case id == "." || id == "..":
		return fmt.Errorf("is %q", id)
	case strings.HasPrefix(id, "__") && strings.HasSuffix(id, "__"):
		return errors.New("matches __.*__, which Firestore reserves")
	case !utf8.ValidString(id):
		return errors.New("is not valid UTF-8")
	}
	return nil
}

// IndexCollection holds the wamid index, one document per wamid.
const IndexCollection = "whatsappMessageIndex"

// IndexPath is the wamid index document of a wamid: its entry (the
// message), created in the commit that records the send, and the status
// webhooks of the wamid kept until that commit.
func IndexPath(wamid string) string {
	return IndexCollection + "/" + wamidDocID(wamid)
}

// wamidDocID is a wamid as a document id. A wamid is base64 and may hold
// "/", which would split the path; escaping keeps one document per wamid.
func wamidDocID(wamid string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(wamid)
}

// UnmatchedReplyPath is where a driver's part that no enquiry of the lease
// takes is kept, for operators: by lease, so it is never shown in another
// lease's enquiries.
func UnmatchedReplyPath(leaseID, docID string) string {
	return "leasecompany/" + leaseID + "/whatsappUnmatchedReplies/" + docID
}

// ReplyRef names a driver's reply document: one in an enquiry's
// chatMessages, or one kept unmatched (EnquiryID empty).
type ReplyRef struct {
	LeaseID, EnquiryID, DocID string
}

// ParseReplyPath parses either place a driver's reply is kept.
func ParseReplyPath(path string) (ReplyRef, error) {
	if ref, err := ParseMessagePath(path); err == nil {
		return ReplyRef{LeaseID: ref.LeaseID, EnquiryID: ref.EnquiryID, DocID: ref.MessageID}, nil
	}
	p := strings.Split(path, "/")
	if len(p) != 4 || p[0] != "leasecompany" || p[2] != "whatsappUnmatchedReplies" || p[1] == "" || p[3] == "" {
		return ReplyRef{}, fmt.Errorf("path %q is neither a chatMessages document (%s) nor an unmatched reply", Clip(path, 200), MessagePattern)
	}
	return ReplyRef{LeaseID: p[1], DocID: p[3]}, nil
}

// Path is the reply document's path.
func (r ReplyRef) Path() string {
	if r.EnquiryID == "" {
		return UnmatchedReplyPath(r.LeaseID, r.DocID)
	}
	return MessageRef{LeaseID: r.LeaseID, EnquiryID: r.EnquiryID, MessageID: r.DocID}.Path()
}

// MediaFolder is where the reply's media is stored in Cloud Storage: by
// lease and enquiry, or beside the lease's unmatched replies.
func (r ReplyRef) MediaFolder() string {
	if r.EnquiryID == "" {
		return "leasecompany/" + r.LeaseID + "/whatsappUnmatchedReplies/media"
	}
	return MessageRef{LeaseID: r.LeaseID, EnquiryID: r.EnquiryID}.EnquiryPath() + "/media"
}

// Fields of a driver's record that ingest reads before a send; the
// recorder writes them.
const (
	DriverOptedOut     = "optedOut"
	DriverOptOutSource = "optOutSource"
	DriverChangedTo    = "changedTo"
)

// DriverRecordPath is a driver's record of a lease: their stop or resume,
// whether WhatsApp can reach them, a changed number. Ingest reads it before
// a send; the recorder writes it.
func DriverRecordPath(leaseID, driverE164 string) string {
	return "leasecompany/" + leaseID + "/whatsappDrivers/" + driverE164
}

// InboundIndexPath is the inbound index entry of a driver's wamid: the
// document it became, for the reactions, edits and revokes that name it.
func InboundIndexPath(wamid string) string {
	return "whatsappInboundIndex/" + wamidDocID(wamid)
}

// DriverReplyDocID is the chatMessages document id of a driver's reply:
// derived from the inbound wamid, so a redelivered webhook finds the
// document it created instead of writing a second one.
func DriverReplyDocID(wamid string) string {
	sum := sha256.Sum256([]byte(wamid))
	return "wa-in-" + hex.EncodeToString(sum[:16])
}

// Fields of a template registry entry (TemplatePath) and of a name's entry
// (TemplateNamePath); the recorder writes them, ingest reads them before
// a template send.
const (
	TemplateName       = "name"
	TemplateLanguage   = "language"
	TemplateCategory   = "category"
	TemplateStatus     = "status"
	TemplateParameters = "parameters"
	TemplateComponents = "components"
	TemplateUpdatedAt  = "updatedAt"
	// TemplateLanguages, on a name's entry: the languages the registry
	// holds the name in.
	TemplateLanguages = "languages"
)

// TemplateDocID is the id of a template's registry entry in one language:
// {name}__{language}.
func TemplateDocID(name, language string) string { return name + "__" + language }

// TemplatePath is a lease's registry entry of a template in one language
// (WhatsApp's message_templates of the lease's business account).
func TemplatePath(leaseID, name, language string) string {
	return "leasecompany/" + leaseID + "/whatsappTemplates/" + TemplateDocID(name, language)
}

// TemplateNamePath is the registry's entry of a template name: the
// languages it holds the name in, so that a send in a language the name
// lacks is told from a name the registry has not seen.
func TemplateNamePath(leaseID, name string) string {
	return "leasecompany/" + leaseID + "/whatsappTemplateNames/" + name
}
