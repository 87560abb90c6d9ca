package whatsappsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/visn/wadispatch/pkg/whatsapp"
	"golang.org/x/time/rate"
)

// apiError is Meta's error answer, built by the simulator.
type apiError struct {
	status  int
	code    int
	subcode int
	typ     string
	details string
}

func newAPIError(code int, details string) *apiError {
	status := http.StatusBadRequest
	if _, s, ok := whatsapp.Documented(code); ok {
		status = s
	}
	return &apiError{status: status, code: code, typ: "OAuthException", details: details}
}

func (e *apiError) write(w http.ResponseWriter) {
	title := "Error"
	if t, _, ok := whatsapp.Documented(e.code); ok {
		title = t
	}
	body := map[string]any{
		"message": fmt.Sprintf("(#%d) %s", e.code, title),
		"type":    e.typ,
		"code":    e.code,
		"error_data": map[string]string{
			"messaging_product": "whatsapp",
			"details":           e.details,
		},
		"fbtrace_id": fbtraceID(),
	}
	if e.subcode != 0 {
		body["error_subcode"] = e.subcode
	}
	writeJSON(w, e.status, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var messagesPath = regexp.MustCompile(`^/(v[0-9]+\.[0-9]+)/([^/]+)/messages$`)

const maxRequestBody = 1 << 20

// serveGraph handles POST /{api-version}/{phone-number-id}/messages and
// GET /{api-version}/{waba-id}/message_templates.
func (s *Simulator) serveGraph(w http.ResponseWriter, r *http.Request) {
	if s.serveTemplates(w, r) {
		return
	}
	s.mu.Lock()
	s.counts.Requests++
	s.mu.Unlock()
	if s.opts.Latency > 0 {
		sleep(r, s.opts.Latency)
	}

	m := messagesPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		e := newAPIError(100, fmt.Sprintf("Unknown path components: %s", r.URL.Path))
		s.reject(w, e)
		return
	}
	phoneID := m[2]
	if e := s.authenticate(r, phoneID); e != nil {
		s.reject(w, e)
		return
	}
	if r.Method != http.MethodPost {
		s.reject(w, newAPIError(100, fmt.Sprintf("Unsupported %s request", strings.ToLower(r.Method))))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		s.reject(w, newAPIError(100, "could not read the request body"))
		return
	}
	msg, e := validate(body, s.templates)
	if e == nil {
		e = s.checkMediaID(phoneID, msg)
	}
	if e == nil {
		e = s.checkTemplateStatus(msg)
	}
	if e != nil {
		s.reject(w, e)
		return
	}

	for _, f := range s.latencyFaults(phoneID, msg.to) {
		sleep(r, time.Duration(f.Latency))
	}

	now := time.Now()
	if e := s.checkLimits(phoneID, msg, now); e != nil {
		s.reject(w, e)
		return
	}

	fault, fired := s.fire(phoneID, msg.to)
	if fired {
		switch fault.Kind {
		case FaultError:
			e := newAPIError(fault.Code, fault.Details)
			if fault.HTTPStatus != 0 {
				e.status = fault.HTTPStatus
			}
			s.reject(w, e)
			return
		case FaultHTTPStatus:
			status := fault.HTTPStatus
			if status == 0 {
				status = http.StatusBadGateway
			}
			s.mu.Lock()
			s.counts.HTTPStatusFaults++
			s.mu.Unlock()
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			_, _ = fmt.Fprintf(w, "<html><body>%d %s</body></html>", status, http.StatusText(status))
			return
		case FaultDrop:
			s.drop(w)
			return
		}
	}

	acc := s.accept(phoneID, msg, body, now)
	s.log.WithFields(map[string]any{"phone_number_id": phoneID, "to": msg.to, "type": msg.typ, "wamid": acc.WAMID}).Info("accepted message")
	failCode := 0
	if fired && fault.Kind == FaultFailLater {
		failCode = fault.Code
		if failCode == 0 {
			failCode = 131026
		}
	}
	s.scheduleStatuses(acc, failCode)

	if fired && fault.Kind == FaultSlowAnswer {
		sleep(r, time.Duration(fault.Latency))
	}
	if fired && fault.Kind == FaultDropAfterAccept {
		s.drop(w)
		return
	}
	resp := map[string]any{
		"messaging_product": "whatsapp",
		"contacts":          []map[string]string{{"input": msg.to, "wa_id": acc.WaID}},
	}
	out := map[string]string{"id": acc.WAMID}
	if msg.typ == "template" {
		out["message_status"] = "accepted"
	}
	resp["messages"] = []map[string]string{out}
	writeJSON(w, http.StatusOK, resp)
}

func sleep(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func (s *Simulator) reject(w http.ResponseWriter, e *apiError) {
	s.mu.Lock()
	if s.counts.RejectedByCode == nil {
		s.counts.RejectedByCode = map[int]int{}
	}
	s.counts.RejectedByCode[e.code]++
	s.mu.Unlock()
	s.log.WithFields(map[string]any{"code": e.code, "http_status": e.status, "details": e.details}).Info("rejected call")
	e.write(w)
}

// drop closes the client's connection without an answer.
func (s *Simulator) drop(w http.ResponseWriter) {
	s.mu.Lock()
	s.counts.Dropped++
	s.mu.Unlock()
	hj, ok := w.(http.Hijacker)
	if !ok {
		// HTTP/2 cannot hijack; aborting the handler resets the stream.
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// authenticate checks the bearer token as the Graph API does: no token or a
// token unknown for this phone number is 190 (HTTP 401); a valid token used on
// another business's phone number ID is 100 with subcode 33.
func (s *Simulator) authenticate(r *http.Request, phoneID string) *apiError {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		e := newAPIError(190, "An access token is required to request this resource.")
		e.status = http.StatusUnauthorized
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if want, known := s.tokens[phoneID]; known && want == token {
		return nil
	}
	for id, t := range s.tokens {
		if t == token && id != phoneID {
			if _, known := s.tokens[phoneID]; !known {
				e := newAPIError(100, fmt.Sprintf("Unsupported post request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation.", phoneID))
				e.subcode = 33
				return e
			}
		}
	}
	e := newAPIError(190, "Invalid OAuth access token - Cannot parse access token")
	e.status = http.StatusUnauthorized
	return e
}

// checkLimits applies the customer-service window, the phone number's
// throughput and the pair rate limit. A refused message takes no share of
// either limit, so a burst of refusals does not delay later messages.
func (s *Simulator) checkLimits(phoneID string, msg *message, now time.Time) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Text and interactive messages are free-form: only templates may reach
	// a driver who has not written within the window.
	if s.opts.EnforceWindow && (msg.typ == "text" || msg.typ == "interactive") {
		last, ok := s.windows[phoneID+"/"+msg.waID]
		if !ok || now.Sub(last) > s.opts.Window {
			return newAPIError(131047, "Message failed to send because more than 24 hours have passed since the customer last replied to this number.")
		}
	}
	var taken []*rate.Reservation
	undo := func() {
		for _, r := range taken {
			r.CancelAt(now)
		}
	}
	if s.opts.Throughput > 0 {
		l := s.throughput[phoneID]
		if l == nil {
			l = rate.NewLimiter(rate.Limit(s.opts.Throughput), s.opts.Throughput)
			s.throughput[phoneID] = l
		}
		r := l.ReserveN(now, 1)
		taken = append(taken, r)
		if r.DelayFrom(now) > 0 {
			undo()
			e := newAPIError(130429, "Message failed to send because there were too many messages sent from this phone number in a short period of time.")
			e.status = s.opts.ThrottleStatus
			return e
		}
	}
	if s.opts.PairInterval > 0 {
		key := phoneID + "/" + msg.waID
		l := s.pairs[key]
		if l == nil {
			l = rate.NewLimiter(rate.Every(s.opts.PairInterval), s.opts.PairBurst)
			s.pairs[key] = l
		}
		r := l.ReserveN(now, 1)
		taken = append(taken, r)
		if r.DelayFrom(now) > 0 {
			undo()
			e := newAPIError(131056, "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.")
			e.status = s.opts.ThrottleStatus
			return e
		}
	}
	return nil
}

// latencyFaults returns the latency faults matching a call, consuming their
// Times.
func (s *Simulator) latencyFaults(phoneID, to string) []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Fault
	kept := s.faults[:0]
	for _, f := range s.faults {
		if f.Kind == FaultLatency && f.matches(phoneID, to) && s.roll(f) {
			out = append(out, f)
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					continue
				}
			}
		}
		kept = append(kept, f)
	}
	s.faults = kept
	return out
}

