package chatmessage

import (
	"fmt"
	"strconv"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// WhatsAppConfig is a lease's WhatsApp configuration, read from the
// `whatsappConfig` map of leasecompany/{leaseId}. TokenRef names the secret
// holding the access token; it is never resolved here, and never logged
// (log TokenRef != "" instead).
type WhatsAppConfig struct {
	PhoneNumberID     string
	APIVersion        string
	TokenRef          string
	TemplateLanguage  string
	BusinessAccountID string
}

// Details is the configuration as the pipeline's messages carry it.
func (c WhatsAppConfig) Details() *wadispatchv1.LeaseWhatsappDetails {
	return &wadispatchv1.LeaseWhatsappDetails{
		PhoneNumberId:     c.PhoneNumberID,
		ApiVersion:        c.APIVersion,
		TokenRef:          c.TokenRef,
		TemplateLanguage:  c.TemplateLanguage,
		BusinessAccountId: c.BusinessAccountID,
	}
}

// ConfigDefaults fill what a lease's configuration may leave out.
type ConfigDefaults struct {
	// APIVersion of the Cloud API, e.g. "v23.0".
	APIVersion string
	// TemplateLanguage, e.g. "en_US".
	TemplateLanguage string
}

// ParseWhatsAppConfig reads the configuration from the lease document's
// fields; lease is nil when the document does not exist. A lease without a
// usable configuration (no document, no map, no phoneNumberId or tokenRef)
// is a no_whatsapp_config rejection.
//
// phoneNumberId and businessAccountId are numeric ids in Meta's API; an
// integer value is accepted and written in decimal, since a JavaScript or
// console write may store them as numbers.
func ParseWhatsAppConfig(lease map[string]any, d ConfigDefaults) (WhatsAppConfig, error) {
	if lease == nil {
		return WhatsAppConfig{}, &Rejection{Reason: ReasonNoWhatsAppConfig, Detail: "the lease document does not exist"}
	}
	raw, ok := lease["whatsappConfig"]
	if !ok || raw == nil {
		return WhatsAppConfig{}, &Rejection{Reason: ReasonNoWhatsAppConfig, Field: "whatsappConfig", Detail: "the lease has no whatsappConfig"}
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return WhatsAppConfig{}, &Rejection{Reason: ReasonNoWhatsAppConfig, Field: "whatsappConfig", Detail: fmt.Sprintf("is a %s, want a map", typeName(raw))}
	}
	var cfg WhatsAppConfig
	var err error
	if cfg.PhoneNumberID, err = configID(m, "phoneNumberId"); err != nil {
		return WhatsAppConfig{}, err
	}
	if cfg.TokenRef, err = configString(m, "tokenRef"); err != nil {
		return WhatsAppConfig{}, err
	}
	if cfg.PhoneNumberID == "" {
		return WhatsAppConfig{}, &Rejection{Reason: ReasonNoWhatsAppConfig, Field: "phoneNumberId", Detail: "is missing"}
	}
	if cfg.TokenRef == "" {
		return WhatsAppConfig{}, &Rejection{Reason: ReasonNoWhatsAppConfig, Field: "tokenRef", Detail: "is missing"}
	}
	if cfg.BusinessAccountID, err = configID(m, "businessAccountId"); err != nil {
		return WhatsAppConfig{}, err
	}
	if cfg.APIVersion, err = configString(m, "apiVersion"); err != nil {
		return WhatsAppConfig{}, err
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = d.APIVersion
	}
	if cfg.TemplateLanguage, err = configString(m, "templateLanguage"); err != nil {
		return WhatsAppConfig{}, err
	}
	if cfg.TemplateLanguage == "" {
		cfg.TemplateLanguage = d.TemplateLanguage
	}
	return cfg, nil
}

func configString(m map[string]any, key string) (string, error) {
	switch v := m[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", &Rejection{Reason: ReasonNoWhatsAppConfig, Field: key, Detail: fmt.Sprintf("is a %s, want a string", typeName(v))}
	}
}

func configID(m map[string]any, key string) (string, error) {
	if v, ok := m[key].(int64); ok {
		return strconv.FormatInt(v, 10), nil
	}
	return configString(m, key)
}
