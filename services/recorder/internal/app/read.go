package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/auth"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// GetMessage implements wadispatchv1.RecorderServer.
func (s *Service) GetMessage(ctx context.Context, req *wadispatchv1.GetMessageRequest) (*wadispatchv1.GetMessageResponse, error) {
	ref, err := dispatch.ParseMessagePath(req.GetMessageDocId())
	if err != nil {
		return nil, invalid("message_doc_id: %v", err)
	}
	st, err := s.getState(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &wadispatchv1.GetMessageResponse{State: st.readState()}, nil
}

// noStateWhy is what a message without a state may be.
const noStateWhy = "never claimed, refused nor recorded: a message from a driver or a migrated one is left alone, and one just written may not have reached the sender yet"

func (s *Service) getState(ctx context.Context, ref dispatch.MessageRef) (*State, error) {
	st, err := s.store.State(ctx, ref)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	if st == nil {
		return nil, status.Errorf(codes.NotFound, "no pipeline state for %s (%s)", ref.Path(), noStateWhy)
	}
	return st, nil
}

// ListEnquiryMessages implements wadispatchv1.RecorderServer.
func (s *Service) ListEnquiryMessages(ctx context.Context, req *wadispatchv1.ListEnquiryMessagesRequest) (*wadispatchv1.ListEnquiryMessagesResponse, error) {
	if err := checkDocID("driver_mobile_number", req.GetDriverMobileNumber()); err != nil {
		return nil, invalid("%v", err)
	}
	if err := checkDocID("enquiry_id", req.GetEnquiryId()); err != nil {
		return nil, invalid("%v", err)
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	// Document ids hold no "/", so the two cannot run into each other.
	filter := "ListEnquiryMessages/" + req.GetDriverMobileNumber() + "/" + req.GetEnquiryId()
	after, err := decodePageToken(filter, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	ids, err := s.anc.Wamids(ctx, req.GetDriverMobileNumber(), req.GetEnquiryId())
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	// Failed messages have no wamid, so the ancillary record cannot list
	// them; the states can.
	page, err := s.store.EnquiryStates(ctx, req.GetDriverMobileNumber(), req.GetEnquiryId(), after, size)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	return &wadispatchv1.ListEnquiryMessagesResponse{WhatsappMessageIds: ids, Messages: messageStates(page.States),
		NextPageToken: encodePageToken(filter, page.Next)}, nil
}

func messageStates(states []*State) []*wadispatchv1.MessageState {
	var out []*wadispatchv1.MessageState
	for _, st := range states {
		out = append(out, st.readState())
	}
	return out
}

// ListUnknown implements wadispatchv1.RecorderServer.
func (s *Service) ListUnknown(ctx context.Context, req *wadispatchv1.ListUnknownRequest) (*wadispatchv1.ListUnknownResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	const filter = "ListUnknown"
	after, err := decodePageToken(filter, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	page, err := s.store.Unknown(ctx, after, size)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	return &wadispatchv1.ListUnknownResponse{Messages: messageStates(page.States), NextPageToken: encodePageToken(filter, page.Next)}, nil
}

// ListStalled implements wadispatchv1.RecorderServer.
func (s *Service) ListStalled(ctx context.Context, req *wadispatchv1.ListStalledRequest) (*wadispatchv1.ListStalledResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	age := s.cfg.StalledAge
	if d := req.GetOlderThan(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return nil, invalid("older_than %v: want a duration of 0 or more", d.AsDuration())
		}
		age = d.AsDuration()
	}
	// Bound to the age, not to the time it was counted from: each page
	// counts from its own now, so a claim that became old enough while the
	// pages were read comes at the end (it was released last), and none
	// comes twice.
	filter := "ListStalled/" + age.String()
	after, err := decodePageToken(filter, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	page, err := s.store.Stalled(ctx, s.now().Add(-age), after, size)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	return &wadispatchv1.ListStalledResponse{Messages: messageStates(page.States), NextPageToken: encodePageToken(filter, page.Next)}, nil
}

// ListUnmatchedReplies implements wadispatchv1.RecorderServer.
func (s *Service) ListUnmatchedReplies(ctx context.Context, req *wadispatchv1.ListUnmatchedRepliesRequest) (*wadispatchv1.ListUnmatchedRepliesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if err := checkDocID("lease_id", req.GetLeaseId()); err != nil {
		return nil, invalid("%v", err)
	}
	filter := "ListUnmatchedReplies/" + req.GetLeaseId()
	after, err := decodePageToken(filter, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	replies, next, err := s.replies.Unmatched(ctx, req.GetLeaseId(), after, size)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	return &wadispatchv1.ListUnmatchedRepliesResponse{Replies: replies, NextPageToken: encodePageToken(filter, next)}, nil
}

// CountStalled counts the claims ListStalled lists by default into the
// stalled-claims gauge, for an alert: nothing sends them until an operator
// does.
func (s *Service) CountStalled(ctx context.Context) (int64, error) {
	n, err := s.store.CountStalled(ctx, s.now().Add(-s.cfg.StalledAge))
	if err != nil {
		return 0, err
	}
	s.m.stalled.Set(float64(n))
	return n, nil
}

// Resend implements wadispatchv1.RecorderServer.
func (s *Service) Resend(ctx context.Context, req *wadispatchv1.ResendRequest) (*wadispatchv1.ResendResponse, error) {
	ref, err := dispatch.ParseMessagePath(req.GetMessageDocId())
	if err != nil {
		return nil, invalid("message_doc_id: %v", err)
	}
	// Who asks is who the credential names: the request's requested_by is
	// the caller's to write, so it decides nothing.
	var by string
	if id, ok := auth.FromContext(ctx); ok {
		by = id.Name()
	}
	by = orUnknown(by)
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"messagePath": ref.Path(), "requestedBy": by})
	var (
		cur  *State
		task *wadispatchv1.SendTask
	)
	err = s.update(ctx, "resend", ref, nil, func(st *State, _ bool, _ []*wadispatchv1.StatusEvent) (Plan, error) {
		if st == nil {
			return Plan{}, status.Errorf(codes.NotFound, "no pipeline state for %s (%s)", ref.Path(), noStateWhy)
		}
		if refusedState(st) {
			return Plan{}, status.Errorf(codes.FailedPrecondition, "%s was never sent (%s): correct it and have the web app write the message again", ref.Path(), st.Reason)
		}
		if !resendable(st) {
			return Plan{}, status.Errorf(codes.FailedPrecondition, "%s is %s: only UNKNOWN or FAILED messages (or SENDING ones whose claim was released) may be resent", ref.Path(), st.Status)
		}
		var err error
		if task, err = storedTask(st.Task); err != nil {
			return Plan{}, status.Errorf(codes.FailedPrecondition, "%s cannot be resent: %v", ref.Path(), err)
		}
		if st.ResendRequested {
			cur = st
			return Plan{}, nil
		}
		next := resendRequested(st, by, s.now())
		cur = &next
		return Plan{State: &next}, nil
	})
	if err != nil {
		return nil, err
	}
	// Published after the mark: the claim the task meets must find it.
	// A failed publish leaves the mark, and asking again republishes.
	if _, err := s.pub.Publish(ctx, task, map[string]string{"resend": "true"}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "republish task of %s: %v", ref.Path(), err)
	}
	log.Info("resend requested; task republished")
	return &wadispatchv1.ResendResponse{State: cur.readState()}, nil
}

// Sweep marks claims that expired without an outcome UNKNOWN, so they show
// up for operators even if their task is never delivered again. It returns
// how many it marked.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	marked := 0
	for c, err := range s.store.ExpiredClaims(ctx, now) {
		if err != nil {
			return marked, err
		}
		ref, err := dispatch.ParseMessagePath(c.MessagePath)
		if err != nil {
			s.log.WithError(err).WithField("statePath", c.StatePath).Warn("expired claim under a document that is no message; left alone")
			continue
		}
		// Decided again on a fresh read: a result or a claim that got there
		// since the query leaves nothing to do. A claim whose call WhatsApp
		// reported sent is resolved instead of marked.
		log := s.log.WithField("messagePath", ref.Path())
		recordID := uuid.NewString()
		var (
			reason, from string
			resolved     *State
		)
		err = s.ancillaryFirst(ctx, ref, log, func(written string) (*State, error) {
			err := s.update(ctx, "mark UNKNOWN", ref, nil, func(st *State, exists bool, kept []*wadispatchv1.StatusEvent) (Plan, error) {
				reason, resolved = "", nil
				if st != nil && st.RecordID == recordID {
					resolved = st // our commit landed; its answer was lost
					return Plan{}, nil
				}
				switch action, why := decideClaim(st, now, PolicyUnknown); action {
				case claimMarkUnknown:
					reason = unknownReason(st)
					next, msg := markedUnknown(st, reason, now)
					return Plan{State: &next, Message: msg}, nil
				case claimResolve:
					p, _ := resolvedBy(st, exists, ref, recordID, kept, now)
					reason, from, resolved = why, resolvedFrom(st), &p.state
					if p.state.WhatsappMessageID != written {
						return Plan{}, errAncillaryFirst
					}
					return s.recordedPlan(ref, p, p.state.CreatedBy, p.state.WhatsappMessageID, p.state.DriverMobileNumber, log), nil
				}
				return Plan{}, nil
			})
			return resolved, err
		})
		if err != nil {
			return marked, fmt.Errorf("mark %s UNKNOWN: %w", ref.Path(), err)
		}
		switch {
		case resolved != nil:
			s.resolvedSend(resolved.WhatsappMessageID, from, log.WithField("reason", reason))
		case reason != "":
			marked++
			s.m.swept.Inc()
			log.WithField("reason", reason).Warn("expired claim marked UNKNOWN")
		}
	}
	return marked, nil
}

// RunSweeper sweeps every interval until ctx ends. Several recorders may
// sweep at once: the preconditions let one of them mark each claim.
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration) error {
	return every(ctx, interval, func() {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("sweep of expired claims failed; next sweep will try again")
		}
		if _, err := s.SweepPendingStatuses(ctx); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("sweep of kept status webhooks failed; next sweep will try again")
		}
		if n, err := s.CountStalled(ctx); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("count of stalled claims failed; next sweep will try again")
		} else if n > 0 {
			s.log.WithField("stalled", n).Warn("claims released to retry whose task never came back; wadispatchctl stalled lists them")
		}
	})
}

// every runs fn every interval until ctx ends, then returns nil: the
// recorder's background passes, each retried at its next tick.
func every(ctx context.Context, interval time.Duration, fn func()) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fn()
	}
}
