package app

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visn/wadispatch/pkg/dispatch"
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// State is {messagePath}/dispatch/state, the pipeline's record of one
// message. Decisions take one and return the next. The tags name the
// document's fields for the Firestore adapter, which reads a State with
// them and writes one field by field (stateFields there).
type State struct {
	MessagePath        string         `firestore:"messagePath"`
	LeaseID            string         `firestore:"leaseId"`
	EnquiryID          string         `firestore:"enquiryId"`
	MessageID          string         `firestore:"messageId"`
	DriverMobileNumber string         `firestore:"driverMobileNumber"`
	CreatedBy          string         `firestore:"createdBy"`
	Status             string         `firestore:"status"`
	Outcome            string         `firestore:"outcome"`
	ClaimID            string         `firestore:"claimId"`
	Claimant           string         `firestore:"claimant"`
	Claims             int64          `firestore:"claims"`
	ClaimedAt          time.Time      `firestore:"claimedAt"`
	LeaseExpiresAt     time.Time      `firestore:"leaseExpiresAt"`
	WhatsappMessageID  string         `firestore:"whatsappMessageId"`
	Error              *errorDoc      `firestore:"error"`
	Reason             string         `firestore:"reason"`
	Attempts           int64          `firestore:"attempts"`
	RecordID           string         `firestore:"recordId"`
	ResendRequested    bool           `firestore:"resendRequested"`
	ResendRequestedBy  string         `firestore:"resendRequestedBy"`
	ResendRequestedAt  time.Time      `firestore:"resendRequestedAt"`
	Released           bool           `firestore:"released"`
	ReleasedAt         time.Time      `firestore:"releasedAt"`
	ReleaseReason      string         `firestore:"releaseReason"`
	CreatedAt          time.Time      `firestore:"createdAt"`
	SentAt             time.Time      `firestore:"sentAt"`
	FailedAt           time.Time      `firestore:"failedAt"`
	DeliveredAt        time.Time      `firestore:"deliveredAt"`
	ReadAt             time.Time      `firestore:"readAt"`
	UpdatedAt          time.Time      `firestore:"updatedAt"`
	Task               map[string]any `firestore:"task"`
	// EarlyStatuses are status webhooks of the current claim's call (its
	// biz_opaque_callback_data names the claim) that came before the
	// claim's outcome: applied when the result lands, or resolving the
	// claim when it would be left behind (see resolvedBy).
	EarlyStatuses []EarlyStatus `firestore:"earlyStatuses"`
	// Pricing is WhatsApp's pricing of the message, from the first status
	// that stated one; nil until then. Once set the message is counted in
	// its lease's cost ledger, and never again.
	Pricing *Pricing `firestore:"pricing"`
}

// EarlyStatus is a status webhook kept on the state until its claim's
// outcome is recorded. The recipient (a phone number) is not kept: nothing
// needs it.
type EarlyStatus struct {
	ClaimID string `firestore:"claimId"`
	Wamid   string `firestore:"wamid"`
	Status  string `firestore:"status"`
	// At is WhatsApp's time of the status (when it had none, when kept).
	At         time.Time `firestore:"at"`
	Error      *errorDoc `firestore:"error,omitempty"`
	ReceivedAt time.Time `firestore:"receivedAt"`
	// Pricing is the status's pricing, if it stated one: applied with the
	// status, it prices the message.
	Pricing *Pricing `firestore:"pricing,omitempty"`
}

// event is the status as the status decisions take it.
func (e EarlyStatus) event() *wadispatchv1.StatusEvent {
	ev := &wadispatchv1.StatusEvent{WhatsappMessageId: e.Wamid, Status: dispatch.Status(e.Status).Proto(), Timestamp: ts(e.At)}
	if e.Error != nil {
		ev.Errors = []*wadispatchv1.WhatsAppError{e.Error.proto()}
	}
	if e.Pricing != nil {
		ev.Pricing = &wadispatchv1.StatusPricing{PricingModel: e.Pricing.PricingModel, Category: e.Pricing.Category, Type: e.Pricing.Type}
	}
	return ev
}

// errorDoc is a WhatsApp error as stored, on the state and on the message
// document (whatsappError).
type errorDoc struct {
	Code       int64  `firestore:"code"`
	Subcode    int64  `firestore:"subcode"`
	Type       string `firestore:"type"`
	Message    string `firestore:"message"`
	Details    string `firestore:"details"`
	FbtraceID  string `firestore:"fbtraceId"`
	HTTPStatus int64  `firestore:"httpStatus"`
	Retryable  bool   `firestore:"retryable"`
	Reason     string `firestore:"reason"`
}

