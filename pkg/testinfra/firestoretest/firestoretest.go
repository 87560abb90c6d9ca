// Package firestoretest gives a test the Firestore emulator that
// WADISPATCH_EMULATORS selects: the project's own (firestoreemu, one per
// test) by default, or Google's (gcloudemu) with WADISPATCH_EMULATORS=gcloud.
// Google's starts a JVM in seconds, so one serves every test of a test
// binary, each test in a project of its own.
package firestoretest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
	"github.com/visn/wadispatch/pkg/testinfra/gcloudemu"
)

// Emulator is the Firestore a test talks to.
type Emulator struct {
	// Addr is the emulator's host:port (FIRESTORE_EMULATOR_HOST).
	Addr string
	// Project is the project the test must use: on Google's emulator, one
	// no other test uses.
	Project string
	// Local is the project's emulator, for what only it has (triggers,
	// index checks, Reset); nil on Google's.
	Local *firestoreemu.Server
}

// Google reports whether the test runs on Google's emulator.
func (e *Emulator) Google() bool { return e.Local == nil }

// ClientOptions connect a cloud.google.com/go/firestore client to the
// emulator without FIRESTORE_EMULATOR_HOST.
func (e *Emulator) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(e.Addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// SkipOnGoogle skips a test of what Google's emulator does not model.
func (e *Emulator) SkipOnGoogle(t testing.TB, why string) {
	t.Helper()
	if e.Google() {
		t.Skipf("on Google's Firestore emulator: %s", why)
	}
}

// Start returns the selected emulator for t, in project (made unique to t
// on Google's). opts configure the project's emulator; Google's ignores
// them.
func Start(t testing.TB, project string, opts firestoreemu.Options) *Emulator {
	t.Helper()
	if !gcloudemu.Selected() {
		srv := firestoreemu.StartForTest(t, opts)
		return &Emulator{Addr: srv.Addr(), Project: project, Local: srv}
	}
	addr, err := sharedGoogle()
	if err != nil {
		t.Fatalf("%s=gcloud: %v", gcloudemu.EnvVar, err)
	}
	sum := sha256.Sum256([]byte(t.Name()))
	return &Emulator{Addr: addr, Project: fmt.Sprintf("%s-%s", project, hex.EncodeToString(sum[:6]))}
}

var shared struct {
	once sync.Once
	addr string
	err  error
}

// sharedGoogle starts Google's emulator once per test binary. It is never
// stopped by the tests: the kernel stops it with the test binary
// (gcloudemu starts it with a parent-death signal).
func sharedGoogle() (string, error) {
	shared.once.Do(func() {
		if shared.err = gcloudemu.Available(); shared.err != nil {
			return
		}
		var emu *gcloudemu.Emulator
		emu, shared.err = gcloudemu.StartFirestore(context.Background(), gcloudemu.Options{Log: logFile()})
		if shared.err == nil {
			shared.addr = emu.Addr
		}
	})
	return shared.addr, shared.err
}

// logFile keeps Google's emulator's output out of the test's: it logs a
// Java stack trace for every contended commit.
func logFile() io.Writer {
	f, err := os.CreateTemp("", "google-firestore-emulator-*.log")
	if err != nil {
		return io.Discard
	}
	return f
}
