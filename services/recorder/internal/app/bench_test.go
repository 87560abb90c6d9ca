package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/option"
	"google.golang.org/grpc"

	"github.com/visn/wadispatch/pkg/testinfra/firestoretest"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// rpcCounter counts the Firestore RPCs a client makes, by method.
type rpcCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *rpcCounter) add(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method[strings.LastIndex(method, "/")+1:]]++
}

func (c *rpcCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = map[string]int{}
}

func (c *rpcCounter) snapshot() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	out := map[string]int{}
	for m, n := range c.calls {
		out[m] = n
		total += n
	}
	return out, total
}

// interceptors count every RPC of a client, as option.ClientOptions.
func (c *rpcCounter) interceptors() []option.ClientOption {
	return []option.ClientOption{
		option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		})),
		option.WithGRPCDialOption(grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.add(method)
			return streamer(ctx, desc, cc, method, opts...)
		})),
	}
}

// BenchmarkRecordResult records SENT results of claimed messages over the
// recorder's gRPC API, concurrently, on the Firestore emulator. "one-user"
// sends every result from the same createdBy, so every commit increments
// the same metrics document; "many-users" spreads them over 100 users.
//
// Reported: results/s, Firestore RPCs per result (both databases),
// commit retries per result, and errors that reached the caller (must be 0).
//
// "one-user-contended" answers every 3rd commit on the metrics document
// with ABORTED, as Firestore does beyond the write rate one document
// sustains (the emulator does not model that limit): it measures what the
// recorder's retries cost and checks none of those aborts reaches a caller.
func BenchmarkRecordResult(b *testing.B) {
	b.Run("one-user", func(b *testing.B) { benchmarkRecord(b, 1, 0) })
	b.Run("many-users", func(b *testing.B) { benchmarkRecord(b, 100, 0) })
	b.Run("one-user-contended", func(b *testing.B) { benchmarkRecord(b, 1, 3) })
}

func benchmarkRecord(b *testing.B, users, abortEvery int) {
	counter := &rpcCounter{calls: map[string]int{}}
	var inject []option.ClientOption
	if abortEvery > 0 {
		inject = (&contention{every: abortEvery}).interceptors()
	}
	e := newEnv(b, envOptions{
		ancillary: func(fs *firestoretest.Emulator) []option.ClientOption {
			return append(fs.ClientOptions(), counter.interceptors()...)
		},
		defaultDB: func(fs *firestoretest.Emulator) []option.ClientOption {
			// Counted outside the injected aborts: an aborted commit is an RPC.
			return append(append(fs.ClientOptions(), counter.interceptors()...), inject...)
		},
	})
	ctx := context.Background()
	results := make([]*wadispatchv1.SendResult, b.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range b.N {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			id := fmt.Sprintf("m%d", i)
			task := e.newMessage(b, id)
			task.CreatedBy = fmt.Sprintf("u%d", i%users)
			results[i] = sentUnder(task, e.claim(b, task, 0), "wamid."+id)
		})
	}
	wg.Wait()
	counter.reset()
	retriesBefore := commitRetries(b, e)

	var next, failures atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := results[next.Add(1)-1]
			if _, err := e.svc.RecordResult(ctx, &wadispatchv1.RecordResultRequest{Result: r}); err != nil {
				failures.Add(1)
				b.Errorf("RecordResult: %v", err)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()

	calls, total := counter.snapshot()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "results/s")
	b.ReportMetric(float64(total)/float64(b.N), "firestore-rpcs/result")
	b.ReportMetric((commitRetries(b, e)-retriesBefore)/float64(b.N), "commit-retries/result")
	b.ReportMetric(float64(failures.Load()), "errors-to-caller")
	b.Logf("N=%d users=%d Firestore RPCs by method: %v", b.N, users, calls)

	// Every result counted exactly once.
	e.fold(b)
	sum := int64(0)
	for u := range users {
		if v, ok := doc(b, e.db, fmt.Sprintf("leasecompany/l1/performanceMetrics/u%d", u))["numberOfWhatsappMessagesSent"].(int64); ok {
			sum += v
		}
	}
	if sum != int64(b.N) {
		b.Errorf("counters sum to %d, want %d", sum, b.N)
	}
}

func commitRetries(t testing.TB, e *env) float64 {
	return metricValue(t, e.reg, "wadispatch_recorder_firestore_commit_retries_total", nil)
}
