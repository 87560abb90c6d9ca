// Package consume is the one way wadispatch's services take messages from
// a Pub/Sub subscription: each message runs in its own consumer span, in
// the trace its attributes carry, and its handler's Verdict becomes the
// ack or nack, counted and logged the same way everywhere.
package consume

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/pkg/retry"
	"github.com/visn/wadispatch/pkg/tracing"
)

// Verdict is what a handler decided for one message.
type Verdict struct {
	Ack bool
	// Reason labels the verdict in metrics, logs and spans: a short,
	// bounded word such as recorded, duplicate, transient or a poison reason.
	Reason string
	// Poison: the message can never be handled. It is nacked, not acked, so
	// the subscription's dead-letter policy moves it intact to the
	// dead-letter topic, where operators can read and replay it.
	Poison bool
	// Unavailable: a dependency the handler needs is down; nothing is
	// wrong with the message. With a Gate it is held (the client keeps
	// extending its ack deadline) and handed to the handler again when the
	// gate lets it through, instead of nacked: an outage must not spend the
	// subscription's delivery attempts. Without a Gate it is nacked.
	Unavailable bool
}

// Message is one delivery, as handlers see it.
type Message struct {
	ID         string
	Data       []byte
	Attributes map[string]string
	// DeliveryAttempt is Pub/Sub's count, 0 when the subscription has no
	// dead-letter policy.
	DeliveryAttempt int
}

// Handler handles one message. It must not panic on bad input: bad input
// is a Poison verdict.
type Handler func(ctx context.Context, m Message) Verdict

// Options shape a Receive.
type Options struct {
	// Settings are the subscription's flow control.
	Settings pubsub.ReceiveSettings
	// SpanName names each message's span; default "process <subscription>".
	SpanName string
	// Detach, when positive, lets a message in hand finish even once
	// shutdown starts, bounded by Detach: Receive returns when every
	// handler has. Zero passes the receive context on, for handlers that
	// decide themselves what shutdown may interrupt.
	Detach time.Duration
	// Gate, when set, holds messages while a handler answers Unavailable;
	// the subscriptions of one service that need the same dependencies
	// share one.
	Gate *Gate
	// HoldFor bounds how long one delivery is held at the gate before it
	// is nacked after all (spending one delivery attempt per HoldFor of
	// outage); default and cap: 90% of Settings.MaxExtension, beyond which
	// the client stops extending the ack deadline anyway.
	HoldFor time.Duration
	// Metrics counts verdicts; nil counts nothing.
	Metrics *Metrics
	Log     *logrus.Entry
}

// Metrics count the verdicts of a service's subscriptions.
type Metrics struct {
	handled *prometheus.CounterVec
	poison  *prometheus.CounterVec
}

// MetricNames name a service's two counters. They are spelled out whole
// where a service builds them, so a search for a metric's name finds where
// it is registered.
type MetricNames struct {
	// Handled counts messages by subscription, verdict and reason.
	Handled string
	// Poison counts messages that can never be handled.
	Poison string
}

// NewMetrics registers the counters on reg.
func NewMetrics(reg prometheus.Registerer, names MetricNames) *Metrics {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: names.Handled,
			Help: "Pub/Sub messages handled, by subscription, ack or nack, and reason.",
		}, []string{"subscription", "verdict", "reason"}),
		poison: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: names.Poison,
			Help: "Messages that can never be handled, nacked until the subscription dead-letters them, by reason.",
		}, []string{"subscription", "reason"}),
	}
	reg.MustRegister(m.handled, m.poison)
	return m
}

