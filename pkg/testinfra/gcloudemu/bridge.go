package gcloudemu

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/testinfra/eventdelivery"
)

// Bridge stands where the Firebase functions emulator would: Google's
// Firestore emulator posts its trigger events to it, and it delivers them
// to the trigger's target as Eventarc would. Google's emulator departs
// from Eventarc in ways a service following the CloudEvents HTTP binding
// must not be bent to accept (Repair), and it posts each event once, never
// retrying; the bridge answers it at once and retries on its own
// (eventdelivery), so the service sees what it sees on GCP.
type Bridge struct {
	// Addr is the host:port to give StartFirestore as FunctionsEmulator.
	Addr string

	srv        *http.Server
	deliveries *eventdelivery.Queue
	log        logrus.FieldLogger

	mu      sync.RWMutex
	targets map[string]string // trigger id → URL
}

// StartBridge listens on hostPort ("127.0.0.1:0" picks a port).
func StartBridge(hostPort string, policy eventdelivery.Policy, log logrus.FieldLogger) (*Bridge, error) {
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		return nil, fmt.Errorf("trigger bridge listen on %s: %w", hostPort, err)
	}
	b := &Bridge{Addr: ln.Addr().String(), log: log, targets: map[string]string{},
		deliveries: eventdelivery.New(policy, log)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /functions/projects/{project}/triggers/{trigger}", b.receive)
	b.deliveries.ControlHandler(mux)
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// Route sends the events of trigger id to url.
func (b *Bridge) Route(id, url string) {
	b.mu.Lock()
	b.targets[id] = url
	b.mu.Unlock()
}

// Drop drops the events that arrive from now on (eventdelivery.Queue.Drop).
func (b *Bridge) Drop(drop bool) { b.deliveries.Drop(drop) }

// Close stops receiving and abandons pending deliveries.
func (b *Bridge) Close() error {
	err := b.srv.Close()
	b.deliveries.Close()
	return err
}

func (b *Bridge) receive(w http.ResponseWriter, r *http.Request) {
	b.mu.RLock()
	url, ok := b.targets[r.PathValue("trigger")]
	b.mu.RUnlock()
	if !ok {
		http.Error(w, "no route for trigger "+r.PathValue("trigger"), http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev, err := Repair(r.Header, body)
	if err != nil {
		b.log.WithError(err).Error("trigger bridge: event not understood; dropped")
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev.URL = url
	b.deliveries.Deliver(ev)
}

// Repair turns a trigger event of Google's Firestore emulator into the
// binary-mode CloudEvent Eventarc delivers. The emulator
//   - sends the protobuf DocumentEventData as base64 text, where Eventarc
//     sends the bytes;
//   - adds a ce-datacontenttype header, which the CloudEvents HTTP binding
//     forbids in binary mode (Content-Type carries it);
//   - names the source //firestore.googleapis.com/projects/projects/P/...,
//     where Eventarc has //firestore.googleapis.com/projects/P/....
func Repair(h http.Header, body []byte) (eventdelivery.Event, error) {
	data, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(body)))
	if err != nil {
		return eventdelivery.Event{}, fmt.Errorf("event body is not base64: %w", err)
	}
	headers := map[string]string{}
	for name, values := range h {
		name = strings.ToLower(name)
		if !strings.HasPrefix(name, "ce-") || name == "ce-datacontenttype" || len(values) == 0 {
			continue
		}
		headers[name] = values[0]
	}
	if headers["ce-id"] == "" || headers["ce-type"] == "" {
		return eventdelivery.Event{}, fmt.Errorf("event without ce-id or ce-type")
	}
	headers["ce-source"] = strings.Replace(headers["ce-source"], "/projects/projects/", "/projects/", 1)
	headers["content-type"] = cmp.Or(h.Get("Ce-Datacontenttype"), h.Get("Content-Type"))
	return eventdelivery.Event{Headers: headers, Body: data}, nil
}
