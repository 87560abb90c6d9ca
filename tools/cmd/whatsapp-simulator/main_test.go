package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/whatsapp"
)

func TestProgramServesUntilCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--host-port", "127.0.0.1:0",
			"--phone-number", "100000000000001=local-token",
			"--enforce-window=false",
			"--pair-interval", "0",
			"--template", "eta_update:en_GB:driver_name,eta",
			"--fault", `{"kind":"error","code":131026,"times":1}`,
		}, outW, io.Discard)
		_ = outW.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no ready line: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "whatsapp-simulator ready on ")
	if !ok {
		t.Fatalf("ready line %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	c, err := whatsapp.NewClient(whatsapp.Config{BaseURL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	s := whatsapp.Sender{PhoneNumberID: "100000000000001", APIVersion: "v21.0", Token: whatsapp.NewToken("local-token")}
	_, err = c.Send(ctx, s, whatsapp.TextMessage("447700900123", "hi", false))
	var we *whatsapp.Error
	if !errors.As(err, &we) || we.Code != 131026 {
		t.Fatalf("--fault not installed: %v", err)
	}
	if _, err := c.Send(ctx, s, whatsapp.TextMessage("447700900123", "hi", false)); err != nil {
		t.Fatalf("--enforce-window=false ignored: %v", err)
	}
	tm, _ := whatsapp.TemplateMessage("447700900123", "eta_update", "en_GB", map[string]string{"eta": "5"})
	if _, err := c.Send(ctx, s, tm); !errors.As(err, &we) || we.Code != 132000 {
		t.Fatalf("--template not installed: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit after cancel")
	}
}

func TestBadFlags(t *testing.T) {
	t.Setenv("WHATSAPP_APP_SECRET", "")
	for _, args := range [][]string{
		{"--phone-number", "no-token"},
		{"--template", "nameonly"},
		{"--fault", `{"kind":"boom"}`},
		{"--fault", `{"kind":"error","code":1,"x":1}`},
		{"--webhook-url", "http://127.0.0.1:1/hook"},
		{"--host-port", "256.0.0.1:0"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestMalformedPhoneNumberFlagHidesToken(t *testing.T) {
	err := run(context.Background(), []string{"--phone-number", "=secret-token"}, io.Discard, io.Discard)
	if err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("err = %v", err)
	}
}
