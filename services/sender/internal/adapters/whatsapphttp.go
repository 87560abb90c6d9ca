package adapters

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// WhatsAppHTTPClient is the WhatsApp client's HTTP client with a client span
// per call, in the trace of the task being sent. It keeps maxIdle
// connections to Meta open, as the whatsapp client's own would.
func WhatsAppHTTPClient(maxIdle int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxIdle
	t.MaxIdleConnsPerHost = maxIdle
	return &http.Client{Transport: otelhttp.NewTransport(t)}
}
