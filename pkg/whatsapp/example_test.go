package whatsapp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

// The three outcomes of Send, against the simulator.
func ExampleClient_Send() {
	sim, _ := whatsappsim.New(whatsappsim.Options{PhoneNumbers: map[string]string{"106540352242922": "token"}})
	defer sim.Close()
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()

	client, _ := whatsapp.NewClient(whatsapp.Config{BaseURL: srv.URL})
	from := whatsapp.Sender{PhoneNumberID: "106540352242922", APIVersion: "v21.0", Token: whatsapp.NewToken("token")}
	msg, err := whatsapp.TemplateMessage("447700900123", "eta_update", "en_GB", map[string]string{"eta": "15"})
	if err != nil {
		fmt.Println("invalid task:", err)
		return
	}
	sent, err := client.Send(context.Background(), from, msg)
	var werr *whatsapp.Error
	switch {
	case err == nil:
		fmt.Println("sent:", strings.HasPrefix(sent.MessageID, "wamid."), sent.MessageStatus)
	case errors.Is(err, whatsapp.ErrOutcomeUnknown):
		fmt.Println("maybe sent: record UNKNOWN, do not resend blindly")
	case errors.As(err, &werr) && werr.Retryable():
		fmt.Println("retry after", werr.RetryAfter(), "reason", werr.Reason)
	default:
		fmt.Println("failed for good:", werr.Reason)
	}
	// Output: sent: true accepted
}