// fire returns the first non-latency fault that fires for a call, consuming
// one of its Times.
func (s *Simulator) fire(phoneID, to string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Kind == FaultLatency || !f.matches(phoneID, to) || !s.roll(f) {
			continue
		}
		if f.Times > 0 {
			s.faults[i].Times--
			if s.faults[i].Times == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return f, true
	}
	return Fault{}, false
}

func (f Fault) matches(phoneID, to string) bool {
	return (f.PhoneNumberID == "" || f.PhoneNumberID == phoneID) && (f.To == "" || normalize(f.To) == normalize(to))
}

func (s *Simulator) roll(f Fault) bool {
	return f.Probability == 0 || f.Probability >= 1 || s.rng.Float64() < f.Probability
}

func (s *Simulator) accept(phoneID string, msg *message, body []byte, now time.Time) Accepted {
	acc := Accepted{
		WAMID:         s.newWAMID(),
		PhoneNumberID: phoneID,
		To:            msg.to,
		WaID:          msg.waID,
		Type:          msg.typ,
		Text:          msg.text,
		Template:      msg.template,
		Interactive:   msg.interactive,
		Media:         msg.media,
		CallbackData:  msg.callbackData,
		Body:          append(json.RawMessage(nil), body...),
		AcceptedAt:    now,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	acc.Pricing = s.pricingLocked(phoneID, msg, now)
	s.counts.Accepted++
	acc.Seq = s.counts.Accepted
	if s.counts.AcceptedByRecipient == nil {
		s.counts.AcceptedByRecipient = map[string]int{}
	}
	s.counts.AcceptedByRecipient[msg.waID]++
	s.messages = append(s.messages, acc)
	return acc
}
