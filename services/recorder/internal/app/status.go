package app

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// ApplyStatus applies a status event from whatsapp-status-events.
//
// A status finds its message by the wamid index, which the commit of the
// send's result writes. WhatsApp's webhooks often overtake that result,
// and a send whose sender died after calling WhatsApp has none: then the
// status's callback data (the claim and the message the call was made
// for) finds the message, and the status is kept on its state until the
// claim's outcome, or resolves the claim if it is UNKNOWN. A status that
// names no message waiting for it is kept by wamid until a result records
// that wamid, or dropped by the sweep after Config.PendingStatusTTL. None
// is nacked for want of its result: a nack would only spend the
// subscription's delivery attempts and end on the dead-letter topic.
func (s *Service) ApplyStatus(ctx context.Context, req *wadispatchv1.ApplyStatusRequest) (*wadispatchv1.ApplyStatusResponse, error) {
	ev := req.GetEvent()
	wamid := ev.GetWhatsappMessageId()
	if wamid == "" || len(wamid) > 1500 {
		return nil, invalid("event.whatsapp_message_id is required")
	}
	// Kept or indexed, a wamid names a document.
	if err := checkDocID("event.whatsapp_message_id", path.Base(dispatch.IndexPath(wamid))); err != nil {
		return nil, invalid("%v", err)
	}
	switch dispatch.StatusFromProto(ev.GetStatus()) {
	case dispatch.StatusSent, dispatch.StatusDelivered, dispatch.StatusRead, dispatch.StatusFailed:
	default:
		return nil, invalid("event.status %v: want SENT, DELIVERED, READ or FAILED", ev.GetStatus())
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"wamid": wamid, "status": ev.GetStatus().String()})
	entry, found, err := s.store.IndexedMessage(ctx, wamid)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	if found {
		ref, err := indexedRef(entry, wamid)
		if err != nil {
			return nil, err
		}
		if !recipientMatches(ev.GetRecipientId(), entry.Driver) {
			log.WithFields(logrus.Fields{"messagePath": ref.Path(), "reason": "recipient_mismatch"}).Warn("status event's recipient is not the message's driver; ignored")
			s.countApplied(false)
			return &wadispatchv1.ApplyStatusResponse{}, nil
		}
		resp, err := s.applyTo(ctx, ref, ev, log.WithField("messagePath", ref.Path()))
		if err != nil {
			return nil, err
		}
		s.countApplied(resp.GetApplied())
		return resp, nil
	}
	named := ""
	if data := ev.GetBizOpaqueCallbackData(); data != "" {
		cb, err := dispatch.ParseCallback(data)
		if err != nil {
			// Another app sending from the same number may set its own.
			log.WithError(err).Info("status callback data is not wadispatch's; the status is taken without it")
		} else {
			resp, handled, err := s.applyByCallback(ctx, cb, ev, log)
			if err != nil || handled {
				return resp, err
			}
			named = cb.Ref.Path()
		}
	}
	return s.keepPending(ctx, ev, named, log)
}

// recipientMatches reports whether a status's recipient_id (the WhatsApp
// id: the number's digits) is the driver (E.164) its wamid was sent to. A
// recipient given some other way (none, or a business-scoped user id) says
// nothing against it.
func recipientMatches(recipientID, driver string) bool {
	if recipientID == "" || driver == "" || strings.Trim(recipientID, "0123456789") != "" {
		return true
	}
	return "+"+recipientID == driver
}

func indexedRef(e IndexedMessage, wamid string) (dispatch.MessageRef, error) {
	ref, err := dispatch.ParseMessagePath(e.MessagePath)
	if err != nil {
		return ref, status.Errorf(codes.FailedPrecondition, "wamid index entry %s: %v", path.Base(dispatch.IndexPath(wamid)), err)
	}
	return ref, nil
}

