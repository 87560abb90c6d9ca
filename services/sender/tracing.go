package main

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// whatsAppHTTPClient is the WhatsApp client's HTTP client with a client span
// per call, in the trace of the task being sent. It keeps maxIdle
// connections to Meta open, as the whatsapp client's own would.
func whatsAppHTTPClient(maxIdle int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxIdle
	t.MaxIdleConnsPerHost = maxIdle
	return &http.Client{Transport: otelhttp.NewTransport(t)}
}
