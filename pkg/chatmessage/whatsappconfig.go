package chatmessage

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
	// OptOutPolicy is what a driver's stop stops: OptOutMarketing or
	// OptOutAll.
	OptOutPolicy string
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
	cfg.OptOutPolicy = ParseOptOut(m).Policy
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

// Opt-out policies: what a driver's STOP stops.
const (
	// OptOutMarketing: marketing templates only (WhatsApp's own rule:
	// 131050 refuses marketing to a user who stopped it); utility and
	// service messages still go.
	OptOutMarketing = "marketing"
	// OptOutAll: every message of the lease.
	OptOutAll = "all"
)

// Keywords a driver writes to stop or resume a lease's messages, when the
// lease names none.
var (
	DefaultOptOutKeywords = []string{"STOP", "UNSUBSCRIBE"}
	DefaultOptInKeywords  = []string{"START"}
)

// OptOut is what a lease's configuration says of opt-outs: the keywords
// (any language, matched whole, ignoring case, spaces and trailing
// punctuation) and the policy.
type OptOut struct {
	StopKeywords, StartKeywords []string
	Policy                      string
}

// ParseOptOut reads optOutKeywords and optInKeywords (each a list, or a map
// of language to list) and optOutPolicy from a lease's whatsappConfig map;
// what is missing takes the defaults, what is malformed too (a lease's
// keywords must not stop its drivers' replies from being recorded).
func ParseOptOut(whatsappConfig map[string]any) OptOut {
	o := OptOut{
		StopKeywords:  keywords(whatsappConfig["optOutKeywords"], DefaultOptOutKeywords),
		StartKeywords: keywords(whatsappConfig["optInKeywords"], DefaultOptInKeywords),
		Policy:        OptOutMarketing,
	}
	if p, _ := whatsappConfig["optOutPolicy"].(string); p == OptOutAll {
		o.Policy = OptOutAll
	}
	return o
}

func keywords(v any, def []string) []string {
	var out []string
	add := func(list any) {
		items, _ := list.([]any)
		for _, it := range items {
			if s, ok := it.(string); ok && normalKeyword(s) != "" {
				out = append(out, normalKeyword(s))
			}
		}
	}
	switch v := v.(type) {
	case []any:
		add(v)
	case map[string]any:
		for _, list := range v {
			add(list)
		}
	}
	if len(out) == 0 {
		for _, s := range def {
			out = append(out, normalKeyword(s))
		}
	}
	return out
}

// normalKeyword is a message as keywords are compared: trimmed, upper
// case, without trailing punctuation ("Stop." is STOP).
func normalKeyword(s string) string {
	return strings.ToUpper(strings.TrimRight(strings.TrimSpace(s), ".!?¡¿ "))
}

// Choice reports whether text is one of the lease's stop or start
// keywords: stop true for a stop, and the keyword; ok false for neither.
func (o OptOut) Choice(text string) (stop bool, keyword string, ok bool) {
	if len(text) > 64 {
		return false, "", false
	}
	k := normalKeyword(text)
	if k == "" {
		return false, "", false
	}
	if slices.Contains(o.StopKeywords, k) {
		return true, k, true
	}
	if slices.Contains(o.StartKeywords, k) {
		return false, k, true
	}
	return false, "", false
}
