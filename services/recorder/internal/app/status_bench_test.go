package app_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/testinfra/firestoretest"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// BenchmarkStatusTopic handles whatsapp-status-events messages as the
// consumer does, 8 at a time, on the Firestore emulator: "delivered" a
// DELIVERED webhook per sent message, "reply" a driver's reply quoting a
// sent message (reply document, window on two ancillary records).
//
// Reported: events/s, Firestore RPCs per event (both databases), and
// events not acked (must be 0).
func BenchmarkStatusTopic(b *testing.B) {
	b.Run("delivered", func(b *testing.B) {
		benchmarkStatusTopic(b, func(i int, wamid string) proto.Message {
			return statusEvent(wamid, wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED, time.Now())
		})
	})
	b.Run("reply", func(b *testing.B) {
		benchmarkStatusTopic(b, func(i int, wamid string) proto.Message {
			// One driver per message: replies of one driver would contend
			// on their window document, which is not what is measured here.
			return inboundMsg(fmt.Sprintf("wamid.IN%d", i), fmt.Sprintf("+4479111%05d", i), wamid, time.Now())
		})
	})
}

func benchmarkStatusTopic(b *testing.B, event func(i int, wamid string) proto.Message) {
	counter := &rpcCounter{calls: map[string]int{}}
	count := func(fs *firestoretest.Emulator) []option.ClientOption {
		return append(fs.ClientOptions(), counter.interceptors()...)
	}
	e := newEnv(b, envOptions{ancillary: count, defaultDB: count})
	ctx := context.Background()
	payloads := make([][]byte, b.N)
	schemas := make([]string, b.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range b.N {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			id := fmt.Sprintf("m%d", i)
			task := e.newMessage(b, id)
			e.record(b, sent(task, e.claim(b, task, 0).GetClaimId(), "wamid."+id))
			m := event(i, "wamid."+id)
			data, err := proto.Marshal(m)
			if err != nil {
				b.Error(err)
			}
			payloads[i], schemas[i] = data, string(proto.MessageName(m))
		})
	}
	wg.Wait()
	counter.reset()

	var next, nacked atomic.Int64
	b.SetParallelism(4) // × GOMAXPROCS handlers at once
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if v := e.svc.HandleStatusTopic(ctx, consume.Message{Data: payloads[i], Attributes: map[string]string{"schema": schemas[i]}}); !v.Ack {
				nacked.Add(1)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	calls, total := counter.snapshot()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(total)/float64(b.N), "firestore-rpcs/event")
	b.ReportMetric(float64(nacked.Load()), "not-acked")
	b.Logf("N=%d Firestore RPCs by method: %v", b.N, calls)
	if nacked.Load() != 0 {
		b.Errorf("%d events not acked", nacked.Load())
	}
}
