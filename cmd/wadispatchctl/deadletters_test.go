package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/deadletter"
	"github.com/visn/wadispatch/pkg/sendtask"
	"github.com/visn/wadispatch/pkg/testinfra/pubsubemu"
	"github.com/visn/wadispatch/pkg/testinfra/topology"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                   "0s",
		42 * time.Second:               "42s",
		12*time.Minute + 5*time.Second: "12m",
		5*time.Hour + 7*time.Minute:    "5h07m",
		47 * time.Hour:                 "47h00m",
		6*24*time.Hour + 3*time.Hour:   "6d03h",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestResolveHolds(t *testing.T) {
	topo, err := chart.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"tasks":         "whatsapp-messages-dead-letter-hold",
		"results":       "whatsapp-message-results-dead-letter-hold",
		"status-events": "whatsapp-status-events-dead-letter-hold",
		"media":         "whatsapp-media-dead-letter-hold",
		"whatsapp-message-results-dead-letter-hold":                         "whatsapp-message-results-dead-letter-hold",
		"projects/p1/subscriptions/whatsapp-status-events-dead-letter-hold": "whatsapp-status-events-dead-letter-hold",
	} {
		holds, err := resolveHolds(topo, "p1", name)
		if err != nil || len(holds) != 1 || holds[0].Subscription != want {
			t.Errorf("%s: %+v, %v; want %s", name, holds, err, want)
		}
	}
	if holds, err := resolveHolds(topo, "p1", ""); err != nil || len(holds) != 4 {
		t.Errorf("every hold: %d, %v", len(holds), err)
	}
	for _, name := range []string{"whatsapp-messages-sender", "whatsapp-messages", "projects/p2/subscriptions/whatsapp-messages-dead-letter-hold", "projects/p1/topics/x"} {
		if _, err := resolveHolds(topo, "p1", name); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDeadLettersUsageErrors(t *testing.T) {
	emu := map[string]string{"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{emu, []string{"deadletters"}, "takes 1 argument"},
		{emu, []string{"deadletters", "purge"}, "want list or replay"},
		{emu, []string{"deadletters", "list", "--yes"}, "--yes is for deadletters replay"},
		{emu, []string{"deadletters", "replay", "--limit", "0"}, "want 1 to 1000"},
		{emu, []string{"deadletters", "list", "--subscription", "whatsapp-messages-sender"}, "not a dead-letter hold"},
		{nil, []string{"deadletters", "list"}, "no project"},
	} {
		if code, _, errOut := ctl(t, c.env, c.args...); code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// The commands against the local Pub/Sub: a task the sender's subscription
// dead-lettered, one the sender dead-lettered itself, a poison result;
// listed without being taken, replayed once, and nothing left after.
func TestDeadLettersListAndReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := pubsubemu.StartForTest(t)
	c, err := pubsubemu.NewClient(ctx, addr, pubsubemu.TestProject)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	publish := func(topic string, task *wadispatchv1.SendTask, attrs map[string]string) {
		t.Helper()
		data := []byte("\xff not protobuf")
		if task != nil {
			if data, err = proto.Marshal(task); err != nil {
				t.Fatal(err)
			}
		}
		p := c.Publisher(topic)
		p.EnableMessageOrdering = true
		defer p.Stop()
		m := &pubsub.Message{Data: data, Attributes: attrs}
		if task != nil && topic == topology.TasksTopic {
			m.OrderingKey = sendtask.OrderingKey(task.GetDriverMobileNumber())
		}
		if _, err := p.Publish(ctx, m).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	task := func(id string) *wadispatchv1.SendTask {
		return &wadispatchv1.SendTask{MessageDocId: path(id), MessageId: id, DriverMobileNumber: driver}
	}
	publish(topology.TasksTopic, task("m1"), map[string]string{"messagePath": path("m1"), "schema": sendtask.Schema})
	publish(topology.ResultsTopic, nil, map[string]string{"messagePath": path("m3"), "schema": "wadispatch.v1.SendResult"})
	for _, sub := range []string{topology.TasksSubscription, topology.ResultsSubscription} {
		if _, err := pubsubemu.NackUntilDeadLettered(ctx, c, sub); err != nil {
			t.Fatal(err)
		}
	}
	publish(topology.TasksDeadLetterTopic, task("m2"), map[string]string{"messagePath": path("m2"), "schema": sendtask.Schema,
		deadletter.AttrFailureReason: "retries_exhausted", deadletter.AttrLastErrorReason: "server_error", deadletter.AttrLastErrorCode: "131000"})
	// A dead letter may carry anything; a driver's number never reaches
	// the operator's screen in clear.
	publish(topology.TasksDeadLetterTopic, nil, map[string]string{"messagePath": "drivers/" + driver})

	env := map[string]string{"PUBSUB_EMULATOR_HOST": addr, "GOOGLE_CLOUD_PROJECT": pubsubemu.TestProject}
	for range 2 {
		code, out, errOut := ctl(t, env, "deadletters", "list")
		if code != 0 || strings.Count(out, path("")) != 3 || strings.Contains(out, driver) || !strings.Contains(out, "drivers/tel:") ||
			!strings.Contains(out, "whatsapp-messages-dead-letter-hold: 3 dead letter(s)") ||
			!strings.Contains(out, "whatsapp-message-results-dead-letter-hold: 1 dead letter(s)") ||
			!strings.Contains(out, "whatsapp-status-events-dead-letter-hold: no dead letters") ||
			!strings.Contains(out, "max delivery attempts on whatsapp-messages-sender") ||
			!strings.Contains(out, "max delivery attempts on whatsapp-message-results-recorder") ||
			!strings.Contains(out, "retries_exhausted: last error server_error (WhatsApp error 131000)") {
			t.Fatalf("list: %d\n%s%s", code, out, errOut)
		}
	}

	code, out, errOut := ctl(t, env, "deadletters", "list", "--json", "--subscription", "tasks", "--limit", "2")
	var listed struct {
		Holds []struct {
			Subscription string
			Letters      []letterJSON
			More         bool
		}
	}
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed.Holds) != 1 || len(listed.Holds[0].Letters) != 2 || !listed.Holds[0].More {
		t.Fatalf("list --json --limit 2: %d %v\n%s%s", code, err, out, errOut)
	}
	for _, l := range listed.Holds[0].Letters {
		if l.MessageID == "" || l.BackTo != topology.TasksTopic || l.PublishTime.IsZero() || l.Reason == "" {
			t.Errorf("listed %+v", l)
		}
	}

	code, out, errOut = ctl(t, env, "deadletters", "replay", "--subscription", "tasks")
	if code != 0 || !strings.Contains(out, "dry run: nothing replayed") || strings.Count(out, path("")) != 2 || !strings.Contains(out, "1 of these ran out of WhatsApp retries") {
		t.Fatalf("dry run: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ctl(t, env, "deadletters", "replay", "--subscription", "tasks", "--yes")
	if code != 0 || !strings.Contains(out, "replayed 3, failed 0, left 0") || strings.Count(out, "to whatsapp-messages as ") != 3 || strings.Contains(out, driver) {
		t.Fatalf("replay: %d\n%s%s", code, out, errOut)
	}
	back, err := pubsubemu.TakeAll(ctx, c, topology.TasksSubscription)
	if err != nil || len(back) != 3 {
		t.Fatalf("%d tasks back on the sender's subscription, want 3 (%v)", len(back), err)
	}
	code, out, errOut = ctl(t, env, "deadletters", "replay", "--subscription", "tasks", "--yes")
	if code != 0 || !strings.Contains(out, "replayed 0, failed 0, left 0") {
		t.Fatalf("second replay: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = ctl(t, env, "deadletters", "replay", "--subscription", "results", "--yes", "--json")
	var report struct {
		Replayed, Failed, Left int
		More                   bool
	}
	if err := json.Unmarshal([]byte(out), &report); code != 0 || err != nil || report.Replayed != 1 || report.Failed != 0 || report.Left != 0 || report.More {
		t.Fatalf("replay of the results --json: %d %v\n%s%s", code, err, out, errOut)
	}
	if back, err := pubsubemu.TakeAll(ctx, c, topology.ResultsSubscription); err != nil || len(back) != 1 || back[0].GetAttributes()["messagePath"] != path("m3") {
		t.Fatalf("results back: %v %v", back, err)
	}
	if code, out, _ := ctl(t, env, "deadletters", "list"); code != 0 || strings.Count(out, "no dead letters") != 4 {
		t.Errorf("after the replays: %d\n%s", code, out)
	}
}
