package app

import (
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

// withCallback is m carrying, in biz_opaque_callback_data, the claim its
// call is made under and its message: WhatsApp echoes it in the status
// webhooks, so that the recorder can resolve a send whose result never
// came (UNKNOWN) from WhatsApp's word. A claim taken again after a
// released wait is a new claim, so this is decided per call. A message
// whose ids are too long for the field goes without it, as before.
func withCallback(m whatsapp.Message, c *heldClaim) whatsapp.Message {
	ref, err := dispatch.ParseMessagePath(c.task.GetMessageDocId())
	if err != nil {
		return m
	}
	m.CallbackData, _ = dispatch.Callback{ClaimID: c.id, Ref: ref}.Encode()
	return m
}
