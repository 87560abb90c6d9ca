// Command wadispatchctl is the internal users' tool over the recorder's gRPC
// API: a message's pipeline state, an enquiry's messages to a driver, the
// sends whose outcome is UNKNOWN or whose task stalled, and resending one.
// Over Pub/Sub it lists what waits on the dead-letter hold subscriptions
// and replays it to the topics it came from. `health` checks the recorder
// and ingest answer as their probes expect (the chart's `helm test`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/chatmessage"
	"golang.org/x/oauth2"

	"github.com/nyaruka/phonenumbers"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/tracing"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

const usage = `usage: wadispatchctl [flags] <command> [arguments]

commands:
  status <messagePath>             pipeline state of one chatMessages document
  list <driverNumber> <enquiryId>  messages of an enquiry sent to a driver; the number is
                                   normalised to E.164 as ingest does (--region for one
                                   written without country code)
  unknown                          sends whose outcome is UNKNOWN (claim expired)
  stalled                          sends released to retry whose task never came back
  unmatched <leaseId>              drivers' messages to the lease no enquiry took (a driver the
                                   lease never wrote to; a reaction naming an unknown message)
                                   (list, unknown, stalled, unmatched: one page of --page-size; the next
                                   page token is printed, --page-token reads that page,
                                   --all reads every page)
  costs <leaseId> <month>          the lease's messages WhatsApp priced in a month (YYYY-MM, UTC),
                                   by category and type, each counted once (trails the statuses
                                   by about the recorder's fold interval)
  driver <leaseId> <driverNumber> what the lease's record of a driver says: opted out (and by
                                   what), unreachable (repeated 131026), a number change; the
                                   number is normalised as for list
  resend <messagePath>             send an UNKNOWN, FAILED or stalled message again; with
                                   --wait, until its new outcome is recorded (--timeout)
  deadletters list                 what waits on the dead-letter hold subscriptions (Pub/Sub),
                                   left where it is
  deadletters replay               the same, as a dry run; with --yes each goes back to the
                                   topic it came from, then off its hold (safe to repeat:
                                   claims keep a task from being sent twice)
  health                           the recorder's gRPC health (the Recorder API) and ingest's
                                   /readyz (--ingest), one line each; exit 1 if one fails

deadletters talks to Pub/Sub with the operator's Google credential (GOOGLE_CLOUD_PROJECT or
--project; PUBSUB_EMULATOR_HOST for the local stack); health to the recorder's health service,
which needs no credential, and to ingest; the other commands to the recorder.

flags (anywhere on the line):
`

func main() {
	// The calls' spans go where the OTEL_* variables say (pkg/tracing), so a
	// resend can be followed into the recorder and the send it causes.
	tp, err := tracing.Setup(context.Background(), "wadispatchctl", logrus.NewEntry(logrus.StandardLogger()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "wadispatchctl:", err)
		os.Exit(2)
	}
	code := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := tp.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wadispatchctl:", err)
	}
	cancel()
	os.Exit(code)
}

type options struct {
	addr         string
	ingestURL    string
	json         bool
	limit        int
	page         paging
	olderThan    time.Duration
	timeout      time.Duration
	project      string
	subscription string
	yes          bool
	region       string
	wait         bool
}

