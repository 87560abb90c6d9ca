package webhook

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
)

// batchBody is a webhook carrying n statuses, as Meta batches them under
// load.
func batchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA%06d","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234","conversation":{"id":"c","origin":{"type":"utility"}},"pricing":{"billable":true,"pricing_model":"PMP","category":"utility"}}`, i)
	}
	b.WriteString(`]},"field":"messages"}]}]}`)
	return []byte(b.String())
}

// What ingest spends per webhook before publishing: the signature check
// and the parse.
func BenchmarkVerifyAndParse(b *testing.B) {
	secret := []byte("app-secret")
	for _, n := range []int{1, 100} {
		body := batchBody(n)
		sig := whatsappsim.Sign(string(secret), body)
		b.Run(fmt.Sprintf("statuses=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if err := VerifySignature(secret, body, sig); err != nil {
					b.Fatal(err)
				}
				p, err := Parse(body)
				if err != nil || len(p.Statuses) != n {
					b.Fatalf("%d statuses, %v", len(p.Statuses), err)
				}
			}
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "statuses/s")
			b.ReportMetric(float64(len(body)), "bytes/webhook")
		})
	}
}
