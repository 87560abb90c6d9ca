// Package deadletter is the way back for dead letters: what the sender and
// Pub/Sub's dead-letter policies leave on the dead-letter topics, how an
// operator reads a hold subscription without taking anything off it, and
// how its messages are replayed to the topic they came from.
//
// Replaying is safe to repeat: the sender claims every send, so a task
// that comes back twice reaches WhatsApp once, and the recorder applies a
// result or a status once.
package deadletter

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	chart "github.com/visn/wadispatch/charts/wadispatch"
	"github.com/visn/wadispatch/pkg/sendtask"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Attributes the sender adds to a task it publishes to the dead-letter
// topic itself, when its WhatsApp retries ran out (named in pkg/sendtask,
// so that the sender links neither this package's Pub/Sub reads nor the
// chart).
const (
	AttrFailureReason   = sendtask.AttrFailureReason
	AttrLastErrorReason = sendtask.AttrLastErrorReason
	AttrLastErrorCode   = sendtask.AttrLastErrorCode
)

// Attributes Pub/Sub adds to a message its dead-letter policy forwards, as
// Google documents them. The Go client's pstest server, the local Pub/Sub,
// forwards the message as it was and adds none.
const (
	AttrSourceDeliveryCount         = "CloudPubSubDeadLetterSourceDeliveryCount"
	AttrSourceSubscription          = "CloudPubSubDeadLetterSourceSubscription"
	AttrSourceSubscriptionProject   = "CloudPubSubDeadLetterSourceSubscriptionProject"
	AttrSourceTopicPublishTime      = "CloudPubSubDeadLetterSourceTopicPublishTime"
	pubsubDeadLetterAttributePrefix = "CloudPubSubDeadLetter"
)

// Attributes a replayed message carries, so its consumer's logs and an
// operator can tell a replay from the original.
const (
	AttrReplayedFrom = "replayedFrom"
	AttrReplayedAt   = "replayedAt"
)

// ReasonMaxDeliveryAttempts is the reason of a message the subscription's
// dead-letter policy moved: only the sender publishes to a dead-letter topic
// itself, and it always says why.
const ReasonMaxDeliveryAttempts = "max delivery attempts"

// Letter is one message on a hold subscription.
type Letter struct {
	// ID is Pub/Sub's message id on the dead-letter topic.
	ID          string
	Data        []byte
	Attributes  map[string]string
	OrderingKey string
	// PublishTime is when the message reached the dead-letter topic (with
	// pstest: when it was first published).
	PublishTime time.Time

	ackID string
}

// MessagePath is the chatMessages document the message is about, as its
// publisher named it, or "".
func (l Letter) MessagePath() string { return l.Attributes["messagePath"] }

// Reason says why the message was dead-lettered: the sender's reason with
// WhatsApp's last error, or ReasonMaxDeliveryAttempts with the subscription
// that gave up when Pub/Sub says which.
func (l Letter) Reason() string {
	if r := l.Attributes[AttrFailureReason]; r != "" {
		if last := l.Attributes[AttrLastErrorReason]; last != "" {
			r += ": last error " + last
			if code := l.Attributes[AttrLastErrorCode]; code != "" {
				r += " (WhatsApp error " + code + ")"
			}
		}
		return r
	}
	if src := l.SourceSubscription(); src != "" {
		return ReasonMaxDeliveryAttempts + " on " + src
	}
	return ReasonMaxDeliveryAttempts
}

// RetriesExhausted reports whether the sender dead-lettered the task after
// its WhatsApp retries ran out. Its outcome is then recorded FAILED, so a
// replay sends nothing (the sender finds the outcome and dead-letters the
// task again); resending the message through the recorder sends it.
func (l Letter) RetriesExhausted() bool { return l.Attributes[AttrFailureReason] != "" }

// Attempts is Pub/Sub's count of deliveries before it gave up, or 0 when it
// does not say (the sender's own dead letters, pstest).
func (l Letter) Attempts() int {
	n, _ := strconv.Atoi(l.Attributes[AttrSourceDeliveryCount])
	return n
}

// SourceSubscription is the subscription Pub/Sub dead-lettered the message
// from, by id, or "".
func (l Letter) SourceSubscription() string {
	s := l.Attributes[AttrSourceSubscription]
	return s[strings.LastIndex(s, "/")+1:]
}

// replayAttributes are the attributes the replayed message is published
// with: the original ones, without those that say why it was dead-lettered
// (they no longer hold, and if it comes back it comes back with new ones),
// with where and when it was replayed from.
func (l Letter) replayAttributes(hold string, at time.Time) map[string]string {
	attrs := maps.Clone(l.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	for k := range attrs {
		if strings.HasPrefix(k, pubsubDeadLetterAttributePrefix) {
			delete(attrs, k)
		}
	}
	delete(attrs, AttrFailureReason)
	delete(attrs, AttrLastErrorReason)
	delete(attrs, AttrLastErrorCode)
	attrs[AttrReplayedFrom] = hold
	attrs[AttrReplayedAt] = at.UTC().Format(time.RFC3339)
	return attrs
}

// replayOrderingKey keeps the message's ordering key, so a replayed task
// joins its driver's queue. The sender publishes its own dead letters
// without one; a task's key is then its driver's, as every task publisher
// sets it.
func (l Letter) replayOrderingKey() string {
	if l.OrderingKey != "" || l.Attributes["schema"] != sendtask.Schema {
		return l.OrderingKey
	}
	task := &wadispatchv1.SendTask{}
	if proto.Unmarshal(l.Data, task) != nil || task.GetDriverMobileNumber() == "" {
		return ""
	}
	return sendtask.OrderingKey(task.GetDriverMobileNumber())
}

// WayBack is the topic a letter on hold h is replayed to: the topic of the
// subscription that dead-lettered it.
func WayBack(h chart.DeadLetterHold, l Letter) (string, error) {
	if src := l.SourceSubscription(); src != "" {
		for _, s := range h.Sources {
			if s.Name == src {
				return s.Topic, nil
			}
		}
		return "", fmt.Errorf("dead-lettered from subscription %s, which does not dead-letter to %s in the chart's topology", src, h.DeadLetterTopic)
	}
	var topics []string
	for _, s := range h.Sources {
		if !slices.Contains(topics, s.Topic) {
			topics = append(topics, s.Topic)
		}
	}
	if len(topics) != 1 {
		return "", fmt.Errorf("%s receives dead letters from %d topics (%s) and the message does not say which", h.DeadLetterTopic, len(topics), strings.Join(topics, ", "))
	}
	return topics[0], nil
}
