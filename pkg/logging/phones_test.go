package logging_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/visn/wadispatch/pkg/logging"
)

func TestPhonesRedact(t *testing.T) {
	p := logging.NewPhones("key")
	h := p.Hash("+447911123456")
	for in, want := range map[string]string{
		"+447911123456": h,
		"whatsapp/+447911123456/enquiryMessages/e1":      "whatsapp/" + h + "/enquiryMessages/e1",
		"to +447911123456, then +447911123456.":          "to " + h + ", then " + h + ".",
		"wamid.HBgL+447911123456AAAA":                    "wamid.HBgL+447911123456AAAA", // base64, not a number
		"+12345 is too short, 2026-12-01T21:43:28+00:00": "+12345 is too short, 2026-12-01T21:43:28+00:00",
		"no number here":                                 "no number here",
	} {
		if got := p.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	if h == logging.NewPhones("other key").Hash("+447911123456") {
		t.Error("two keys give the same hash")
	}
	if !strings.HasPrefix(h, "tel:") || len(h) != 16 {
		t.Errorf("hash %q", h)
	}
}

// No number reaches a log line in clear: not in the message, a field, or
// an error; unless a local run asks for them.
func TestLoggerHashesPhoneNumbers(t *testing.T) {
	var buf bytes.Buffer
	log, err := logging.NewTo(&buf, "test", "p", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.WithFields(logrus.Fields{"ancillaryPath": "whatsapp/+447911123456/enquiryMessages/e1", "n": 3}).
		WithError(errors.New("write whatsapp/+447911123456/x: unavailable")).Warn("driver +447911123456 unreachable")
	if strings.Contains(buf.String(), "447911123456") {
		t.Errorf("a number in clear:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "tel:") || !strings.Contains(buf.String(), `"n":3`) {
		t.Errorf("line %s", buf.String())
	}

	buf.Reset()
	clear, err := logging.NewTo(&buf, "test", "p", "info", logging.PhoneNumbersInClear())
	if err != nil {
		t.Fatal(err)
	}
	clear.Info("driver +447911123456")
	if !strings.Contains(buf.String(), "+447911123456") {
		t.Errorf("in clear when asked: %s", buf.String())
	}
}
