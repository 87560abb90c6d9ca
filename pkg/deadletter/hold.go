package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pubsubpb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	chart "github.com/visn/wadispatch/charts/wadispatch"
)

// Pub/Sub takes at most this many messages in one pull and, to stay well
// inside a request's size limit, this many ack ids in one call.
const (
	maxPull   = 1000
	maxAckIDs = 500
)

// Hold reads and replays one hold subscription. Pub/Sub has no way to look
// at a subscription without taking messages from it: a read pulls them,
// and holds what it pulled until it acks (replayed) or nacks (left for the
// next reader) each one. A reader that dies holding messages leaves them
// for the subscription's ack deadline, then they come back.
type Hold struct {
	client *pubsub.Client
	hold   chart.DeadLetterHold
	// PullWait bounds a pull that finds nothing: Pub/Sub may keep a pull
	// open until a message arrives.
	PullWait time.Duration

	publishers map[string]*pubsub.Publisher
}

// NewHold reads hold through client (in client's project).
func NewHold(client *pubsub.Client, hold chart.DeadLetterHold) *Hold {
	return &Hold{client: client, hold: hold, PullWait: 5 * time.Second, publishers: map[string]*pubsub.Publisher{}}
}

// Close flushes and stops the publishers of replays.
func (h *Hold) Close() {
	for _, p := range h.publishers {
		p.Stop()
	}
}

// Peek returns up to limit letters, oldest pulls first, and leaves every
// one on the subscription; more reports that letters beyond limit wait.
func (h *Hold) Peek(ctx context.Context, limit int) (letters []Letter, more bool, err error) {
	if limit < 1 {
		return nil, false, fmt.Errorf("limit %d: want at least 1", limit)
	}
	var held []string
	defer func() { err = errors.Join(err, h.release(ctx, held)) }()
	seen := map[string]bool{}
	for len(letters) <= limit {
		got, err := h.pull(ctx, min(limit+1-len(letters), maxPull))
		if err != nil {
			return letters, false, err
		}
		fresh := 0
		for _, l := range got {
			held = append(held, l.ackID)
			if !seen[l.ID] {
				seen[l.ID] = true
				letters = append(letters, l)
				fresh++
			}
		}
		if fresh == 0 {
			break
		}
	}
	if len(letters) > limit {
		return letters[:limit], true, nil
	}
	return letters, false, nil
}

// Replayed is what became of one letter in a replay.
type Replayed struct {
	Letter Letter
	// Topic is where it went (or should have gone) back to.
	Topic string
	// ID is its message id on Topic.
	ID string
	// Err: it was not published, and stays on the hold.
	Err error
	// AckErr: it was published but could not be taken off the hold, so it
	// comes back there and a later replay publishes it again, which the
	// claims make harmless.
	AckErr error
}

// Report is what a replay did.
type Report struct {
	Letters []Replayed
	// More: letters beyond the limit wait on the hold.
	More bool
}

// Counts are the letters replayed and those that failed (left on the hold).
func (r Report) Counts() (replayed, failed int) {
	for _, l := range r.Letters {
		if l.Err != nil {
			failed++
		} else {
			replayed++
		}
	}
	return replayed, failed
}

// Replay publishes up to limit letters to the topics they came from, with
// their data, attributes (see replayAttributes) and ordering key, and takes
// each off the hold once Pub/Sub has confirmed its publish: a replay cut
// short leaves a letter on the hold, or at worst on both the hold and its
// topic, never on neither. now stamps the replayed messages.
func (h *Hold) Replay(ctx context.Context, limit int, now time.Time) (rep Report, err error) {
	if limit < 1 {
		return rep, fmt.Errorf("limit %d: want at least 1", limit)
	}
	// Failed letters stay held until the end, so a later pull of this run
	// does not hand them back; then they are released for the next run.
	var held []string
	defer func() { err = errors.Join(err, h.release(ctx, held)) }()
	seen := map[string]bool{}
	for len(rep.Letters) < limit {
		got, err := h.pull(ctx, min(limit-len(rep.Letters), maxPull))
		if err != nil {
			return rep, err
		}
		var batch []Letter
		for _, l := range got {
			if seen[l.ID] {
				held = append(held, l.ackID)
				continue
			}
			seen[l.ID] = true
			batch = append(batch, l)
		}
		if len(batch) == 0 {
			break
		}
		done := h.publish(ctx, batch, now)
		var acks []string
		for _, r := range done {
			if r.Err != nil {
				held = append(held, r.Letter.ackID)
			} else {
				acks = append(acks, r.Letter.ackID)
			}
		}
		if ackErr := h.ack(ctx, acks); ackErr != nil {
			for i := range done {
				if done[i].Err == nil {
					done[i].AckErr = ackErr
				}
			}
		}
		rep.Letters = append(rep.Letters, done...)
	}
	if len(rep.Letters) == limit {
		got, err := h.pull(ctx, 1)
		if err != nil {
			return rep, err
		}
		for _, l := range got {
			held = append(held, l.ackID)
			rep.More = rep.More || !seen[l.ID]
		}
	}
	return rep, nil
}