// run is the program; it returns the exit code (2 for a usage error, 1 for
// a failed call).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var o options
	fs := flag.NewFlagSet("wadispatchctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	addr := getenv("WADISPATCH_RECORDER_ADDR")
	if addr == "" {
		addr = "localhost:9090"
	}
	fs.StringVar(&o.addr, "addr", addr, "recorder gRPC address (env WADISPATCH_RECORDER_ADDR)")
	ingestURL := getenv("WADISPATCH_INGEST_URL")
	if ingestURL == "" {
		ingestURL = "http://localhost:8080"
	}
	fs.StringVar(&o.ingestURL, "ingest", ingestURL, "health: base URL of ingest's probes-and-metrics server (env WADISPATCH_INGEST_URL)")
	fs.BoolVar(&o.json, "json", false, "print the API's answer as JSON")
	fs.IntVar(&o.limit, "limit", 100, "deadletters: how many a hold (at most 1000)")
	fs.IntVar(&o.page.size, "page-size", 0, "list, unknown, stalled: messages a page (0: the recorder's default, 100; at most 1000)")
	fs.StringVar(&o.page.token, "page-token", "", "list, unknown, stalled: the page to read, as the previous page's next page token gave it (same arguments and --older-than)")
	fs.BoolVar(&o.page.all, "all", false, "list, unknown, stalled: read every page, from --page-token or the first (within --timeout)")
	fs.DurationVar(&o.olderThan, "older-than", 10*time.Minute, "stalled: released at least this long ago")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "time allowed for the call (health: for each check)")
	fs.StringVar(&o.project, "project", getenv("GOOGLE_CLOUD_PROJECT"), "deadletters: Google Cloud project of Pub/Sub (env GOOGLE_CLOUD_PROJECT)")
	fs.StringVar(&o.subscription, "subscription", "", "deadletters: the hold to read, tasks, results, status-events, media or a subscription name (default: every hold)")
	region := getenv("WADISPATCH_DEFAULT_REGION")
	if region == "" {
		region = "GB"
	}
	fs.StringVar(&o.region, "region", region, "list, driver: region (ISO 3166) assumed for a driver number without country code, as ingest's INGEST_DEFAULT_REGION (env WADISPATCH_DEFAULT_REGION)")
	fs.BoolVar(&o.wait, "wait", false, "resend: wait until the new outcome is recorded, then print it (within --timeout)")
	fs.BoolVar(&o.yes, "yes", false, "deadletters replay: replay, rather than list what would be replayed")
	// Flags may follow the arguments: parse until nothing is left.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	cmd, cmdArgs := pos[0], pos[1:]
	want := map[string]int{"status": 1, "list": 2, "unknown": 0, "stalled": 0, "unmatched": 1, "costs": 2, "driver": 2, "resend": 1, "deadletters": 1, "health": 0}
	n, ok := want[cmd]
	if !ok {
		fmt.Fprintf(stderr, "unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	if len(cmdArgs) != n {
		fmt.Fprintf(stderr, "%s takes %d argument(s), got %d\n", cmd, n, len(cmdArgs))
		fs.Usage()
		return 2
	}
	if cmd == "deadletters" {
		return deadLetters(ctx, o, cmdArgs[0], stdout, stderr, getenv)
	}
	if cmd == "health" {
		return health(ctx, o, stdout)
	}
	// --limit once sized these lists too; silently listing 100 instead of
	// what was asked would hide messages.
	limitSet := false
	fs.Visit(func(f *flag.Flag) { limitSet = limitSet || f.Name == "limit" })
	if limitSet {
		fmt.Fprintf(stderr, "%s: --limit is for deadletters; the lists page with --page-size (and --all for every page)\n", cmd)
		return 2
	}
	if o.page.size < 0 {
		fmt.Fprintf(stderr, "%s: --page-size %d: want 0 (the recorder's default) or more\n", cmd, o.page.size)
		return 2
	}

	if numberAt, ok := map[string]int{"list": 0, "driver": 1}[cmd]; ok {
		// The recorder keys enquiry messages and driver records by the E.164
		// number ingest wrote, so the number is normalised the same way, not
		// sent as typed.
		if !phonenumbers.GetSupportedRegions()[o.region] {
			fmt.Fprintf(stderr, "%s: --region %q is not a region phone numbers are known for (ISO 3166, e.g. GB)\n", cmd, o.region)
			return 2
		}
		e164, err := chatmessage.NormalizeNumber(cmdArgs[numberAt], o.region)
		if err != nil {
			fmt.Fprintf(stderr, "%s: driver number %q (default region %s): %v\n", cmd, cmdArgs[numberAt], o.region, err)
			return 2
		}
		cmdArgs[numberAt] = e164
	}

	tokens, err := idTokens(ctx, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "no credential for the recorder: %v\n%s", err, credentialHint)
		return 1
	}
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithPerRPCCredentials(auth.PerRPC(tokens)))
	if err != nil {
		fmt.Fprintf(stderr, "recorder address %s: %v\n", o.addr, err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c := &cli{rec: wadispatchv1.NewRecorderClient(conn), out: stdout, json: o.json}
	switch cmd {
	case "status":
		err = c.status(ctx, cmdArgs[0])
	case "list":
		err = c.list(ctx, cmdArgs[0], cmdArgs[1], o.page)
	case "unknown":
		err = c.unknown(ctx, o.page)
	case "stalled":
		err = c.stalled(ctx, o.olderThan, o.page)
	case "unmatched":
		err = c.unmatched(ctx, cmdArgs[0], o.page)
	case "costs":
		err = c.costs(ctx, cmdArgs[0], cmdArgs[1])
	case "driver":
		err = c.driver(ctx, cmdArgs[0], cmdArgs[1])
	case "resend":
		err = c.resend(ctx, cmdArgs[0], o.wait)
	}
	if err != nil {
		if s, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "%s: %s (%s)\n", cmd, s.Message(), s.Code())
			if s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded {
				fmt.Fprintf(stderr, unreachableHint, o.addr)
			}
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		}
		return 1
	}
	return 0
}

