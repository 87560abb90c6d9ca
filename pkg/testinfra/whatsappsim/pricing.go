package whatsappsim

import (
	"fmt"
	"time"
)

// Pricing is how WhatsApp prices an accepted message under per-message
// pricing (from 1 July 2025), as its sent and delivered statuses state it
// (statuses[].pricing, developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status).
type Pricing struct {
	// PricingModel is "PMP".
	PricingModel string `json:"pricing_model"`
	// Category is the template's category (marketing, utility,
	// authentication), or "service" for a free-form message.
	Category string `json:"category"`
	// Type is "regular" (charged) or "free_customer_service": free-form
	// messages, and utility templates sent within the customer-service
	// window. (Free entry point conversations are not simulated.)
	Type string `json:"type"`
}

// DefaultTemplateCategory is the category of a template given none
// (Options.TemplateCategories, SetTemplateCategory).
const DefaultTemplateCategory = "utility"

// templateCategories are the categories Meta approves templates in.
var templateCategories = map[string]bool{"marketing": true, "utility": true, "authentication": true}

func checkTemplateCategory(name, category string) error {
	if name == "" || !templateCategories[category] {
		return fmt.Errorf("template category %q of %q: want a template name and marketing, utility or authentication", category, name)
	}
	return nil
}

// SetTemplateCategory sets the category of the template name, in every
// language; its messages accepted from now on are priced in it.
func (s *Simulator) SetTemplateCategory(name, category string) error {
	if err := checkTemplateCategory(name, category); err != nil {
		return fmt.Errorf("whatsappsim: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.categories[name] = category
	return nil
}

// pricingLocked prices msg from phoneID accepted at now; s.mu is held.
func (s *Simulator) pricingLocked(phoneID string, msg *message, now time.Time) Pricing {
	p := Pricing{PricingModel: "PMP", Category: "service", Type: "free_customer_service"}
	if msg.template == nil {
		return p
	}
	p.Category, p.Type = DefaultTemplateCategory, "regular"
	if c, ok := s.categories[msg.template.Name]; ok {
		p.Category = c
	}
	last, open := s.windows[phoneID+"/"+msg.waID]
	if p.Category == "utility" && open && now.Sub(last) <= s.opts.Window {
		p.Type = "free_customer_service"
	}
	return p
}
