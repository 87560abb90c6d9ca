package sendtask

import (
	"testing"

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
