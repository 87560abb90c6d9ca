package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/deadletter"
	"github.com/visn/wadispatch/pkg/logging"
)

// holdAliases name the hold subscriptions by what they hold, through the
// topic their letters go back to.
var holdAliases = map[string]string{
	"tasks":         "whatsapp-messages",
	"results":       "whatsapp-message-results",
	"status-events": "whatsapp-status-events",
	"media":         "whatsapp-media",
}

// localProject is the project of the local stack, the default when an
// emulator is named and no project is.
const localProject = "wadispatch-local"

// deadLetters runs `deadletters list|replay`. It talks to Pub/Sub, not to
// the recorder, so it needs no recorder credential: the operator's own
// Google credential (subscriber on the holds, publisher on the topics).
func deadLetters(ctx context.Context, o options, action string, stdout, stderr io.Writer, getenv func(string) string) int {
	switch {
	case action != "list" && action != "replay":
		fmt.Fprintf(stderr, "deadletters %q: want list or replay\n", action)
		return 2
	case action == "list" && o.yes:
		fmt.Fprintln(stderr, "--yes is for deadletters replay; list only reads")
		return 2
	case o.limit < 1 || o.limit > 1000:
		fmt.Fprintf(stderr, "--limit %d: want 1 to 1000\n", o.limit)
		return 2
	}
	project := o.project
	if project == "" && getenv("PUBSUB_EMULATOR_HOST") != "" {
		project = localProject
	}
	if project == "" {
		fmt.Fprintln(stderr, "deadletters: no project: set GOOGLE_CLOUD_PROJECT or --project")
		return 2
	}
	topo, err := chart.DefaultTopology()
	if err != nil {
		fmt.Fprintf(stderr, "deadletters: %v\n", err)
		return 1
	}
	holds, err := resolveHolds(topo, project, o.subscription)
	if err != nil {
		fmt.Fprintf(stderr, "deadletters: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	client, err := pubsubClient(ctx, project, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "deadletters: %v\n", err)
		return 1
	}
	defer client.Close()

	d := &dlCLI{out: stdout, json: o.json, limit: o.limit, now: time.Now(), phones: logging.NewPhones(getenv("LOG_PHONE_HASH_KEY"))}
	if action == "list" {
		err = d.list(ctx, client, holds)
	} else {
		err = d.replay(ctx, client, holds, !o.yes)
	}
	if err != nil {
		fmt.Fprintf(stderr, "deadletters %s: %s\n", action, d.phones.Redact(err.Error()))
		return 1
	}
	return 0
}

// resolveHolds is what --subscription names: every hold of the topology
// when empty, else one by alias (tasks, results, status-events, media), id or full
// name.
func resolveHolds(topo *chart.PubSubTopology, project, name string) ([]chart.DeadLetterHold, error) {
	holds := topo.DeadLetterHolds()
	if name == "" {
		return holds, nil
	}
	if rest, ok := strings.CutPrefix(name, "projects/"); ok {
		p, id, ok := strings.Cut(rest, "/subscriptions/")
		if !ok || p != project {
			return nil, fmt.Errorf("subscription %s: want projects/%s/subscriptions/ID", name, project)
		}
		name = id
	}
	var known []string
	for _, h := range holds {
		if h.Subscription == name {
			return []chart.DeadLetterHold{h}, nil
		}
		for alias, topic := range holdAliases {
			for _, s := range h.Sources {
				if alias == name && s.Topic == topic {
					return []chart.DeadLetterHold{h}, nil
				}
			}
		}
		known = append(known, h.Subscription)
	}
	return nil, fmt.Errorf("subscription %q is not a dead-letter hold of the chart's topology: want tasks, results, status-events, media or one of %s", name, strings.Join(known, ", "))
}

// pubsubClient honours PUBSUB_EMULATOR_HOST as read through getenv (the Go
// client reads the process environment itself, which tests cannot set per
// call).
func pubsubClient(ctx context.Context, project string, getenv func(string) string) (*pubsub.Client, error) {
	var opts []option.ClientOption
	if addr := getenv("PUBSUB_EMULATOR_HOST"); addr != "" {
		opts = append(opts, option.WithEndpoint(addr), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	c, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	return c, nil
}

// dlCLI prints what the hold subscriptions hold and what a replay did.
// Every string that comes from a message is redacted (pkg/logging.Phones):
// a dead letter may be anything, including a driver's number in clear.
type dlCLI struct {
	out    io.Writer
	json   bool
	limit  int
	now    time.Time
	phones *logging.Phones
}

// letterJSON is one letter in --json output.
type letterJSON struct {
	MessageID   string    `json:"messageId"`
	MessagePath string    `json:"messagePath"`
	Reason      string    `json:"reason"`
	Attempts    int       `json:"attempts,omitempty"`
	PublishTime time.Time `json:"publishTime"`
	AgeSeconds  int64     `json:"ageSeconds"`
	BackTo      string    `json:"backTo,omitempty"`
	// RetriesExhausted: the sender's dead letter, its outcome recorded
	// FAILED (see noteRetriesExhausted).
	RetriesExhausted bool `json:"retriesExhausted,omitempty"`
	// A replay's outcome: replayed, failed or "" in a dry run.
	Outcome    string `json:"outcome,omitempty"`
	ReplayedAs string `json:"replayedAs,omitempty"`
	Error      string `json:"error,omitempty"`
}

type holdJSON struct {
	Subscription string       `json:"subscription"`
	Letters      []letterJSON `json:"letters"`
	// More: letters beyond --limit wait on the hold.
	More bool `json:"more"`
}

func (d *dlCLI) letterJSON(h chart.DeadLetterHold, l deadletter.Letter) letterJSON {
	j := letterJSON{
		MessageID:   l.ID,
		MessagePath: d.phones.Redact(l.MessagePath()),
		Reason:      d.phones.Redact(l.Reason()),
		Attempts:    l.Attempts(),
		PublishTime: l.PublishTime.UTC(),
		AgeSeconds:  int64(max(d.now.Sub(l.PublishTime), 0) / time.Second),

		RetriesExhausted: l.RetriesExhausted(),
	}
	if topic, err := deadletter.WayBack(h, l); err == nil {
		j.BackTo = topic
	} else {
		j.Error = d.phones.Redact(err.Error())
	}
	return j
}

// peekAll reads up to --limit letters of each hold, leaving them there.
func (d *dlCLI) peekAll(ctx context.Context, client *pubsub.Client, holds []chart.DeadLetterHold) ([]holdJSON, error) {
	var out []holdJSON
	var errs []error
	for _, hold := range holds {
		h := deadletter.NewHold(client, hold)
		letters, more, err := h.Peek(ctx, d.limit)
		h.Close()
		if err != nil {
			errs = append(errs, err)
		}
		hj := holdJSON{Subscription: hold.Subscription, Letters: []letterJSON{}, More: more}
		for _, l := range letters {
			hj.Letters = append(hj.Letters, d.letterJSON(hold, l))
		}
		out = append(out, hj)
	}
	return out, errors.Join(errs...)
}

func (d *dlCLI) list(ctx context.Context, client *pubsub.Client, holds []chart.DeadLetterHold) error {
	out, err := d.peekAll(ctx, client, holds)
	if d.json {
		return errors.Join(err, d.printJSON(map[string]any{"holds": out}))
	}
	for _, hj := range out {
		d.printHold(hj)
	}
	return err
}

// replay replays each hold's letters, or in a dry run lists what it would
// replay and leaves everything where it is.
func (d *dlCLI) replay(ctx context.Context, client *pubsub.Client, holds []chart.DeadLetterHold, dryRun bool) error {
	if dryRun {
		return d.dryRun(ctx, client, holds)
	}
	var out []holdJSON
	var errs []error
	// left: failed letters, and replayed ones whose ack failed (they come
	// back to the hold).
	replayed, failed, left, more := 0, 0, 0, false
	for _, hold := range holds {
		h := deadletter.NewHold(client, hold)
		rep, err := h.Replay(ctx, d.limit, d.now)
		h.Close()
		if err != nil {
			errs = append(errs, err)
		}
		hj := holdJSON{Subscription: hold.Subscription, Letters: []letterJSON{}, More: rep.More}
		for _, r := range rep.Letters {
			j := d.letterJSON(hold, r.Letter)
			switch {
			case r.Err != nil:
				j.Outcome, j.Error = "failed", d.phones.Redact(r.Err.Error())
				failed++
				left++
			case r.AckErr != nil:
				j.Outcome, j.ReplayedAs = "replayed", r.ID
				j.Error = d.phones.Redact("published, but still on the hold (a later replay publishes it again, harmlessly): " + r.AckErr.Error())
				replayed++
				left++
			default:
				j.Outcome, j.ReplayedAs = "replayed", r.ID
				replayed++
			}
			hj.Letters = append(hj.Letters, j)
		}
		more = more || rep.More
		out = append(out, hj)
	}
	if d.json {
		err := d.printJSON(map[string]any{"holds": out, "replayed": replayed, "failed": failed, "left": left, "more": more})
		return errors.Join(append(errs, err, failedErr(failed))...)
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	for _, hj := range out {
		fmt.Fprintf(tw, "%s:\n", hj.Subscription)
		for _, j := range hj.Letters {
			switch {
			case j.Outcome == "failed":
				fmt.Fprintf(tw, "  failed\t%s\t%s\n", orDash(j.MessagePath), j.Error)
			default:
				note := ""
				if j.Error != "" {
					note = "; " + j.Error
				}
				fmt.Fprintf(tw, "  replayed\t%s\tto %s as %s%s\n", orDash(j.MessagePath), j.BackTo, j.ReplayedAs, note)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "replayed %d, failed %d, left %d", replayed, failed, left)
	if more {
		fmt.Fprintf(d.out, " and more beyond --limit %d: run again", d.limit)
	}
	fmt.Fprintln(d.out)
	d.noteRetriesExhausted(out)
	return errors.Join(append(errs, failedErr(failed))...)
}

func failedErr(failed int) error {
	if failed == 0 {
		return nil
	}
	return fmt.Errorf("%d letter(s) not replayed, left on the hold", failed)
}

func (d *dlCLI) dryRun(ctx context.Context, client *pubsub.Client, holds []chart.DeadLetterHold) error {
	out, err := d.peekAll(ctx, client, holds)
	if d.json {
		return errors.Join(err, d.printJSON(map[string]any{"dryRun": true, "holds": out}))
	}
	n := 0
	for _, hj := range out {
		d.printHold(hj)
		n += len(hj.Letters)
	}
	fmt.Fprintf(d.out, "dry run: nothing replayed; with --yes these %d go back to the topic shown (at most --limit %d a hold), each taken off its hold once Pub/Sub has it\n", n, d.limit)
	d.noteRetriesExhausted(out)
	return err
}

// noteRetriesExhausted says what a replay does with a task whose WhatsApp
// retries ran out: its outcome is recorded FAILED, so the sender sends
// nothing and dead-letters it again. An operator who wants it sent asks
// for a resend.
func (d *dlCLI) noteRetriesExhausted(holds []holdJSON) {
	n := 0
	for _, hj := range holds {
		for _, j := range hj.Letters {
			if j.RetriesExhausted {
				n++
			}
		}
	}
	if n == 0 {
		return
	}
	fmt.Fprintf(d.out, "\nnote: %d of these ran out of WhatsApp retries and are recorded FAILED. Replayed, such a task sends\n"+
		"nothing: the sender finds its outcome and dead-letters it again, unless it was resent since. To send one\n"+
		"again: wadispatchctl resend <messagePath>; a replay after that takes its dead letter off the hold.\n", n)
}

func (d *dlCLI) printHold(hj holdJSON) {
	if len(hj.Letters) == 0 {
		fmt.Fprintf(d.out, "%s: no dead letters\n\n", hj.Subscription)
		return
	}
	fmt.Fprintf(d.out, "%s: %d dead letter(s)\n", hj.Subscription, len(hj.Letters))
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE\tREASON\tATTEMPTS\tAGE\tBACK TO\tPUBSUB ID")
	for _, j := range hj.Letters {
		attempts := "-"
		if j.Attempts > 0 {
			attempts = fmt.Sprint(j.Attempts)
		}
		back := j.BackTo
		if back == "" {
			back = "? " + j.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(j.MessagePath), oneLine(j.Reason), attempts,
			age(time.Duration(j.AgeSeconds)*time.Second), back, j.MessageID)
	}
	_ = tw.Flush()
	if hj.More {
		fmt.Fprintf(d.out, "… and more beyond --limit %d\n", d.limit)
	}
	fmt.Fprintln(d.out)
}

func (d *dlCLI) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("answer to JSON: %w", err)
	}
	_, err = fmt.Fprintln(d.out, string(b))
	return err
}

// age is how long a letter has waited, to the unit that matters: a hold
// keeps letters for its retention (7 days by default), then drops them.
func age(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d/time.Minute)%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d/time.Hour)%24)
}
