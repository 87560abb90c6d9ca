package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// driver shows what an operator asks about a driver who complains of no
// messages: whether they opted out and how, and whether WhatsApp could
// deliver to them; a driver the lease has no record of says so.
func TestDriver(t *testing.T) {
	rec, addr := recorderFor(t)
	env := map[string]string{"WADISPATCH_RECORDER_ADDR": addr}

	// m1 failed 131026 in recorderFor: one undeliverable, still reachable.
	code, out, errOut := ctl(t, env, "driver", "l1", driver)
	if code != 0 || !strings.Contains(out, "opted out  no") || !strings.Contains(out, "reachable  yes (1 undeliverable") {
		t.Errorf("driver before STOP: %d\n%s%s", code, out, errOut)
	}

	at := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	if _, err := rec.Preference(context.Background(), &wadispatchv1.DriverPreference{Driver: driver, LeaseIds: []string{"l1"},
		Choice: wadispatchv1.DriverPreference_CHOICE_STOP, Source: "keyword", Detail: "STOP", Timestamp: timestamppb.New(at)}); err != nil {
		t.Fatal(err)
	}
	// Typed as a driver would say it: the national form is normalised.
	code, out, errOut = ctl(t, env, "driver", "l1", "07911 123401")
	if code != 0 || !strings.Contains(out, `opted out  yes (keyword "STOP", 2026-12-02T09:30:00Z)`) {
		t.Errorf("driver after STOP: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ctl(t, env, "driver", "l1", driver, "--json")
	var resp wadispatchv1.GetDriverResponse
	if code != 0 || protojson.Unmarshal([]byte(out), &resp) != nil || !resp.GetOptedOut() || resp.GetUndeliverable() != 1 {
		t.Errorf("driver --json: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = ctl(t, env, "driver", "l2", driver)
	if code != 0 || !strings.Contains(out, "lease l2 has no record of the driver") {
		t.Errorf("driver of another lease: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := ctl(t, env, "driver", "l1", "not a number"); code != 2 || !strings.Contains(errOut, "driver: driver number") {
		t.Errorf("driver with a bad number: %d %s", code, errOut)
	}
}
