package whatsapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

const secret = "EAAJBsecretTOKEN123"

func TestTokenNeverPrints(t *testing.T) {
	tok := NewToken(secret)
	type exported struct{ Token Token }
	type unexported struct{ token Token }
	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		outputs["token "+verb] = fmt.Sprintf(verb, tok)
		outputs["exported field "+verb] = fmt.Sprintf(verb, exported{tok})
		outputs["unexported field "+verb] = fmt.Sprintf(verb, unexported{tok})
		outputs["sender "+verb] = fmt.Sprintf(verb, Sender{PhoneNumberID: "1", APIVersion: "v21.0", Token: tok})
		outputs["pointer to sender "+verb] = fmt.Sprintf(verb, &Sender{Token: tok})
	}
	j, err := json.Marshal(Sender{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(j)

	var slogBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&slogBuf, nil)).Info("send", "token", tok, "sender", Sender{Token: tok})
	outputs["slog"] = slogBuf.String()

	for _, formatter := range []logrus.Formatter{&logrus.TextFormatter{}, &logrus.JSONFormatter{}} {
		var buf bytes.Buffer
		l := logrus.New()
		l.SetOutput(&buf)
		l.SetFormatter(formatter)
		l.WithField("token", tok).WithField("sender", Sender{Token: tok}).Info("send")
		outputs[fmt.Sprintf("logrus %T", formatter)] = buf.String()
	}

	for what, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("%s leaks the token: %s", what, out)
		}
	}
	if !strings.Contains(outputs["token %v"], "[REDACTED]") {
		t.Errorf("token %%v = %q, want [REDACTED]", outputs["token %v"])
	}
	if tok.Reveal() != secret {
		t.Errorf("Reveal() = %q", tok.Reveal())
	}
}