// countApplied counts a status event applied to its message, or changing
// nothing there.
func (s *Service) countApplied(applied bool) {
	if applied {
		s.m.statusEvents.WithLabelValues("applied").Inc()
	} else {
		s.m.statusEvents.WithLabelValues("ignored").Inc()
	}
}

// applyTo applies ev to the message ref, whose result recorded its wamid.
func (s *Service) applyTo(ctx context.Context, ref dispatch.MessageRef, ev *wadispatchv1.StatusEvent, log *logrus.Entry) (*wadispatchv1.ApplyStatusResponse, error) {
	var resp *wadispatchv1.ApplyStatusResponse
	err := s.update(ctx, "apply status", ref, nil, func(st *State, _ bool, _ []*wadispatchv1.StatusEvent) (Plan, error) {
		if st == nil {
			return Plan{}, status.Errorf(codes.FailedPrecondition, "message %s has no pipeline state", ref.Path())
		}
		p := decideStatus(st, ev, s.now())
		if !p.apply {
			log.WithField("reason", p.reason).Info("status event changes nothing")
			resp = &wadispatchv1.ApplyStatusResponse{State: st.messageState()}
			return Plan{}, nil
		}
		resp = &wadispatchv1.ApplyStatusResponse{State: p.state.messageState(), Applied: true}
		return Plan{State: &p.state, Message: &p.message}, nil
	})
	if err != nil {
		return nil, err
	}
	if resp.GetApplied() {
		log.Info("status applied")
	}
	return resp, nil
}

// errAncillaryFirst stops a commit that would resolve a send until the
// ancillary record holds its wamid: once committed, the wamid is indexed
// and no later event of it writes the record, so a handler dying in
// between would leave it out for good. Written first, a resolution that
// then does not commit leaves in the record the id of a message WhatsApp
// did send the driver.
var errAncillaryFirst = errors.New("the ancillary record first")

// ancillaryFirst runs commit, whose decision returns errAncillaryFirst and
// the state it would commit when it resolves a send whose wamid is not
// the one written, writing the ancillary record before deciding again.
func (s *Service) ancillaryFirst(ctx context.Context, ref dispatch.MessageRef, log *logrus.Entry, commit func(written string) (*State, error)) error {
	written := ""
	for range 3 {
		st, err := commit(written)
		if !errors.Is(err, errAncillaryFirst) {
			return err
		}
		if err := s.writeAncillary(ctx, ref, st.DriverMobileNumber, []string{st.WhatsappMessageID}, log); err != nil {
			return err
		}
		written = st.WhatsappMessageID
	}
	return status.Errorf(codes.Unavailable, "resolve %s: its state kept changing", ref.Path())
}

