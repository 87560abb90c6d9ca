package firestoreemu_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
)

func BenchmarkSingleDocumentCommit(b *testing.B) {
	ctx := context.Background()
	srv := newServer(b)
	c := newClient(b, srv, "(default)")
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Doc(fmt.Sprintf("bench/d%d", i)).Set(ctx, map[string]any{"n": i, "s": "payload"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
}

func BenchmarkSingleDocumentCommitParallel(b *testing.B) {
	ctx := context.Background()
	srv := newServer(b)
	c := newClient(b, srv, "(default)")
	var mu sync.Mutex
	next := 0
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			next++
			i := next
			mu.Unlock()
			if _, err := c.Doc(fmt.Sprintf("bench/d%d", i)).Set(ctx, map[string]any{"n": i}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
}

// BenchmarkTransactionalIncrement20Way runs 20 goroutines incrementing one
// counter through read-modify-write transactions.
func BenchmarkTransactionalIncrement20Way(b *testing.B) {
	ctx := context.Background()
	srv := newServer(b)
	c := newClient(b, srv, "(default)")
	doc := c.Doc("bench/counter")
	if _, err := doc.Set(ctx, map[string]any{"n": 0}); err != nil {
		b.Fatal(err)
	}
	const workers = 20
	total := 0
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
					s, err := tx.Get(doc)
					if err != nil {
						return err
					}
					n, _ := s.DataAt("n")
					return tx.Set(doc, map[string]any{"n": n.(int64) + 1})
				})
				if err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		total += workers
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "increments/s")
	b.StopTimer()
	s, err := doc.Get(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if n, _ := s.DataAt("n"); n != int64(total) {
		b.Fatalf("counter %v, want %d", n, total)
	}
}

// BenchmarkQuery10kDocuments measures query latency over 10,000 documents:
// an equality filter with a limit, a range with ordering, and a collection
// group query.
func BenchmarkQuery10kDocuments(b *testing.B) {
	ctx := context.Background()
	srv := newServer(b)
	c := newClient(b, srv, "(default)")
	// Batches of 500 writes (Firestore's commit limit) seed faster than the
	// BulkWriter, whose rate limiter ramps up slowly.
	//lint:ignore SA1019 batches seed faster than the BulkWriter.
	batch := c.Batch()
	for i := range 10000 {
		path := fmt.Sprintf("leasecompany/L%d/enquiries/E%d/whatsapp/messages/chatMessages/m%d", i%10, i%100, i)
		batch.Set(c.Doc(path), map[string]any{"status": []string{"queued", "sent", "delivered"}[i%3], "seq": i, "lease": i % 10})
		batch.Set(c.Doc(fmt.Sprintf("flat/d%05d", i)), map[string]any{"seq": i, "bucket": i % 50})
		if i%250 == 249 {
			if _, err := batch.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			batch = c.Batch() //lint:ignore SA1019 as above.
		}
	}
	queries := map[string]firestore.Query{
		"equality-limit":   c.Collection("flat").Where("bucket", "==", 7).Limit(20),
		"range-order":      c.Collection("flat").Where("seq", ">=", 5000).OrderBy("seq", firestore.Desc).Limit(50),
		"collection-group": c.CollectionGroup("chatMessages").Where("status", "==", "queued").Where("lease", "==", 3).Limit(20),
	}
	for name, q := range queries {
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				docs, err := q.Documents(ctx).GetAll()
				if err != nil {
					b.Fatal(err)
				}
				if len(docs) == 0 {
					b.Fatal("no results")
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/query")
		})
	}
}
