package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/visn/wadispatch/pkg/firestoreevent/eventarctest"
)

// BenchmarkIngest posts Eventarc-shaped binary protobuf events to the real
// handler on the ops server, backed by the Firestore emulator and pstest, and
// reports events handled per second. Allocations per event count the whole
// process: the handler, the Firestore and Pub/Sub clients, and the in-process
// emulators serving them. Eventarc pushes many events at once, so 32 requests
// per CPU are in flight.
func BenchmarkIngest(b *testing.B) {
	for _, bc := range []struct {
		name    string
		enquiry bool
	}{
		{"lease-cached", false},
		{"with-enquiry-read", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, nil)
			e.seedLeaseAndEnquiry(b)
			// 200 stored messages to 200 drivers, so ordering keys spread
			// as in production; each delivery is a new event for one of them.
			var stored []eventarctest.Event
			for i := range 200 {
				msg := textMessage()
				msg["driverMobileNumber"] = fmt.Sprintf("+4479111%05d", i)
				if !bc.enquiry {
					msg["accountId"], msg["serviceUnitId"] = "acc", "su"
				}
				stored = append(stored, e.chatEvent(b, "", strings.Replace(msgPath, "/m1", fmt.Sprintf("/m%d", i), 1), msg))
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			// Acknowledge the tasks as they come, as the sender would, so
			// pstest does not rescan a growing backlog.
			drained := make(chan struct{})
			stopDrain := make(chan struct{})
			go func() {
				defer close(drained)
				for {
					select {
					case <-e.tasks:
					case <-stopDrain:
						return
					}
				}
			}()
			defer func() { close(stopDrain); <-drained }()
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					ev := stored[n%200]
					ev.ID = fmt.Sprintf("bench-%d", n)
					req, _ := http.NewRequest(http.MethodPost, e.url, bytes.NewReader(ev.BinaryBody()))
					req.Header = ev.BinaryHeaders()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if got := e.metric(b, "wadispatch_ingest_tasks_published_total"); int(got) != b.N {
				b.Fatalf("published %v tasks for %d events", got, b.N)
			}
		})
	}
}
