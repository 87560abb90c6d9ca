package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/visn/wadispatch/pkg/ops"
)

// A service serving its profiles gives one CPU profile file per rate; one
// that does not is an error naming PPROF, not a silent gap.
func TestProfilesOfEachService(t *testing.T) {
	srv, err := ops.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeProfiles()
	off, err := ops.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Run(ctx, time.Second) }()
	go func() { _ = off.Run(ctx, time.Second) }()

	p := &profiles{dir: t.TempDir(), urls: map[string]string{"sender": "http://" + srv.Addr()}}
	files, err := p.during(ctx, "wadispatch-100", time.Second)()
	if err != nil || len(files) != 1 {
		t.Fatalf("profiles %v, %v", files, err)
	}
	if st, err := os.Stat(files[0]); err != nil || st.Size() == 0 {
		t.Errorf("profile file %s: %v", files[0], err)
	}
	p.urls = map[string]string{"recorder": "http://" + off.Addr()}
	if _, err := p.during(ctx, "wadispatch-100", time.Second)(); err == nil {
		t.Error("a service without PPROF gave no error")
	}
}

// Sampling resident memory gives a first and a last sample at least (taken
// at start and at stop, whatever the interval), each with the process's
// real RSS.
func TestSampleRSS(t *testing.T) {
	samples := sampleRSS(context.Background(), time.Hour, []namedPID{{"self", os.Getpid()}})()
	if len(samples) < 2 {
		t.Fatalf("%d samples", len(samples))
	}
	for _, s := range samples {
		if len(s.MB) != 1 || s.MB[0].PeakMB <= 0 {
			t.Errorf("sample %+v", s)
		}
	}
	if got := sampleRSS(context.Background(), 0, nil)(); got != nil {
		t.Errorf("sampling off gave %v", got)
	}
}