// applyByCallback applies ev, of a wamid no result recorded, to the
// message its callback names. handled is false when the callback names no
// claim waiting for it: the caller keeps it by wamid.
func (s *Service) applyByCallback(ctx context.Context, cb dispatch.Callback, ev *wadispatchv1.StatusEvent, log *logrus.Entry) (*wadispatchv1.ApplyStatusResponse, bool, error) {
	log = log.WithFields(logrus.Fields{"messagePath": cb.Ref.Path(), "claimId": cb.ClaimID})
	recordID := uuid.NewString()
	var (
		plan callbackPlan
		out  *State
	)
	err := s.ancillaryFirst(ctx, cb.Ref, log, func(written string) (*State, error) {
		err := s.update(ctx, "apply status", cb.Ref, nil, func(st *State, exists bool, kept []*wadispatchv1.StatusEvent) (Plan, error) {
			if st != nil && st.RecordID == recordID {
				plan, out = callbackPlan{action: callbackResolve, reason: "resolved"}, st // our commit landed; its answer was lost
				return Plan{}, nil
			}
			plan, out = decideCallbackStatus(st, exists, cb.ClaimID, ev, cb.Ref, recordID, kept, s.now()), st
			switch plan.action {
			case callbackApply:
				if !plan.status.apply {
					return Plan{}, nil
				}
				out = &plan.status.state
				return Plan{State: &plan.status.state, Message: &plan.status.message}, nil
			case callbackKeep:
				out = &plan.state
				return Plan{State: &plan.state}, nil
			case callbackResolve:
				out = &plan.record.state
				if out.WhatsappMessageID != written {
					return Plan{}, errAncillaryFirst
				}
				return s.recordedPlan(cb.Ref, plan.record, out.CreatedBy, out.WhatsappMessageID, out.DriverMobileNumber, log), nil
			}
			return Plan{}, nil
		})
		return out, err
	})
	if err != nil {
		return nil, true, err
	}
	switch plan.action {
	case callbackApply:
		s.countApplied(plan.status.apply)
		if plan.status.apply {
			log.Info("status applied")
		} else {
			log.WithField("reason", plan.reason).Info("status event changes nothing")
		}
		return &wadispatchv1.ApplyStatusResponse{State: out.messageState(), Applied: plan.status.apply}, true, nil
	case callbackKeep:
		s.m.statusEvents.WithLabelValues("early").Inc()
		log.WithField("reason", plan.reason).Info("status came before its claim's result; kept on the state until the outcome")
		return &wadispatchv1.ApplyStatusResponse{State: out.messageState(), Kept: true}, true, nil
	case callbackKeptBefore:
		s.m.statusEvents.WithLabelValues("ignored").Inc()
		return &wadispatchv1.ApplyStatusResponse{State: out.messageState(), Kept: true}, true, nil
	case callbackResolve:
		s.m.statusEvents.WithLabelValues("resolved").Inc()
		s.resolvedSend(out.WhatsappMessageID, "unknown", log)
		return &wadispatchv1.ApplyStatusResponse{State: out.messageState(), Applied: true}, true, nil
	}
	log.WithField("why", plan.reason).Info("status callback names no claim waiting for it; kept by wamid")
	return nil, false, nil
}

// resolvedFrom is the resolutions metric's label of a claim resolved from
// st: what it was left as.
func resolvedFrom(st *State) string {
	switch {
	case st.Status == string(dispatch.StatusUnknown):
		return "unknown"
	case st.Released:
		return "released"
	}
	return "expired"
}

// resolvedSend reports a send resolved from WhatsApp's statuses. Those
// kept for its wamid without a callback were applied in the commit that
// indexed it (Plan.Index).
func (s *Service) resolvedSend(wamid, from string, log *logrus.Entry) {
	s.m.resolved.WithLabelValues(from).Inc()
	log.WithFields(logrus.Fields{"wamid": wamid, "resolvedFrom": from}).Info("send resolved from WhatsApp's statuses: recorded as sent, counted once")
}

// keepPending keeps ev on its wamid's index document, which no result
// indexed: named is the message its callback named, if any. A result that
// indexes the wamid creates that document, or, finding statuses kept on
// it, applies them in its commit; one that landed since the index was
// read wrote its entry before this status was kept, so the index is read
// again after keeping.
func (s *Service) keepPending(ctx context.Context, ev *wadispatchv1.StatusEvent, named string, log *logrus.Entry) (*wadispatchv1.ApplyStatusResponse, error) {
	kept := proto.CloneOf(ev)
	kept.RecipientId = ""
	if err := s.store.KeepPendingStatus(ctx, PendingStatus{Event: kept, MessagePath: named, KeptAt: s.now()}); err != nil {
		return nil, storeErr(ctx, err)
	}
	s.m.statusEvents.WithLabelValues("pending").Inc()
	log.WithField("namedMessage", named).Info("status of a wamid no result recorded; kept until one does")
	wamid := ev.GetWhatsappMessageId()
	entry, found, err := s.store.IndexedMessage(ctx, wamid)
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	if found {
		ref, err := indexedRef(entry, wamid)
		if err != nil {
			return nil, err
		}
		if err := s.applyPending(ctx, ref, wamid, log.WithField("messagePath", ref.Path())); err != nil {
			return nil, err
		}
	}
	return &wadispatchv1.ApplyStatusResponse{Kept: true}, nil
}

