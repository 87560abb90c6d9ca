package sendtask

import (
	"errors"
	"testing"

	"github.com/visn/wadispatch/pkg/whatsapp"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestPreviewURLOnlyWithALink(t *testing.T) {
	task := &wadispatchv1.SendTask{
		DriverMobileNumber:   "+447700900123",
		Type:                 wadispatchv1.MessageType_MESSAGE_TYPE_TEXT,
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{PhoneNumberId: "100000000000001"},
	}
	task.Message = "Track it at https://example.com/t/1"
	_, m, err := Message(task, "v21.0")
	if err != nil || !m.Text.PreviewURL {
		t.Errorf("preview_url %v, err %v; want true for a body with a link", m.Text, err)
	}
}

func TestMediaMessage(t *testing.T) {
	base := func(typ wadispatchv1.MessageType, caption string, m *wadispatchv1.OutboundMedia) *wadispatchv1.SendTask {
		return &wadispatchv1.SendTask{
			DriverMobileNumber: "+447700900123", Type: typ, Message: caption, Media: m,
			LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{PhoneNumberId: "100000000000001"},
		}
	}
	_, m, err := Message(base(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "dent", &wadispatchv1.OutboundMedia{Link: "https://cdn.example/a.png", MimeType: "image/png"}), "v21.0")
	if err != nil || m.Media.Link != "https://cdn.example/a.png" || m.Media.Caption != "dent" || m.Validate() != nil {
		t.Errorf("link image: %+v, %v", m.Media, err)
	}
	_, m, err = Message(base(wadispatchv1.MessageType_MESSAGE_TYPE_DOCUMENT, "", &wadispatchv1.OutboundMedia{Uri: "gs://out/a.pdf", Filename: "a.pdf"}), "v21.0")
	if err != nil || m.Media.ID != "" || m.Media.Filename != "a.pdf" {
		t.Errorf("object document: %+v, %v", m.Media, err)
	}
	for name, task := range map[string]*wadispatchv1.SendTask{
		"media":          base(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", nil),
		"media.mimeType": base(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", &wadispatchv1.OutboundMedia{Link: "https://cdn.example/a.png"}),
		"media.uri":      base(wadispatchv1.MessageType_MESSAGE_TYPE_IMAGE, "", &wadispatchv1.OutboundMedia{Uri: "gs://bucket-only"}),
		"message":        base(wadispatchv1.MessageType_MESSAGE_TYPE_AUDIO, "caption", &wadispatchv1.OutboundMedia{Uri: "gs://b/a.ogg"}),
	} {
		_, _, err := Message(task, "v21.0")
		var fe *whatsapp.FieldError
		if !errors.As(err, &fe) || fe.Field != name {
			t.Errorf("%s: err %v, want a field error on it", name, err)
		}
	}
}