// credentialHint says how an operator gets a credential the recorder takes.
const credentialHint = `the recorder takes an OpenID Connect ID token naming an operator:
  on GCP:  export WADISPATCH_ID_TOKEN=$(gcloud auth print-identity-token \
             --impersonate-service-account=OPERATOR_SA --audiences=wadispatch-recorder --include-email)
  locally: export WADISPATCH_ID_TOKEN_FILE=.run/logs/operator.token   (written by make run)
`

// unreachableHint says where the call went and how an operator reaches
// the recorder, which on GKE has no address outside the cluster.
const unreachableHint = `the recorder did not answer at %s (--addr or WADISPATCH_RECORDER_ADDR);
  on GKE:  kubectl -n NAMESPACE port-forward svc/wadispatch-recorder 9090:9090 &   (the Service is RELEASE-recorder)
           then --addr localhost:9090
  locally: make run starts it on localhost:9090
`

// idTokens is the operator's credential: WADISPATCH_ID_TOKEN, the file
// WADISPATCH_ID_TOKEN_FILE, or else Google's ID tokens for the application
// default credentials (a service account's) for WADISPATCH_RECORDER_AUDIENCE.
func idTokens(ctx context.Context, getenv func(string) string) (oauth2.TokenSource, error) {
	if raw := strings.TrimSpace(getenv("WADISPATCH_ID_TOKEN")); raw != "" {
		return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: raw, TokenType: "Bearer"}), nil
	}
	audience := getenv("WADISPATCH_RECORDER_AUDIENCE")
	if audience == "" {
		audience = "wadispatch-recorder"
	}
	return auth.NewTokenSource(ctx, audience, getenv("WADISPATCH_ID_TOKEN_FILE"))
}

// cli runs the commands against a recorder and prints their answers.
type cli struct {
	rec  wadispatchv1.RecorderClient
	out  io.Writer
	json bool
}

func (c *cli) status(ctx context.Context, path string) error {
	resp, err := c.rec.GetMessage(ctx, &wadispatchv1.GetMessageRequest{MessageDocId: path})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp)
	}
	return c.printState(resp.GetState())
}

// paging is which pages of a listing to read.
type paging struct {
	size  int
	token string
	all   bool
}

// follow reads the first page (at p.token), and with p.all the pages after
// it; page reads the page at a token and returns the next page's token.
func (p paging) follow(page func(token string) (string, error)) error {
	token := p.token
	for {
		next, err := page(token)
		if err != nil || !p.all || next == "" {
			return err
		}
		token = next
	}
}

func (c *cli) list(ctx context.Context, driver, enquiry string, p paging) error {
	resp := &wadispatchv1.ListEnquiryMessagesResponse{}
	err := p.follow(func(token string) (string, error) {
		r, err := c.rec.ListEnquiryMessages(ctx, &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: driver, EnquiryId: enquiry,
			PageSize: int32(p.size), PageToken: token})
		if err != nil {
			return "", err
		}
		// Every page carries the whole ancillary record; the last is the latest.
		resp.WhatsappMessageIds = r.GetWhatsappMessageIds()
		resp.Messages = append(resp.Messages, r.GetMessages()...)
		resp.NextPageToken = r.GetNextPageToken()
		return r.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp)
	}
	fmt.Fprintf(c.out, "ancillary record whatsapp/%s/enquiryMessages/%s: %d WhatsApp message id(s)\n", driver, enquiry, len(resp.GetWhatsappMessageIds()))
	for _, id := range resp.GetWhatsappMessageIds() {
		fmt.Fprintf(c.out, "  %s\n", id)
	}
	fmt.Fprintln(c.out)
	return c.printPage(resp.GetMessages(), resp.GetNextPageToken())
}

