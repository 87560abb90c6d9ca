package stack

import (
	"context"
	"net/http"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// Storage is a client of the stack's Cloud Storage emulator, as the
// services' official client is when STORAGE_EMULATOR_HOST names it, without
// changing this process's environment.
func (s *Stack) Storage(ctx context.Context) (*storage.Client, error) {
	return storage.NewClient(ctx, option.WithEndpoint("http://"+s.StorageAddr+"/storage/v1/"), option.WithoutAuthentication(), storage.WithJSONReads())
}

// AddMedia gives the simulator media of the stack's business number, as
// a driver would send it; ReplyMedia sends it.
func (s *Stack) AddMedia(ctx context.Context, mimeType string, data []byte) (whatsappsim.AddedMedia, error) {
	var out whatsappsim.AddedMedia
	err := s.simulator(ctx, http.MethodPost, "/_sim/media", map[string]any{
		"phone_number_id": s.opts.PhoneNumberID, "mime_type": mimeType, "data": data,
	}, &out)
	return out, err
}

// ReplyMedia has driver (E.164) send added media as a message of type typ
// (image, document, audio, video, sticker) with caption, as WhatsApp
// delivers it; it returns the inbound message's wamid.
func (s *Stack) ReplyMedia(ctx context.Context, driver, typ, mediaID, caption string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := s.simulator(ctx, http.MethodPost, "/_sim/inbound", whatsappsim.Inbound{
		PhoneNumberID: s.opts.PhoneNumberID, From: strings.TrimPrefix(driver, "+"), Type: typ, MediaID: mediaID, Caption: caption,
	}, &out)
	return out.ID, err
}

// SimulatorMediaCounts are the simulator's media counters (URL requests,
// downloads, uploads).
func (s *Stack) SimulatorMediaCounts(ctx context.Context) (whatsappsim.MediaCounts, error) {
	var c whatsappsim.MediaCounts
	err := s.simulator(ctx, http.MethodGet, "/_sim/media/counts", nil, &c)
	return c, err
}
