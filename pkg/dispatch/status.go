package dispatch

import (
	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// Status is a message's status as written on its document.
type Status string

// The statuses, as the web app reads them on the chatMessages document.
const (
	StatusSending   Status = "SENDING"
	StatusSent      Status = "SENT"
	StatusDelivered Status = "DELIVERED"
	StatusRead      Status = "READ"
	StatusFailed    Status = "FAILED"
	StatusUnknown   Status = "UNKNOWN"
)

// rank orders the delivery chain; a status may only move up it.
var rank = map[Status]int{StatusSending: 1, StatusSent: 2, StatusDelivered: 3, StatusRead: 4}

// CanMove reports whether a message in status from may move to status to.
// Status only moves forward (SENDING → SENT → DELIVERED → READ), FAILED only
// ends a message not yet delivered, and UNKNOWN (a send whose outcome was
// lost) may be resolved by any later evidence of what happened. A repeated or
// late event is therefore a no-op, never a step back.
func CanMove(from, to Status) bool {
	switch {
	case from == "":
		return true
	case from == to:
		return false
	case from == StatusUnknown:
		return to != StatusSending
	case to == StatusUnknown:
		return from == StatusSending
	case to == StatusFailed:
		return from == StatusSending || from == StatusSent
	case from == StatusFailed:
		// A delivery webhook after a FAILED result proves the message arrived.
		return to == StatusDelivered || to == StatusRead
	}
	rf, okf := rank[from]
	rt, okt := rank[to]
	return okf && okt && rt > rf
}

// Final reports whether no send will be attempted for a message in s any more.
func (s Status) Final() bool { return s != "" && s != StatusSending }

var toProto = map[Status]wadispatchv1.MessageStatus{
	StatusSending:   wadispatchv1.MessageStatus_MESSAGE_STATUS_SENDING,
	StatusSent:      wadispatchv1.MessageStatus_MESSAGE_STATUS_SENT,
	StatusDelivered: wadispatchv1.MessageStatus_MESSAGE_STATUS_DELIVERED,
	StatusRead:      wadispatchv1.MessageStatus_MESSAGE_STATUS_READ,
	StatusFailed:    wadispatchv1.MessageStatus_MESSAGE_STATUS_FAILED,
	StatusUnknown:   wadispatchv1.MessageStatus_MESSAGE_STATUS_UNKNOWN,
}

// Proto is s as the wire enum.
func (s Status) Proto() wadispatchv1.MessageStatus { return toProto[s] }

// StatusFromProto is the inverse of Proto; "" for UNSPECIFIED.
func StatusFromProto(p wadispatchv1.MessageStatus) Status {
	for s, v := range toProto {
		if v == p {
			return s
		}
	}
	return ""
}
