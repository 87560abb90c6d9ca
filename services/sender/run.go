package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/lifecycle"
	"github.com/visn/wadispatch/pkg/ops"
	"github.com/visn/wadispatch/pkg/whatsapp"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
	"github.com/visn/wadispatch/services/sender/internal/app"
)

// run builds the sender's parts and runs them until ctx ends or SIGTERM.
func run(ctx context.Context, cfg spec, log *logrus.Entry) error {
	if cfg.MaxAttempts < 1 || cfg.MaxInFlight < 1 || cfg.PullStreams < 1 || cfg.RatePerNumber <= 0 {
		return errors.New("SENDER_MAX_ATTEMPTS, SENDER_MAX_IN_FLIGHT, SENDER_PULL_STREAMS and SENDER_RATE_PER_NUMBER must be positive")
	}
	if reserve := publishReserve(cfg); cfg.ClaimLease < cfg.WhatsAppTimeout+reserve {
		return fmt.Errorf("SENDER_CLAIM_LEASE (%s) must leave room for one WhatsApp call (%s) and publishing the result (%s)", cfg.ClaimLease, cfg.WhatsAppTimeout, reserve)
	}
	local, err := whatsapp.LoadLocalTokens(cfg.Tokens, cfg.TokensFile)
	if err != nil {
		return err
	}
	var secrets app.SecretSource
	if cfg.SecretManager {
		sm, err := newSecretManager(ctx)
		if err != nil {
			return err
		}
		defer sm.Close()
		secrets = sm
	}
	wa, err := whatsapp.NewClient(whatsapp.Config{BaseURL: cfg.WhatsAppBaseURL, Timeout: cfg.WhatsAppTimeout, HTTPClient: whatsAppHTTPClient(cfg.MaxInFlight)})
	if err != nil {
		return err
	}
	recorder, err := dialRecorder(cfg.RecorderAddr)
	if err != nil {
		return err
	}
	defer recorder.Close()
	psClient, err := pubsub.NewClient(ctx, cfg.Project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer psClient.Close()
	publisher := newPublisher(psClient)
	defer publisher.Stop()

	srv, err := ops.New(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	srv.AddReadiness("recorder", recorder.Ready)
	claimant := cfg.Claimant
	if claimant == "" {
		host, _ := os.Hostname()
		claimant = host + "-" + uuid.NewString()[:8]
	}
	proc := app.NewProcessor(app.Config{
		Claimant:          claimant,
		ClaimLease:        cfg.ClaimLease,
		ClaimTimeout:      cfg.ClaimTimeout,
		MaxAttempts:       cfg.MaxAttempts,
		InitialBackoff:    cfg.InitialBackoff,
		MaxBackoff:        cfg.MaxBackoff,
		CallTimeout:       cfg.WhatsAppTimeout,
		PublishReserve:    publishReserve(cfg),
		PublishTimeout:    cfg.PublishTimeout,
		InFlightRecheck:   cfg.InFlightRecheck,
		DefaultAPIVersion: cfg.WhatsAppAPIVersion,
		EnforceWindow:     cfg.EnforceWindow,
		ResultsTopic:      cfg.ResultsTopic,
		DeadLetterTopic:   cfg.DeadLetterTopic,
	},
		wadispatchv1.NewRecorderClient(recorder.conn),
		wa,
		app.NewTokens(local, secrets, cfg.SecretCacheTTL, time.Now),
		publisher,
		app.NewLimiters(cfg.RatePerNumber, cfg.RateBurst, cfg.RateCooldown),
		realClock{},
		app.NewMetrics(srv.Registry),
		log,
	)
	log.WithFields(logrus.Fields{"subscription": cfg.Subscription, "recorder": cfg.RecorderAddr, "ops": srv.Addr(), "claimant": claimant}).Info("sender starting")
	return lifecycle.Run(ctx,
		func(ctx context.Context) error { return srv.Run(ctx, cfg.ShutdownGrace) },
		func(ctx context.Context) error {
			return receive(ctx, psClient, cfg, proc, log)
		},
	)
}

// publishReserve is the end of a claim's lease kept for publishing the
// result: a WhatsApp answer that arrives later than that cannot be recorded
// before another delivery sees the claim expire.
func publishReserve(cfg spec) time.Duration {
	return min(5*time.Second, cfg.PublishTimeout)
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
