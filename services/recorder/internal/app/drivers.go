package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/consume"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/logging"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// A driver's record per lease, leasecompany/{leaseId}/whatsappDrivers/
// {driverE164}: what WhatsApp's rules say of sending to the driver, kept
// where ingest reads it with the message (one read) before a send:
//
//   - the driver's choice: stopped (a STOP keyword of the lease, WhatsApp's
//     user_preferences webhook, or error 131050 "user stopped marketing
//     messages") or resumed (START, user_preferences); the latest choice
//     wins, a late or repeated one changes nothing;
//   - undeliverable: the messages WhatsApp answered 131026 for; three of
//     them mark the driver unreachable, until the driver writes again;
//   - a changed number (user_changed_number): the old number's record
//     names the new one, so a send to the old number is refused with the
//     reason, and the new number's names the old.
//
// Ingest enforces them (refusals); operators see them with wadispatchctl
// driver.

// UnreachableAfter is how many undeliverable messages (131026) mark a
// driver unreachable.
const UnreachableAfter = 3

// WhatsApp errors that change a driver's record.
const (
	codeMarketingStopped = 131050
	codeUndeliverable    = 131026
)

// Sources of a driver's choice beside ingest's.
const sourceError131050 = "whatsapp_131050"

// Preference is a driver's choice as the record keeps it.
type Preference struct {
	Stop           bool
	Source, Detail string
	Wamid          string
	At             time.Time
}

// DriverRecord is a driver's record of one lease, as read.
type DriverRecord struct {
	OptedOut                   bool
	OptOutSource, OptOutDetail string
	PreferenceAt               time.Time
	Undeliverable              int
	Unreachable                bool
	ChangedTo, ChangedFrom     string
	ChangedAt                  time.Time
}

// Drivers is the default database as the drivers' records need it; the
// Firestore Store implements it.
type Drivers interface {
	// RecordPreference applies p to the driver's record of the lease
	// unless a later choice is recorded; true when it did.
	RecordPreference(ctx context.Context, leaseID, driver string, p Preference) (bool, error)
	// RecordUndeliverable adds messagePath to the driver's undeliverable
	// messages of the lease (once however often repeated) and marks the
	// driver unreachable from UnreachableAfter of them; true when it
	// did now.
	RecordUndeliverable(ctx context.Context, leaseID, driver, messagePath string, at time.Time) (bool, error)
	// ClearUndeliverable forgets them once the driver writes: a driver
	// who writes is reachable.
	ClearUndeliverable(ctx context.Context, leaseID, driver string) error
	// RecordNumberChange links the records of the old and new numbers.
	RecordNumberChange(ctx context.Context, leaseID, oldDriver, newDriver string, at time.Time) error
	// Driver reads the driver's record of the lease; false when none.
	Driver(ctx context.Context, leaseID, driver string) (DriverRecord, bool, error)
}

// Supersedes says whether choice p replaces the one a record holds, made
// at heldAt by the driver's messages heldWamids (a zero heldAt: none).
// The latest wins; WhatsApp's timestamps are whole seconds, so a STOP
// and a START of the same second cannot be ordered by time: the one that
// comes later wins, unless it is a redelivery of a message already
// applied (its wamid is held), which changes nothing.
func Supersedes(heldAt time.Time, heldWamids []string, p Preference) bool {
	switch {
	case heldAt.IsZero() || p.At.After(heldAt):
		return true
	case p.At.Equal(heldAt) && p.Wamid != "":
		for _, w := range heldWamids {
			if w == p.Wamid {
				return false
			}
		}
		return true
	}
	return false
}

var schemaPreference = string(proto.MessageName(&wadispatchv1.DriverPreference{}))

func (s *Service) handlePreference(ctx context.Context, data []byte) consume.Verdict {
	var p wadispatchv1.DriverPreference
	if err := proto.Unmarshal(data, &p); err != nil {
		return poison(logging.WithContext(ctx, s.log), "undecodable", fmt.Errorf("decode DriverPreference: %w", err))
	}
	log := logging.WithContext(ctx, s.log).WithFields(logrus.Fields{"leaseIds": p.GetLeaseIds(), "choice": p.GetChoice().String(), "source": p.GetSource(), "wamid": p.GetWhatsappMessageId()})
	applied, err := s.RecordPreference(ctx, &p)
	if err != nil {
		return verdictOf(log, err)
	}
	reason := "preference_stale"
	if applied {
		reason = "preference_recorded"
	}
	s.m.inbound.WithLabelValues(reason).Inc()
	log.WithField("outcome", reason).Info("driver's choice recorded")
	return consume.Verdict{Ack: true, Reason: reason}
}

