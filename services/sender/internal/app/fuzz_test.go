package app

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Any bytes on whatsapp-messages: Process never panics; a nacked delivery
// is poison and reached neither the recorder nor WhatsApp (so the
// subscription's dead-letter policy takes it intact); an acked one ends in
// exactly one published result, after at most one claim.
func FuzzProcess(f *testing.F) {
	valid, err := proto.Marshal(textTask())
	if err != nil {
		f.Fatal(err)
	}
	tpl := textTask()
	tpl.Type = wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE
	tpl.TemplateType = "vehicle_ready"
	tpl.Payload = map[string]string{"driver_name": "Sam", "": "x"}
	template, err := proto.Marshal(tpl)
	if err != nil {
		f.Fatal(err)
	}
	noToken := textTask()
	noToken.LeaseWhatsappDetails.TokenRef = "missing"
	missing, err := proto.Marshal(noToken)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{valid, template, missing, nil, {0xff, 0xff, 0xff}, []byte("garbage"), valid[:len(valid)/2], append(valid[:len(valid):len(valid)], 0x0a)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness(t, nil)
		v := h.proc.Process(context.Background(), consume.Message{Data: data, DeliveryAttempt: 1})
		results := len(h.pub.on(topology.ResultsTopic))
		if !v.Ack {
			if v.Reason != string(OutcomePoison) || len(h.claims) != 0 || h.calls() != 0 || results != 0 {
				t.Fatalf("nacked with outcome %s after %d claims, %d WhatsApp calls, %d results", v.Reason, len(h.claims), h.calls(), results)
			}
			return
		}
		if results != 1 || len(h.claims) != 1 {
			t.Fatalf("acked (%s) with %d results published and %d claims, want 1 and 1", v.Reason, results, len(h.claims))
		}
	})
}
