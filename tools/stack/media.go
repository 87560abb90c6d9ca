package stack

import (
	"context"
	"net/http"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// AddMedia gives the simulator media of the stack's business number, as
// a driver would send it; an Inbound's media_id names it.
func (s *Stack) AddMedia(ctx context.Context, mimeType string, data []byte) (whatsappsim.AddedMedia, error) {
	var out whatsappsim.AddedMedia
	err := s.simulator(ctx, http.MethodPost, "/_sim/media", map[string]any{
		"phone_number_id": s.opts.PhoneNumberID, "mime_type": mimeType, "data": data,
	}, &out)
	return out, err
}

// PublishMediaFetch publishes a MediaFetch on whatsapp-media as the
// recorder does for a driver's reply carrying media, with the stack's
// lease details.
func (s *Stack) PublishMediaFetch(ctx context.Context, f *wadispatchv1.MediaFetch) error {
	f.LeaseWhatsappDetails = &wadispatchv1.LeaseWhatsappDetails{PhoneNumberId: s.opts.PhoneNumberID, TokenRef: s.TokenRef}
	data, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	client, err := pubsubemu.NewClient(ctx, s.PubSubAddr, s.opts.Project)
	if err != nil {
		return err
	}
	defer client.Close()
	pub := client.Publisher(topology.MediaTopic)
	defer pub.Stop()
	_, err = pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: map[string]string{
		"messagePath": f.GetMessageDocId(), "schema": string(proto.MessageName(f)),
	}}).Get(ctx)
	return err
}