// RecordPreference keeps a driver's stop or resume on their record of each
// lease of the business number; it reports whether any changed.
func (s *Service) RecordPreference(ctx context.Context, p *wadispatchv1.DriverPreference) (bool, error) {
	driver := p.GetDriver()
	if !strings.HasPrefix(driver, "+") || checkDocID("driver", driver) != nil {
		return false, invalid("preference driver is not E.164")
	}
	if len(p.GetLeaseIds()) == 0 {
		return false, invalid("preference lease_ids: a choice needs the leases of its business number")
	}
	var stop bool
	switch p.GetChoice() {
	case wadispatchv1.DriverPreference_CHOICE_STOP:
		stop = true
	case wadispatchv1.DriverPreference_CHOICE_RESUME:
	default:
		return false, invalid("preference choice %v: want STOP or RESUME", p.GetChoice())
	}
	at := s.now()
	if t := p.GetTimestamp(); t.IsValid() {
		at = t.AsTime()
	}
	pref := Preference{Stop: stop, Source: dispatch.Clip(p.GetSource(), 40), Detail: dispatch.Clip(p.GetDetail(), 200), Wamid: p.GetWhatsappMessageId(), At: at}
	any := false
	for _, lease := range p.GetLeaseIds() {
		if err := checkDocID("lease_ids", lease); err != nil {
			return false, invalid("preference %v", err)
		}
		applied, err := s.drivers.RecordPreference(ctx, lease, driver, pref)
		if err != nil {
			return false, storeErr(ctx, err)
		}
		any = any || applied
	}
	return any, nil
}

// noteFailure keeps on the driver's record what a failed send's WhatsApp
// error says of the driver: 131050 is a stop, 131026 one undeliverable
// message more. Repeats change nothing.
func (s *Service) noteFailure(ctx context.Context, ref dispatch.MessageRef, driver string, errs []*wadispatchv1.WhatsAppError, at time.Time, log *logrus.Entry) error {
	if driver == "" || checkDocID("driver", driver) != nil {
		return nil
	}
	for _, e := range errs {
		switch e.GetCode() {
		case codeMarketingStopped:
			if _, err := s.drivers.RecordPreference(ctx, ref.LeaseID, driver, Preference{Stop: true, Source: sourceError131050, Detail: dispatch.Clip(e.GetMessage(), 200), At: at}); err != nil {
				return storeErr(ctx, err)
			}
		case codeUndeliverable:
			now, err := s.drivers.RecordUndeliverable(ctx, ref.LeaseID, driver, ref.Path(), at)
			if err != nil {
				return storeErr(ctx, err)
			}
			if now {
				log.WithField("reason", "unreachable").Warn("driver marked unreachable: WhatsApp could not deliver several messages (131026)")
			}
		}
	}
	return nil
}

// GetDriver implements wadispatchv1.RecorderServer.
func (s *Service) GetDriver(ctx context.Context, req *wadispatchv1.GetDriverRequest) (*wadispatchv1.GetDriverResponse, error) {
	if err := checkDocID("lease_id", req.GetLeaseId()); err != nil {
		return nil, invalid("%v", err)
	}
	if !strings.HasPrefix(req.GetDriverMobileNumber(), "+") || checkDocID("driver_mobile_number", req.GetDriverMobileNumber()) != nil {
		return nil, invalid("driver_mobile_number: want E.164")
	}
	rec, found, err := s.drivers.Driver(ctx, req.GetLeaseId(), req.GetDriverMobileNumber())
	if err != nil {
		return nil, storeErr(ctx, err)
	}
	resp := &wadispatchv1.GetDriverResponse{Found: found, OptedOut: rec.OptedOut, OptOutSource: rec.OptOutSource, OptOutDetail: rec.OptOutDetail,
		Undeliverable: int32(rec.Undeliverable), Unreachable: rec.Unreachable, ChangedTo: rec.ChangedTo, ChangedFrom: rec.ChangedFrom}
	if !rec.PreferenceAt.IsZero() {
		resp.PreferenceAt = timestamppb.New(rec.PreferenceAt)
	}
	if !rec.ChangedAt.IsZero() {
		resp.ChangedAt = timestamppb.New(rec.ChangedAt)
	}
	return resp, nil
}
