package whatsappsim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/visn/wadispatch/pkg/testinfra/whatsappsim"
	"github.com/visn/wadispatch/pkg/whatsapp"
)

// pricings are the pricing objects of the status webhooks received, by
// wamid, as "status=category/type/billable" (read: none).
func (rc *receiver) pricings(t *testing.T) map[string][]string {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]string{}
	for _, b := range rc.bodies {
		var w struct {
			Entry []struct {
				Changes []struct {
					Value struct {
						Statuses []struct {
							ID      string `json:"id"`
							Status  string `json:"status"`
							Pricing *struct {
								Billable     bool   `json:"billable"`
								PricingModel string `json:"pricing_model"`
								Category     string `json:"category"`
								Type         string `json:"type"`
							} `json:"pricing"`
						} `json:"statuses"`
					} `json:"value"`
				} `json:"changes"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatal(err)
		}
		for _, s := range w.Entry[0].Changes[0].Value.Statuses {
			v := "none"
			if p := s.Pricing; p != nil {
				if p.PricingModel != "PMP" {
					t.Errorf("pricing model %q", p.PricingModel)
				}
				v = p.Category + "/" + p.Type
				if p.Billable {
					v += "/billable"
				}
			}
			out[s.ID] = append(out[s.ID], s.Status+"="+v)
		}
	}
	return out
}

// Sent and delivered statuses price a message as Meta does under
// per-message pricing: a free-form message in the window is free service,
// a template is charged in its category (utility unless set), and a
// utility template in the window is free.
func TestStatusesPriceMessages(t *testing.T) {
	rc := &receiver{}
	e := startWithReceiver(t, rc, func(o *whatsappsim.Options) {
		o.EnforceWindow = true
		o.TemplateCategories = map[string]string{"otp": "authentication"}
	})
	if _, err := e.sim.RecordInbound(whatsappsim.Inbound{PhoneNumberID: phoneID, From: "+" + driver, Text: "ok"}); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, e.srv.URL+"/_sim/template-categories", "", `{"name":"promo","category":"marketing"}`); code != http.StatusNoContent {
		t.Fatalf("set category: %d %s", code, body)
	}
	if code, _ := post(t, e.srv.URL+"/_sim/template-categories", "", `{"name":"promo","category":"free"}`); code != http.StatusBadRequest {
		t.Fatalf("an unknown category: %d", code)
	}
	template := func(to, name string) whatsapp.Message {
		m, err := whatsapp.TemplateMessage(to, name, "en_GB", nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	const stranger = "447700900199"
	want := map[string]string{}
	for msg, pricing := range map[*whatsapp.Message]string{
		ptr(text(driver, "hi")):               "service/free_customer_service",
		ptr(template(driver, "eta_update")):   "utility/free_customer_service",
		ptr(template(stranger, "eta_update")): "utility/regular/billable",
		ptr(template(stranger, "promo")):      "marketing/regular/billable",
		ptr(template(stranger, "otp")):        "authentication/regular/billable",
	} {
		sent, err := e.send(t, *msg)
		if err != nil {
			t.Fatal(err)
		}
		want[sent.MessageID] = "sent=" + pricing + ",delivered=" + pricing + ",read=none"
	}
	waitHooks(t, e)
	got := rc.pricings(t)
	for wamid, w := range want {
		if g := strings.Join(got[wamid], ","); g != w {
			t.Errorf("statuses of %s: %s, want %s", wamid, g, w)
		}
	}
	for _, m := range e.sim.Messages("", "") {
		p := m.Pricing.Category + "/" + m.Pricing.Type
		if !strings.Contains(want[m.WAMID], "sent="+p) || m.Pricing.PricingModel != "PMP" {
			t.Errorf("accepted %s priced %+v, statuses %s", m.WAMID, m.Pricing, want[m.WAMID])
		}
	}
}

func ptr[T any](v T) *T { return &v }