func errorDocOf(e *wadispatchv1.WhatsAppError) *errorDoc {
	return &errorDoc{Code: int64(e.GetCode()), Subcode: int64(e.GetSubcode()), Type: e.GetType(), Message: e.GetMessage(),
		Details: e.GetDetails(), FbtraceID: e.GetFbtraceId(), HTTPStatus: int64(e.GetHttpStatus()), Retryable: e.GetRetryable(), Reason: e.GetReason()}
}

// MessageUpdate is what a decision changes on the message document, the
// web app's view of the send: fields set are written, Clear* deletes a
// previous attempt's explanation, anything else is left as it is.
type MessageUpdate struct {
	// Status, when set, is written with StatusUpdatedAt.
	Status            dispatch.Status
	StatusUpdatedAt   time.Time
	StatusReason      string
	WhatsappMessageID string
	// Error, when set, is written with FailureReason; FailureReason may be
	// set alone (a refusal: nothing reached WhatsApp).
	Error                                 *errorDoc
	FailureReason                         string
	SentAt, FailedAt, DeliveredAt, ReadAt time.Time
	// ClearStatusReason deletes statusReason, ClearFailure whatsappError
	// and failureReason.
	ClearStatusReason, ClearFailure bool
	// Pricing, when set, is written as pricing: set once per message.
	Pricing *Pricing
}

func (e *errorDoc) proto() *wadispatchv1.WhatsAppError {
	if e == nil {
		return nil
	}
	return &wadispatchv1.WhatsAppError{
		Code: int32(e.Code), Subcode: int32(e.Subcode), Type: e.Type, Message: e.Message,
		Details: e.Details, FbtraceId: e.FbtraceID, HttpStatus: int32(e.HTTPStatus),
		Retryable: e.Retryable, Reason: e.Reason,
	}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// messageState is the state as the API returns it.
// readState is the state as operators read it: without the claim id, which
// is all a ReleaseClaim needs, so that only the claim's holder knows it.
func (s *State) readState() *wadispatchv1.MessageState {
	m := s.messageState()
	m.ClaimId = ""
	return m
}

func (s *State) messageState() *wadispatchv1.MessageState {
	return &wadispatchv1.MessageState{
		MessageDocId:       s.MessagePath,
		LeaseId:            s.LeaseID,
		EnquiryId:          s.EnquiryID,
		MessageId:          s.MessageID,
		DriverMobileNumber: s.DriverMobileNumber,
		CreatedBy:          s.CreatedBy,
		Status:             dispatch.Status(s.Status).Proto(),
		WhatsappMessageId:  s.WhatsappMessageID,
		Error:              s.Error.proto(),
		Reason:             s.Reason,
		ClaimId:            s.ClaimID,
		Claimant:           s.Claimant,
		Attempts:           int32(s.Attempts),
		CreatedAt:          ts(s.CreatedAt),
		ClaimedAt:          ts(s.ClaimedAt),
		SentAt:             ts(s.SentAt),
		DeliveredAt:        ts(s.DeliveredAt),
		ReadAt:             ts(s.ReadAt),
		UpdatedAt:          ts(s.UpdatedAt),
		Released:           s.Released,
		ReleasedAt:         ts(s.ReleasedAt),
		ReleaseReason:      s.ReleaseReason,
	}
}

// result is the recorded outcome as the sender needs it on a redelivery.
func (s *State) result() *wadispatchv1.SendResult {
	r := &wadispatchv1.SendResult{
		MessageDocId:       s.MessagePath,
		LeaseId:            s.LeaseID,
		EnquiryId:          s.EnquiryID,
		MessageId:          s.MessageID,
		DriverMobileNumber: s.DriverMobileNumber,
		CreatedBy:          s.CreatedBy,
		ClaimId:            s.ClaimID,
		WhatsappMessageId:  s.WhatsappMessageID,
		Error:              s.Error.proto(),
		Attempts:           int32(s.Attempts),
		CreatedAt:          ts(s.CreatedAt),
	}
	switch dispatch.Status(s.Outcome) {
	case dispatch.StatusSent:
		r.Outcome = wadispatchv1.Outcome_OUTCOME_SENT
		r.CompletedAt = ts(s.SentAt)
	case dispatch.StatusFailed:
		r.Outcome = wadispatchv1.Outcome_OUTCOME_FAILED
		r.CompletedAt = ts(s.FailedAt)
	}
	return r
}

// taskFields stores a SendTask as its protobuf JSON: readable in the
// console and restored losslessly for a resend. The task never holds a
// token (only a reference), so storing it stores no secret.
func taskFields(t *wadispatchv1.SendTask) (map[string]any, error) {
	b, err := protojson.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("task to JSON: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("task JSON to map: %w", err)
	}
	return m, nil
}

// storedTask is the inverse of taskFields.
func storedTask(m map[string]any) (*wadispatchv1.SendTask, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("no task stored")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("stored task to JSON: %w", err)
	}
	var t wadispatchv1.SendTask
	if err := protojson.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("stored task: %w", err)
	}
	return &t, nil
}
