package gcloudemu_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/googleapis/google-cloudevents-go/cloud/firestoredata"
	"github.com/sirupsen/logrus"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/testinfra/eventdelivery"
	"github.com/visn/wadispatch/pkg/testinfra/gcloudemu"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
)

func TestRepairGivesWhatEventarcSends(t *testing.T) {
	data := []byte{0x0a, 0x03, 'a', 'b', 'c'}
	h := http.Header{}
	h.Set("Ce-Id", "1")
	h.Set("Ce-Type", "google.cloud.firestore.document.v1.created")
	h.Set("Ce-Source", "//firestore.googleapis.com/projects/projects/p1/databases/(default)")
	h.Set("Ce-Datacontenttype", "application/protobuf")
	h.Set("Content-Type", "application/protobuf")
	ev, err := gcloudemu.Repair(h, []byte(base64.StdEncoding.EncodeToString(data)))
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Body) != string(data) {
		t.Errorf("body %q, want the decoded protobuf %q", ev.Body, data)
	}
	if got := ev.Headers["ce-source"]; got != "//firestore.googleapis.com/projects/p1/databases/(default)" {
		t.Errorf("ce-source %q", got)
	}
	if _, ok := ev.Headers["ce-datacontenttype"]; ok {
		t.Error("ce-datacontenttype kept: the HTTP binding forbids it in binary mode")
	}
	if _, err := gcloudemu.Repair(h, []byte("not base64!")); err == nil {
		t.Error("a body that is not base64 was accepted")
	}
}

func requireGoogleEmulators(t *testing.T) {
	t.Helper()
	if err := gcloudemu.Available(); err != nil {
		t.Skipf("Google's emulators are not installed here: %v", err)
	}
}

// A document written to Google's Firestore emulator reaches its trigger's
// target as a CloudEvent the SDK decodes, with the document in it, and a
// target that fails at first gets the event again.
func TestGoogleFirestoreTriggerThroughTheBridge(t *testing.T) {
	requireGoogleEmulators(t)
	t.Parallel()
	ctx := context.Background()
	got := make(chan cloudevents.Event, 4)
	failures := 1
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failures > 0 {
			failures--
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		ev, err := cloudevents.NewEventFromHTTPRequest(r)
		if err != nil {
			body, _ := io.ReadAll(r.Body)
			t.Errorf("not a CloudEvent: %v (%q)", err, body)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- *ev
	}))
	defer target.Close()

	log := logrus.New()
	log.SetOutput(io.Discard)
	bridge, err := gcloudemu.StartBridge("127.0.0.1:0", eventdelivery.Policy{MinBackoff: 10 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer bridge.Close()
	emu, err := gcloudemu.StartFirestore(ctx, gcloudemu.Options{FunctionsEmulator: bridge.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	bridge.Route("created", target.URL)
	if err := emu.AddTrigger(ctx, "p1", "created", "google.cloud.firestore.document.v1.created", "(default)", "a/{x}/b/{y}"); err != nil {
		t.Fatal(err)
	}
	client, err := firestore.NewClient(ctx, "p1", option.WithEndpoint(emu.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Doc("a/1/b/2").Set(ctx, map[string]any{"s": "hi"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Source() != "//firestore.googleapis.com/projects/p1/databases/(default)" || ev.Subject() != "documents/a/1/b/2" {
			t.Errorf("source %q subject %q", ev.Source(), ev.Subject())
		}
		var data firestoredata.DocumentEventData
		if err := proto.Unmarshal(ev.Data(), &data); err != nil {
			t.Fatalf("data is not DocumentEventData: %v", err)
		}
		if !strings.HasSuffix(data.GetValue().GetName(), "/documents/a/1/b/2") || data.GetValue().GetFields()["s"].GetStringValue() != "hi" {
			t.Errorf("document %v", data.GetValue())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no event reached the target")
	}
}

// The project's topology, dead-letter policies and ordering included, is
// accepted by Google's Pub/Sub emulator as it is by Pub/Sub.
func TestGooglePubSubTakesTheTopology(t *testing.T) {
	requireGoogleEmulators(t)
	t.Parallel()
	ctx := context.Background()
	emu, err := gcloudemu.StartPubSub(ctx, gcloudemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	client, err := pubsubemu.NewClient(ctx, emu.Addr, "p1")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.Apply(ctx, client, topo); err != nil {
		t.Fatal(err)
	}
	for _, s := range topo.Subscriptions {
		sub, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/p1/subscriptions/" + s.Name})
		if err != nil {
			t.Fatal(err)
		}
		if s.DeadLetterPolicy != nil && sub.GetDeadLetterPolicy().GetMaxDeliveryAttempts() != s.DeadLetterPolicy.MaxDeliveryAttempts {
			t.Errorf("%s: dead-letter policy %v, want %v", s.Name, sub.GetDeadLetterPolicy(), s.DeadLetterPolicy)
		}
	}
}