// Receive hands sub's messages to h until ctx ends, then returns once
// every handler has.
func Receive(ctx context.Context, sub *pubsub.Subscriber, o Options, h Handler) error {
	sub.ReceiveSettings = o.Settings
	name := sub.ID()
	spanName := o.SpanName
	if spanName == "" {
		spanName = "process " + name
	}
	holdFor := o.holdFor()
	err := sub.Receive(ctx, func(ctx context.Context, msg *pubsub.Message) {
		m := Message{ID: msg.ID, Data: msg.Data, Attributes: msg.Attributes}
		if msg.DeliveryAttempt != nil {
			m.DeliveryAttempt = *msg.DeliveryAttempt
		}
		ctx, span := tracing.StartConsumer(ctx, msg.Attributes, spanName,
			attribute.String("messaging.system", "gcp_pubsub"),
			attribute.String("messaging.destination.subscription.name", name),
			attribute.String("messaging.message.id", msg.ID),
			attribute.Int("messaging.gcp_pubsub.message.delivery_attempt", m.DeliveryAttempt),
			attribute.String("wadispatch.message_path", msg.Attributes["messagePath"]),
		)
		v, calls := o.handle(ctx, h, m, time.Now().Add(holdFor))
		span.SetAttributes(attribute.Int("wadispatch.handler_calls", calls))
		span.SetAttributes(attribute.Bool("wadispatch.ack", v.Ack), attribute.String("wadispatch.reason", v.Reason))
		span.End()
		verdict := "nack"
		if v.Ack {
			verdict = "ack"
			msg.Ack()
		} else {
			msg.Nack()
		}
		if o.Metrics != nil {
			o.Metrics.Handled(name, verdict, v.Reason).Inc()
			if v.Poison {
				o.Metrics.Poisoned(name, v.Reason).Inc()
			}
		}
		if o.Log != nil {
			logging.WithContext(ctx, o.Log).WithFields(logrus.Fields{"subscription": name, "messageId": msg.ID,
				"messagePath": msg.Attributes["messagePath"], "deliveryAttempt": m.DeliveryAttempt,
				"verdict": verdict, "reason": v.Reason}).Debug("pubsub message handled")
		}
	})
	if err != nil {
		return fmt.Errorf("receive from %s: %w", name, err)
	}
	return nil
}

func (o Options) holdFor() time.Duration {
	limit := o.Settings.MaxExtension
	if limit <= 0 {
		limit = pubsub.DefaultReceiveSettings.MaxExtension
	}
	limit = limit * 9 / 10
	if o.HoldFor > 0 {
		return min(o.HoldFor, limit)
	}
	return limit
}

// handle calls h until its verdict is not Unavailable, waiting at the gate
// before each call and, after an Unavailable one, its own backoff too (a
// message whose dependency alone is down must not spin while the gate
// stays open for the others). It returns the verdict and the number of
// calls. A message held past holdUntil, or when ctx ends, is nacked.
func (o Options) handle(ctx context.Context, h Handler, m Message, holdUntil time.Time) (Verdict, int) {
	if o.Gate == nil {
		return o.call(ctx, h, m), 1
	}
	hold, cancel := context.WithDeadline(ctx, holdUntil)
	defer cancel()
	held := false
	markHeld := func() { held = true }
	defer func() {
		if held {
			o.Gate.release()
		}
	}()
	bo := o.Gate.backoff()
	for calls := 0; ; {
		onWait := markHeld
		if held {
			onWait = nil
		}
		probe, err := o.Gate.enter(hold, onWait)
		if err != nil {
			return heldVerdict(ctx), calls
		}
		v := o.call(ctx, h, m)
		calls++
		o.Gate.leave(probe, v.Unavailable, v.Reason)
		if !v.Unavailable {
			return v, calls
		}
		if !held {
			o.Gate.hold()
			held = true
		}
		if retry.Pause(hold, bo) != nil {
			return heldVerdict(ctx), calls
		}
	}
}

// heldVerdict is the nack of a message whose hold ended: by shutdown when
// ctx is done, else by the hold's bound.
func heldVerdict(ctx context.Context) Verdict {
	if ctx.Err() != nil {
		return Verdict{Reason: "shutdown"}
	}
	return Verdict{Reason: "held_too_long"}
}

// call is one handler call, detached from ctx's cancellation when Detach
// says so.
func (o Options) call(ctx context.Context, h Handler, m Message) Verdict {
	if o.Detach > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), o.Detach)
		defer cancel()
	}
	return h(ctx, m)
}

// Handled is the counter of one subscription's verdict and reason.
func (m *Metrics) Handled(subscription, verdict, reason string) prometheus.Counter {
	return m.handled.WithLabelValues(subscription, verdict, reason)
}

// Poisoned is the counter of one subscription's poison reason.
func (m *Metrics) Poisoned(subscription, reason string) prometheus.Counter {
	return m.poison.WithLabelValues(subscription, reason)
}
