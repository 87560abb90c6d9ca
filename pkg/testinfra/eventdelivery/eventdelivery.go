// Package eventdelivery posts CloudEvents the way Eventarc delivers them to
// a service: asynchronously, at least once, a connection failure or non-2xx
// answer retried with exponential backoff, then given up. The project's
// Firestore emulator delivers its trigger events with it, and so does the
// bridge in front of Google's emulator (whose triggers post once and never
// retry).
package eventdelivery

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Policy sets how deliveries are retried.
type Policy struct {
	Attempts   int           // default 10
	MinBackoff time.Duration // default 100ms
	MaxBackoff time.Duration // default 10s
	Timeout    time.Duration // per attempt, default 30s
}

func (p Policy) withDefaults() Policy {
	if p.Attempts <= 0 {
		p.Attempts = 10
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 10 * time.Second
	}
	if p.Timeout <= 0 {
		p.Timeout = 30 * time.Second
	}
	return p
}

// Event is one CloudEvent in binary content mode.
type Event struct {
	URL     string
	Headers map[string]string
	Body    []byte
}

// Queue delivers events until closed.
type Queue struct {
	policy   Policy
	log      logrus.FieldLogger
	ctx      context.Context // cancelled by Close; stops deliveries
	cancel   context.CancelFunc
	pending  sync.WaitGroup
	dropping atomic.Bool
}

// New returns a queue delivering with policy (zero fields take defaults).
func New(policy Policy, log logrus.FieldLogger) *Queue {
	q := &Queue{policy: policy.withDefaults(), log: log}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// Drop makes the queue drop the events it is given from now on, until
// called with false: each is logged and never delivered, as an event
// Eventarc gave up on or never had. It is for tests of what must find
// documents whose event was lost; Eventarc has no such switch.
func (q *Queue) Drop(drop bool) {
	q.dropping.Store(drop)
	q.log.Infof("trigger deliveries dropped: %v", drop)
}

// ControlHandler serves the test-only switch over HTTP:
// POST /emulator/v1/triggers:dropDeliveries and :resumeDeliveries.
func (q *Queue) ControlHandler(mux *http.ServeMux) {
	for verb, drop := range map[string]bool{"dropDeliveries": true, "resumeDeliveries": false} {
		mux.HandleFunc("POST /emulator/v1/triggers:"+verb, func(w http.ResponseWriter, _ *http.Request) {
			q.Drop(drop)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}\n"))
		})
	}
}

// Deliver starts delivering ev and returns at once.
func (q *Queue) Deliver(ev Event) {
	if q.dropping.Load() {
		q.log.WithFields(logrus.Fields{"url": ev.URL, "document": ev.Headers["ce-document"]}).Warn("trigger event dropped (deliveries are being dropped)")
		return
	}
	q.pending.Add(1)
	go q.deliver(ev)
}

// Close abandons pending deliveries and waits for in-flight ones to return.
func (q *Queue) Close() {
	q.cancel()
	q.pending.Wait()
}

func (q *Queue) deliver(ev Event) {
	defer q.pending.Done()
	p := q.policy
	backoff := p.MinBackoff
	log := q.log.WithFields(logrus.Fields{"url": ev.URL, "ce-id": ev.Headers["ce-id"], "ce-type": ev.Headers["ce-type"], "document": ev.Headers["ce-document"]})
	for attempt := 1; ; attempt++ {
		err := q.post(ev)
		if err == nil || q.ctx.Err() != nil {
			return
		}
		if attempt >= p.Attempts {
			log.WithError(err).Errorf("trigger delivery failed after %d attempts; event dropped", attempt)
			return
		}
		log.WithError(err).Warnf("trigger delivery attempt %d failed; retrying in %s", attempt, backoff)
		select {
		case <-time.After(backoff):
		case <-q.ctx.Done():
			return
		}
		backoff = min(backoff*2, p.MaxBackoff)
	}
}

func (q *Queue) post(ev Event) error {
	ctx, cancel := context.WithTimeout(q.ctx, q.policy.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	for k, v := range ev.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("post event: %w", err)
	}
	defer resp.Body.Close()
	var buf [512]byte
	n, _ := resp.Body.Read(buf[:])
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post event: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(buf[:n])))
	}
	return nil
}
