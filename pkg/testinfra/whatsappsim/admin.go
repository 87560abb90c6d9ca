package whatsappsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// AdminPrefix is the path prefix of the admin API; Graph API paths never start
// with an underscore.
const AdminPrefix = "/_sim/"

// Handler serves the Graph API messages endpoint and, under /_sim/, the admin
// API:
//
//	GET    /_sim/messages[?phone_number_id=&to=]  accepted messages
//	GET    /_sim/counts                           counters
//	POST   /_sim/reset                            forget state (see Reset)
//	GET    /_sim/faults                           installed faults
//	POST   /_sim/faults                           install a Fault (JSON)
//	DELETE /_sim/faults                           remove every fault
//	POST   /_sim/inbound                          record an Inbound (JSON)
//	POST   /_sim/phone-numbers                    {"phone_number_id","token"}
//	POST   /_sim/media                            add media (AddMedia): {"phone_number_id","mime_type","data" (base64)}
//	POST   /_sim/media/{id}/unavailable           GET /{media-id} answers 131052
//	GET    /_sim/media/counts                     media counters
//	POST   /_sim/media/faults                     install a MediaFault (JSON)
//	POST   /_sim/media/url-ttl                    {"ttl":"2s"}: validity of URLs issued from now on
//	POST   /_sim/template-categories              {"name","category"}: prices the template's messages
func (s *Simulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_sim/messages", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		writeJSON(w, http.StatusOK, map[string]any{"messages": s.Messages(q.Get("phone_number_id"), q.Get("to"))})
	})
	mux.HandleFunc("GET /_sim/counts", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Counts())
	})
	mux.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"faults": s.Faults()})
	})
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		if err := decodeAdmin(r, &f); err != nil {
			adminError(w, err)
			return
		}
		if err := s.AddFault(f); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/inbound", func(w http.ResponseWriter, r *http.Request) {
		var in Inbound
		if err := decodeAdmin(r, &in); err != nil {
			adminError(w, err)
			return
		}
		id, err := s.RecordInbound(in)
		if err != nil {
			adminError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": id})
	})
	mux.HandleFunc("POST /_sim/phone-numbers", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			PhoneNumberID string `json:"phone_number_id"`
			Token         string `json:"token"`
		}
		if err := decodeAdmin(r, &p); err != nil {
			adminError(w, err)
			return
		}
		if p.PhoneNumberID == "" || p.Token == "" {
			adminError(w, fmt.Errorf("phone_number_id and token are required"))
			return
		}
		s.AddPhoneNumber(p.PhoneNumberID, p.Token)
		w.WriteHeader(http.StatusNoContent)
	})
	s.mediaAdmin(mux)
	mux.HandleFunc("POST /_sim/template-categories", func(w http.ResponseWriter, r *http.Request) {
		var c struct {
			Name     string `json:"name"`
			Category string `json:"category"`
		}
		if err := decodeAdmin(r, &c); err != nil {
			adminError(w, err)
			return
		}
		if err := s.SetTemplateCategory(c.Name, c.Category); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/templates/status", func(w http.ResponseWriter, r *http.Request) {
		var c struct {
			Name     string `json:"name"`
			Language string `json:"language"`
			Status   string `json:"status"`
			Reason   string `json:"reason"`
		}
		if err := decodeAdmin(r, &c); err != nil {
			adminError(w, err)
			return
		}
		if err := s.SetTemplateStatus(c.Name, c.Language, c.Status, c.Reason); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sim/templates/category", func(w http.ResponseWriter, r *http.Request) {
		var c struct {
			Name     string `json:"name"`
			Category string `json:"category"`
		}
		if err := decodeAdmin(r, &c); err != nil {
			adminError(w, err)
			return
		}
		if err := s.ChangeTemplateCategory(c.Name, c.Category); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc(AdminPrefix, func(w http.ResponseWriter, r *http.Request) {
		adminError(w, fmt.Errorf("no admin route %s %s", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, AdminPrefix) {
			mux.ServeHTTP(w, r)
			return
		}
		if s.serveMedia(w, r) {
			return
		}
		s.serveGraph(w, r)
	})
}

func decodeAdmin(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode request: %w", err)
	}
	return nil
}

func adminError(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
}