// publish publishes a batch at once (the client batches them) and waits
// for every confirmation.
func (h *Hold) publish(ctx context.Context, batch []Letter, now time.Time) []Replayed {
	out := make([]Replayed, len(batch))
	results := make([]*pubsub.PublishResult, len(batch))
	for i, l := range batch {
		out[i].Letter = l
		topic, err := WayBack(h.hold, l)
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].Topic = topic
		results[i] = h.publisher(topic).Publish(ctx, &pubsub.Message{
			Data:        l.Data,
			Attributes:  l.replayAttributes(h.hold.Subscription, now),
			OrderingKey: l.replayOrderingKey(),
		})
	}
	for i, res := range results {
		if res == nil {
			continue
		}
		id, err := res.Get(ctx)
		if err != nil {
			out[i].Err = fmt.Errorf("publish to %s: %w", out[i].Topic, err)
			// A failed publish pauses its ordering key; the letter stays on
			// the hold, and the next run may publish that key again.
			h.publisher(out[i].Topic).ResumePublish(batch[i].replayOrderingKey())
			continue
		}
		out[i].ID = id
	}
	return out
}

func (h *Hold) publisher(topic string) *pubsub.Publisher {
	p, ok := h.publishers[topic]
	if !ok {
		p = h.client.Publisher(topic)
		// Tasks are ordered per driver; a message without a key publishes
		// as it would without ordering.
		p.EnableMessageOrdering = true
		h.publishers[topic] = p
	}
	return p
}

func (h *Hold) name() string {
	return "projects/" + h.client.Project() + "/subscriptions/" + h.hold.Subscription
}

// pull takes up to max messages, or none once PullWait passes without any.
func (h *Hold) pull(ctx context.Context, max int) ([]Letter, error) {
	pctx, cancel := context.WithTimeout(ctx, h.PullWait)
	defer cancel()
	resp, err := h.client.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: h.name(), MaxMessages: int32(max)})
	if err != nil {
		if ctx.Err() == nil && pctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("pull from %s: %w", h.hold.Subscription, err)
	}
	letters := make([]Letter, 0, len(resp.GetReceivedMessages()))
	for _, m := range resp.GetReceivedMessages() {
		msg := m.GetMessage()
		letters = append(letters, Letter{
			ID:          msg.GetMessageId(),
			Data:        msg.GetData(),
			Attributes:  msg.GetAttributes(),
			OrderingKey: msg.GetOrderingKey(),
			PublishTime: msg.GetPublishTime().AsTime(),
			ackID:       m.GetAckId(),
		})
	}
	return letters, nil
}

// ack takes replayed letters off the hold, even once ctx has ended: their
// publishes are confirmed, and a letter left behind is replayed again.
func (h *Hold) ack(ctx context.Context, ackIDs []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for ids := range slices.Chunk(ackIDs, maxAckIDs) {
		if err := h.client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: h.name(), AckIds: ids}); err != nil {
			return fmt.Errorf("acknowledge on %s: %w", h.hold.Subscription, err)
		}
	}
	return nil
}

// release nacks what a read held, so the next reader gets it at once. It
// runs even when ctx has ended (the run's timeout): otherwise the letters
// stay out of reach for the subscription's ack deadline.
func (h *Hold) release(ctx context.Context, ackIDs []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for ids := range slices.Chunk(ackIDs, maxAckIDs) {
		if err := h.client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: h.name(), AckIds: ids, AckDeadlineSeconds: 0}); err != nil {
			return fmt.Errorf("release messages on %s (they come back after its ack deadline): %w", h.hold.Subscription, err)
		}
	}
	return nil
}
