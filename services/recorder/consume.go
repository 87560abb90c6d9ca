package main

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/services/recorder/internal/app"
)

type consumerMetrics struct {
	handled *prometheus.CounterVec
	poison  *prometheus.CounterVec
}

func newConsumerMetrics(reg prometheus.Registerer) *consumerMetrics {
	m := &consumerMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_pubsub_messages_total",
			Help: "Pub/Sub messages handled, by subscription, ack or nack, and reason.",
		}, []string{"subscription", "verdict", "reason"}),
		poison: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wadispatch_recorder_poison_messages_total",
			Help: "Messages that can never be handled, nacked until the subscription dead-letters them, by reason.",
		}, []string{"subscription", "reason"}),
	}
	reg.MustRegister(m.handled, m.poison)
	return m
}

type handler func(ctx context.Context, data []byte, attrs map[string]string) app.Verdict

// consume receives from sub until ctx ends. A message in hand is finished
// even when shutdown starts (bounded by timeout): Receive returns once
// every handler has.
func consume(sub *pubsub.Subscriber, settings pubsub.ReceiveSettings, timeout time.Duration, h handler, m *consumerMetrics, log *logrus.Entry) lifecycle.Part {
	return func(ctx context.Context) error {
		sub.ReceiveSettings = settings
		name := sub.ID()
		err := sub.Receive(ctx, func(ctx context.Context, msg *pubsub.Message) {
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
			defer cancel()
			hctx, span := startSpan(hctx, name, msg)
			v := h(hctx, msg.Data, msg.Attributes)
			endSpan(span, v)
			verdict := "nack"
			if v.Ack {
				verdict = "ack"
				msg.Ack()
			} else {
				msg.Nack()
			}
			m.handled.WithLabelValues(name, verdict, v.Reason).Inc()
			if v.Poison {
				m.poison.WithLabelValues(name, v.Reason).Inc()
			}
			logging.WithContext(hctx, log).WithFields(logrus.Fields{"subscription": name, "messageId": msg.ID, "messagePath": msg.Attributes["messagePath"],
				"verdict": verdict, "reason": v.Reason}).Debug("pubsub message handled")
		})
		if err != nil {
			return fmt.Errorf("receive from %s: %w", name, err)
		}
		return nil
	}
}
