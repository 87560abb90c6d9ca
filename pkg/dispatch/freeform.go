package dispatch

import wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"

// FreeForm reports whether WhatsApp delivers a message of type t only inside
// the driver's 24-hour customer-service window (text, interactive and media ones,
// which it refuses with 131047 outside it); a template may open a
// conversation at any time. The recorder reads the window for these, and the
// sender fails them outside it without calling WhatsApp.
func FreeForm(t wadispatchv1.MessageType) bool {
	switch t {
	case wadispatchv1.MessageType_MESSAGE_TYPE_TEXT, wadispatchv1.MessageType_MESSAGE_TYPE_INTERACTIVE,
		wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT,
		wadispatchv1.MessageType_MESSAGE_TYPE_VIDEO, wadispatchv1.MessageType_MESSAGE_TYPE_AUDIO:
		return true
	}
	return false
}