// applyPending applies to the message ref the statuses kept for wamid, in
// WhatsApp's order, then drops them; statuses kept meanwhile are applied
// on the next turn. Applying twice changes nothing, so a concurrent
// caller doing the same is harmless. (They were counted when kept.)
func (s *Service) applyPending(ctx context.Context, ref dispatch.MessageRef, wamid string, log *logrus.Entry) error {
	for range 5 {
		p, found, err := s.store.PendingStatuses(ctx, wamid)
		if err != nil {
			return storeErr(ctx, err)
		}
		if !found {
			return nil
		}
		sortEvents(p.Events)
		for _, ev := range p.Events {
			elog := log.WithFields(logrus.Fields{"wamid": wamid, "status": ev.GetStatus().String()})
			if _, err := s.applyTo(ctx, ref, ev, elog); err != nil {
				if status.Code(err) != codes.FailedPrecondition {
					return err
				}
				elog.WithError(err).Warn("kept status cannot be applied; dropped")
			}
		}
		dropped, err := s.store.DropPendingStatuses(ctx, p)
		if err != nil {
			return storeErr(ctx, err)
		}
		if dropped {
			log.WithFields(logrus.Fields{"wamid": wamid, "statuses": len(p.Events)}).Info("statuses kept for the wamid applied")
			return nil
		}
	}
	return status.Errorf(codes.Unavailable, "statuses kept for wamid %s kept changing", dispatch.Clip(wamid, 80))
}

// SweepPendingStatuses drops the statuses kept for wamids that no result
// recorded within Config.PendingStatusTTL of the last of them: messages
// wadispatch never sent (a replayed webhook, another system's number), or
// sends that left no result and no claim to resolve. Each drop is counted
// and logged with its wamid. It returns how many wamids it dropped.
func (s *Service) SweepPendingStatuses(ctx context.Context) (int, error) {
	expired, err := s.store.ExpiredPendingStatuses(ctx, s.now().Add(-s.cfg.PendingStatusTTL), 500)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range expired {
		log := s.log.WithField("wamid", p.Wamid)
		// Kept after a result indexed the wamid, by a handler that did not
		// live to apply them.
		if p.Entry != nil {
			ref, err := indexedRef(*p.Entry, p.Wamid)
			if err == nil {
				err = s.applyPending(ctx, ref, p.Wamid, log.WithField("messagePath", ref.Path()))
			}
			if err != nil {
				log.WithError(err).Warn("statuses kept for an indexed wamid not applied; next sweep will try again")
			}
			continue
		}
		dropped, err := s.store.DropPendingStatuses(ctx, p)
		if err != nil {
			return n, err
		}
		if !dropped {
			continue // another status came since: kept longer
		}
		n++
		reason := "never_sent"
		if p.MessagePath != "" {
			reason = "not_recorded"
		}
		s.m.pendingDropped.WithLabelValues(reason).Add(float64(len(p.Events)))
		log.WithFields(logrus.Fields{"reason": reason, "namedMessage": p.MessagePath, "statuses": eventSummary(p.Events),
			"keptAt": p.KeptAt}).Warn("status webhooks of a wamid no result recorded dropped")
	}
	return n, nil
}

// eventSummary names statuses for a log line: their status only.
func eventSummary(evs []*wadispatchv1.StatusEvent) string {
	var out []string
	for _, ev := range evs {
		out = append(out, string(dispatch.StatusFromProto(ev.GetStatus())))
	}
	return strings.Join(out, ",")
}

// earlySummary names kept statuses for a log line.
func earlySummary(es []EarlyStatus) string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%s %s", e.Status, e.Wamid))
	}
	return strings.Join(out, ",")
}
