package main

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// BenchmarkSender measures tasks per second through one sender with its
// default concurrency (SENDER_MAX_IN_FLIGHT 64): Pub/Sub in, a claim through
// the recorder on the Firestore emulator, the WhatsApp call to the
// simulator, the result published and confirmed. The per-number rate limit
// is lifted so the sender itself is measured, not WhatsApp's 80/s.
//
// Memory figures are for the whole test process (sender, recorder, emulators,
// simulator): heap in use at the peak of the run, and that peak above the
// heap held before the sender started.
func BenchmarkSender(b *testing.B) {
	for _, latency := range []time.Duration{0, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%s", latency), func(b *testing.B) {
			opts := whatsappsim.Options{Latency: latency}
			s := newStack(b, opts, false)
			cfg := s.testSpec("sender-bench")
			cfg.LogLevel = "warning"
			cfg.MaxInFlight = 64
			cfg.PullStreams = 8 // pstest hands one stream a message per 10 ms
			cfg.RatePerNumber = 1e6
			cfg.RateBurst = 1000
			cfg.ClaimLease = 60 * time.Second
			cfg.WhatsAppTimeout = 10 * time.Second

			tasks := make([]*wadispatchv1.SendTask, b.N)
			bw := s.db.BulkWriter(context.Background())
			for i := range tasks {
				task := benchTask(i)
				tasks[i] = task
				if _, err := bw.Create(s.db.Doc(task.GetMessageDocId()), map[string]any{"message": task.GetMessage()}); err != nil {
					b.Fatal(err)
				}
			}
			bw.End()
			var results []*pubsub.PublishResult
			for _, task := range tasks {
				data, _ := proto.Marshal(task)
				results = append(results, s.tasks.Publish(context.Background(), &pubsub.Message{
					Data:        data,
					OrderingKey: sendtask.OrderingKey(task.GetDriverMobileNumber()),
					Attributes:  map[string]string{"messagePath": task.GetMessageDocId()},
				}))
			}
			for _, r := range results {
				if _, err := r.Get(context.Background()); err != nil {
					b.Fatal(err)
				}
			}

			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			baseline := ms.HeapInuse
			var peak atomic.Uint64
			sampling, stopSampling := context.WithCancel(context.Background())
			go func() {
				t := time.NewTicker(20 * time.Millisecond)
				defer t.Stop()
				var ms runtime.MemStats
				for {
					select {
					case <-sampling.Done():
						return
					case <-t.C:
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > peak.Load() {
							peak.Store(ms.HeapInuse)
						}
					}
				}
			}()

			b.ResetTimer()
			start := time.Now()
			stop := s.startSender(cfg)
			s.waitFor(10*time.Minute, "every result", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.resultCount >= b.N
			})
			elapsed := time.Since(start)
			b.StopTimer()
			stopSampling()
			if err := stop(); err != nil {
				b.Fatal(err)
			}
			if c := s.sim.Counts(); c.Accepted != b.N {
				b.Fatalf("simulator accepted %d of %d", c.Accepted, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "heap-peak-MB")
			b.ReportMetric(float64(peak.Load()-min(peak.Load(), baseline))/(1<<20), "heap-growth-MB")
		})
	}
}

func benchTask(i int) *wadispatchv1.SendTask {
	id := fmt.Sprintf("bench-%d", i)
	return &wadispatchv1.SendTask{
		LeaseId:            "l1",
		EnquiryId:          "e1",
		MessageDocId:       "leasecompany/l1/enquiries/e1/whatsapp/messages/chatMessages/" + id,
		MessageId:          id,
		DriverMobileNumber: driver(10000 + i),
		Type:               wadispatchv1.MessageType_MESSAGE_TYPE_TEMPLATE,
		TemplateType:       "vehicle_ready",
		Payload:            map[string]string{"driver_name": "Sam"},
		LeaseWhatsappDetails: &wadispatchv1.LeaseWhatsappDetails{
			PhoneNumberId: phoneID, ApiVersion: "v21.0", TokenRef: "lease-l1", TemplateLanguage: "en_GB",
		},
		CreatedBy: "user-1",
		EventId:   "event-" + id,
	}
}