func (c *cli) unknown(ctx context.Context, p paging) error {
	resp := &wadispatchv1.ListUnknownResponse{}
	err := p.follow(func(token string) (string, error) {
		r, err := c.rec.ListUnknown(ctx, &wadispatchv1.ListUnknownRequest{PageSize: int32(p.size), PageToken: token})
		if err != nil {
			return "", err
		}
		resp.Messages = append(resp.Messages, r.GetMessages()...)
		resp.NextPageToken = r.GetNextPageToken()
		return r.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	return c.printListing(resp, resp.GetMessages(), resp.GetNextPageToken())
}

func (c *cli) stalled(ctx context.Context, olderThan time.Duration, p paging) error {
	resp := &wadispatchv1.ListStalledResponse{}
	err := p.follow(func(token string) (string, error) {
		r, err := c.rec.ListStalled(ctx, &wadispatchv1.ListStalledRequest{OlderThan: durationpb.New(olderThan), PageSize: int32(p.size), PageToken: token})
		if err != nil {
			return "", err
		}
		resp.Messages = append(resp.Messages, r.GetMessages()...)
		resp.NextPageToken = r.GetNextPageToken()
		return r.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	return c.printListing(resp, resp.GetMessages(), resp.GetNextPageToken())
}

func (c *cli) unmatched(ctx context.Context, leaseID string, p paging) error {
	resp := &wadispatchv1.ListUnmatchedRepliesResponse{}
	err := p.follow(func(token string) (string, error) {
		r, err := c.rec.ListUnmatchedReplies(ctx, &wadispatchv1.ListUnmatchedRepliesRequest{LeaseId: leaseID, PageSize: int32(p.size), PageToken: token})
		if err != nil {
			return "", err
		}
		resp.Replies = append(resp.Replies, r.GetReplies()...)
		resp.NextPageToken = r.GetNextPageToken()
		return r.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp)
	}
	if len(resp.GetReplies()) == 0 {
		_, err := fmt.Fprintln(c.out, "no unmatched replies")
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLY\tTYPE\tDRIVER\tSENT\tREASON\tMESSAGE")
	for _, r := range resp.GetReplies() {
		reason := r.GetReason()
		if t := r.GetTargetWhatsappMessageId(); t != "" {
			reason += " (" + t + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.GetPath(), r.GetType(), orDash(r.GetDriverMobileNumber()), timeString(r.GetCreatedAt()),
			reason, oneLine(orDash(r.GetMessage())))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return c.printNext(resp.GetNextPageToken())
}

// printListing prints a listing: the API's answer as JSON (the pages read,
// in one answer whose nextPageToken is the last page's), or its messages
// as a table and the next page's token.
func (c *cli) printListing(resp proto.Message, states []*wadispatchv1.MessageState, next string) error {
	if c.json {
		return c.printJSON(resp)
	}
	return c.printPage(states, next)
}

// printPage prints messages as a table, then how to read the next page
// when there is one.
func (c *cli) printPage(states []*wadispatchv1.MessageState, next string) error {
	if err := c.printTable(states); err != nil {
		return err
	}
	return c.printNext(next)
}

// printNext says how to read the next page, if there is one.
func (c *cli) printNext(next string) error {
	if next == "" {
		return nil
	}
	_, err := fmt.Fprintf(c.out, "\nmore on the next page: --page-token %s (or --all for every page)\n", next)
	return err
}

// resend asks for a resend; the recorder records who asked from the
// credential. With wait it then polls until the resend's outcome is
// recorded and prints that state instead.
func (c *cli) resend(ctx context.Context, path string, wait bool) error {
	resp, err := c.rec.Resend(ctx, &wadispatchv1.ResendRequest{MessageDocId: path})
	if err != nil {
		return err
	}
	if !wait {
		if c.json {
			return c.printJSON(resp)
		}
		fmt.Fprintf(c.out, "resend requested for %s; the task is back on the queue and the next claim sends it\n\n", path)
		return c.printState(resp.GetState())
	}
	got, err := c.waitOutcome(ctx, resp.GetState())
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(got)
	}
	fmt.Fprintf(c.out, "resend of %s: new outcome recorded\n\n", path)
	return c.printState(got.GetState())
}

// pollEvery is how often resend --wait reads the state.
var pollEvery = 500 * time.Millisecond

// waitOutcome polls the state until it holds an outcome newer than the
// one the resend found (before): any status beyond SENDING updated after
// it, since UNKNOWN, FAILED and SENT may come back the same but later.
func (c *cli) waitOutcome(ctx context.Context, before *wadispatchv1.MessageState) (*wadispatchv1.GetMessageResponse, error) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	last := before
	// The time running out is no sign of an unreachable recorder, so its
	// error carries no gRPC status (and so no unreachable hint).
	timedOut := func() error {
		return fmt.Errorf("resend requested, but no new outcome within --timeout (still %s): %w", statusName(last.GetStatus()), ctx.Err())
	}
	for {
		select {
		case <-ctx.Done():
			return nil, timedOut()
		case <-t.C:
		}
		resp, err := c.rec.GetMessage(ctx, &wadispatchv1.GetMessageRequest{MessageDocId: before.GetMessageDocId()})
		if err != nil && ctx.Err() != nil {
			return nil, timedOut()
		}
		if err != nil {
			return nil, fmt.Errorf("resend requested, waiting for its outcome: %w", err)
		}
		st := resp.GetState()
		last = st
		if dispatch.StatusFromProto(st.GetStatus()) != dispatch.StatusSending &&
			st.GetUpdatedAt().AsTime().After(before.GetUpdatedAt().AsTime()) {
			return resp, nil
		}
	}
}

func (c *cli) printJSON(m proto.Message) error {
	// EmitDefaultValues: an empty list prints as [] like a full one, not
	// as a missing field, so scripts read the same shape either way.
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("answer to JSON: %w", err)
	}
	_, err = fmt.Fprintln(c.out, string(b))
	return err
}

func statusName(s wadispatchv1.MessageStatus) string {
	if n := dispatch.StatusFromProto(s); n != "" {
		return string(n)
	}
	return "-"
}

func timeString(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) printState(s *wadispatchv1.MessageState) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("message", s.GetMessageDocId())
	row("status", statusName(s.GetStatus()))
	row("reason", orDash(s.GetReason()))
	row("whatsapp message id", orDash(s.GetWhatsappMessageId()))
	if e := s.GetError(); e != nil && e.GetCode() != 0 {
		row("whatsapp error", fmt.Sprintf("code %d subcode %d: %s %s", e.GetCode(), e.GetSubcode(), e.GetMessage(), e.GetDetails()))
	} else if e != nil {
		// No code: the failure is ours (the sender's token, its checks),
		// not WhatsApp's answer.
		row("failure", "failed: "+oneLine(strings.TrimSuffix(e.GetReason()+": "+e.GetMessage()+" "+e.GetDetails(), " ")))
	}
	row("driver", orDash(s.GetDriverMobileNumber()))
	row("lease / enquiry", s.GetLeaseId()+" / "+s.GetEnquiryId())
	row("created by", orDash(s.GetCreatedBy()))
	row("claim", orDash(s.GetClaimId())+" by "+orDash(s.GetClaimant()))
	row("attempts", fmt.Sprint(s.GetAttempts()))
	row("created", timeString(s.GetCreatedAt()))
	row("claimed", timeString(s.GetClaimedAt()))
	row("sent", timeString(s.GetSentAt()))
	row("delivered", timeString(s.GetDeliveredAt()))
	row("read", timeString(s.GetReadAt()))
	row("updated", timeString(s.GetUpdatedAt()))
	return tw.Flush()
}

func (c *cli) printTable(states []*wadispatchv1.MessageState) error {
	if len(states) == 0 {
		_, err := fmt.Fprintln(c.out, "no messages")
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE\tSTATUS\tWHATSAPP ID\tDRIVER\tUPDATED\tREASON")
	for _, s := range states {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.GetMessageDocId(), statusName(s.GetStatus()), orDash(s.GetWhatsappMessageId()),
			orDash(s.GetDriverMobileNumber()), timeString(s.GetUpdatedAt()), oneLine(orDash(s.GetReason())))
	}
	return tw.Flush()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
