package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/visn/wadispatch/tools/stack"
)

// Config sets up a benchmark run.
type Config struct {
	// BinDir holds the built programs (stack.Build), seed-baseline included.
	BinDir string
	// LogDir receives one folder of program logs per system.
	LogDir string
	// Rates are the offered loads in messages per second, run in order.
	Rates []int
	// Duration is how long each rate is offered.
	Duration time.Duration
	// Settle bounds the wait for a rate's messages to reach a final state.
	Settle time.Duration
	// PullStreams is the streaming pulls of the consumers (the sender's
	// SENDER_PULL_STREAMS, the recorder's RECORDER_PULL_STREAMS, the
	// baseline worker's). The local Pub/Sub server hands one stream about
	// 100 messages/s, a limit of the emulator rather than of either design.
	PullStreams int
	// Recorders is how many recorders wadispatch runs (default 1); the
	// sender balances its claims over them.
	Recorders int
	// Progress receives a line per step.
	Progress io.Writer
	// ProfileDir, when set, receives a CPU profile of each wadispatch
	// service per rate (the services run with PPROF=true).
	ProfileDir string
	// RSSEvery, when set, samples each process's resident memory at that
	// interval while a rate is offered (Row.RSS), to show whether it stays
	// flat over a long run.
	RSSEvery time.Duration
	// FirestoreArgs are extra flags of the Firestore emulator.
	FirestoreArgs []string
}

// Row is one rate's measurements for one system.
type Row struct {
	System string
	Rate   int
	// Messages were written; Final reached a final state within Settle;
	// Sent of them were accepted by WhatsApp.
	Messages, Final, Sent int
	// Throughput is Sent over the time from the first document created to
	// the last result recorded.
	Throughput float64
	// Call is from document creation to WhatsApp accepting the message;
	// Recorded to the message document's last update (the result written).
	CallP50, CallP99, RecordedP50, RecordedP99 time.Duration
	// RPCs are the Firestore calls of the services per message written, by
	// method in RPCMethods.
	RPCs       float64
	RPCMethods string
	// Procs are the services' CPU seconds over the rate and peak RSS.
	Procs []ProcStat
	// Claims are the ClaimSend calls each recorder answered during the
	// rate (wadispatch_recorder_claims_total), in the order of
	// stack.RecorderName; none for the baseline.
	Claims []RecorderClaims
	// Violations counts broken guarantees found by Audit over every message
	// of the run so far.
	Violations int
	// Profiles are the services' CPU profiles of the rate (Config.ProfileDir).
	Profiles []string
	// RSS are the processes' resident memory samples (Config.RSSEvery).
	RSS []RSSSample
}

// RSSSample is every measured process's resident memory at one time.
type RSSSample struct {
	At time.Duration // since the rate started
	MB []ProcStat    // PeakMB holds the resident MB at At
}

// ProcStat is one process's resource use.
type ProcStat struct {
	Name   string
	CPU    float64 // seconds of user and system time during the rate
	PeakMB float64 // VmHWM since the process started
}

// RecorderClaims is how many claims one recorder answered.
type RecorderClaims struct {
	Name   string
	Claims float64
}

// system is one implementation under measurement.
type system struct {
	name     string
	stack    *stack.Stack
	counters map[string]*RPCCounter
	// recorders are the recorders' program names, whose claims are counted.
	recorders []string
	// pids of the measured processes by name, in display order.
	pids func() []namedPID
	// profiles profiles the services while a rate is offered; nil takes none.
	profiles *profiles
}

type namedPID struct {
	name string
	pid  int
}

const benchPhoneNumber = "100000000000001"

// The simulator's limits are lifted so the harness measures the pipeline,
// not WhatsApp's per-number throughput and pair limits (both systems face
// the same simulator), and it sends no status webhooks: the baseline has no
// receiver for them, and a later DELIVERED or READ would move the message
// document's update time, which marks when the result was recorded.
var relaxedSimulator = []string{"--throughput", "0", "--pair-interval", "0", "--no-statuses"}

// RunWadispatch measures wadispatch's three services.
func RunWadispatch(ctx context.Context, cfg Config) (rows []Row, err error) {
	err = withWadispatch(ctx, cfg, func(sys *system) error {
		rows, err = sys.series(ctx, cfg)
		return err
	})
	return rows, err
}

// withWadispatch runs measure on wadispatch's stack, stopped after it.
func withWadispatch(ctx context.Context, cfg Config, measure func(*system) error) error {
	counters, err := startCounters(stack.Ingest, stack.Recorder)
	if err != nil {
		return err
	}
	defer closeCounters(counters)
	logDir := filepath.Join(cfg.LogDir, "wadispatch")
	// The services connect to the emulator through the counters, whose
	// backend is only known once the emulator prints its address.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchEmulator(watchCtx, filepath.Join(logDir, stack.FirestoreEmulator+".log"), counters)
	pprof := "PPROF=" + strconv.FormatBool(cfg.ProfileDir != "")
	firestoreArgs := cfg.FirestoreArgs
	var emulatorPprof string
	if cfg.ProfileDir != "" {
		if emulatorPprof, err = freeAddr(); err != nil {
			return err
		}
		firestoreArgs = append(append([]string{}, firestoreArgs...), "--pprof-addr", emulatorPprof)
	}
	recorders := max(cfg.Recorders, 1)
	s, err := stack.Start(ctx, stack.Options{
		BinDir:        cfg.BinDir,
		LogDir:        logDir,
		PhoneNumberID: benchPhoneNumber,
		SimulatorArgs: relaxedSimulator,
		FirestoreArgs: firestoreArgs,
		Recorders:     recorders,
		// Every recorder reaches Firestore through the one counter.
		Env: map[string][]string{
			stack.Ingest: {"LOG_LEVEL=info", pprof, "FIRESTORE_EMULATOR_HOST=" + counters[stack.Ingest].Addr},
			stack.Recorder: {"LOG_LEVEL=info", pprof, "FIRESTORE_EMULATOR_HOST=" + counters[stack.Recorder].Addr,
				"RECORDER_PULL_STREAMS=" + strconv.Itoa(cfg.PullStreams)},
			stack.Sender: {"LOG_LEVEL=info", pprof, "SENDER_RATE_PER_NUMBER=100000", "SENDER_RATE_BURST=1000",
				"SENDER_PULL_STREAMS=" + strconv.Itoa(cfg.PullStreams)},
		},
	})
	if err != nil {
		return err
	}
	defer s.Stop()
	name := "wadispatch"
	var recorderNames []string
	for i := range recorders {
		recorderNames = append(recorderNames, stack.RecorderName(i))
	}
	if recorders > 1 {
		name = fmt.Sprintf("wadispatch ×%d recorders", recorders)
	}
	sys := &system{name: name, stack: s, counters: counters, recorders: recorderNames, pids: func() []namedPID {
		var out []namedPID
		for _, n := range append(append([]string{stack.Ingest, stack.Sender}, recorderNames...), stack.FirestoreEmulator) {
			out = append(out, namedPID{n, s.PID(n)})
		}
		return out
	}}
	if cfg.ProfileDir != "" {
		sys.profiles = &profiles{dir: cfg.ProfileDir, urls: map[string]string{
			stack.Ingest: s.IngestOpsURL, stack.Sender: s.SenderURL, stack.Recorder: s.RecorderURL,
			stack.FirestoreEmulator: "http://" + emulatorPprof}}
	}
	return measure(sys)
}

// RunBaseline measures the seed design (tools/baseline) on the same
// emulators and simulator: the stack's services are stopped and
// seed-baseline's function takes ingest's address, where the Firestore
// emulator's trigger posts.
func RunBaseline(ctx context.Context, cfg Config) (rows []Row, err error) {
	err = withBaseline(ctx, cfg, func(sys *system) error {
		rows, err = sys.series(ctx, cfg)
		return err
	})
	return rows, err
}

// withBaseline runs measure on the seed design, stopped after it.
func withBaseline(ctx context.Context, cfg Config, measure func(*system) error) error {
	counters, err := startCounters("validate", "send")
	if err != nil {
		return err
	}
	defer closeCounters(counters)
	logDir := filepath.Join(cfg.LogDir, "baseline")
	s, err := stack.Start(ctx, stack.Options{
		BinDir:        cfg.BinDir,
		LogDir:        logDir,
		PhoneNumberID: benchPhoneNumber,
		SimulatorArgs: relaxedSimulator,
		FirestoreArgs: cfg.FirestoreArgs,
	})
	if err != nil {
		return err
	}
	defer s.Stop()
	for _, name := range []string{stack.Ingest, stack.Sender, stack.Recorder} {
		if err := s.StopOne(name); err != nil {
			return err
		}
	}
	for _, c := range counters {
		if err := c.SetBackend(s.FirestoreAddr); err != nil {
			return err
		}
	}
	tokens, err := json.Marshal(map[string]string{s.TokenRef: s.Token})
	if err != nil {
		return err
	}
	env := func(counter string) []string {
		return []string{"GOOGLE_CLOUD_PROJECT=wadispatch-local", "PUBSUB_EMULATOR_HOST=" + s.PubSubAddr,
			"FIRESTORE_EMULATOR_HOST=" + counters[counter].Addr}
	}
	bin := filepath.Join(cfg.BinDir, "seed-baseline")
	validate, err := startChild(ctx, bin, filepath.Join(logDir, "seed-baseline-validate.log"), env("validate"),
		"validate", "--host-port", strings.TrimPrefix(s.IngestURL, "http://"))
	if err != nil {
		return err
	}
	defer validate.stop()
	send, err := startChild(ctx, bin, filepath.Join(logDir, "seed-baseline-send.log"), env("send"),
		"send", "--whatsapp-base-url", s.SimulatorURL, "--tokens", string(tokens), "--pull-streams", strconv.Itoa(cfg.PullStreams))
	if err != nil {
		return err
	}
	defer send.stop()
	sys := &system{name: "seed baseline", stack: s, counters: counters, pids: func() []namedPID {
		return []namedPID{{"validate", validate.pid()}, {"send", send.pid()}, {stack.FirestoreEmulator, s.PID(stack.FirestoreEmulator)}}
	}}
	return measure(sys)
}

func startCounters(names ...string) (map[string]*RPCCounter, error) {
	out := map[string]*RPCCounter{}
	for _, n := range names {
		c, err := StartRPCCounter()
		if err != nil {
			closeCounters(out)
			return nil, err
		}
		out[n] = c
	}
	return out, nil
}

func closeCounters(cs map[string]*RPCCounter) {
	for _, c := range cs {
		c.Close()
	}
}

// watchEmulator points the counters at the Firestore emulator once its log
// names its address.
func watchEmulator(ctx context.Context, logPath string, counters map[string]*RPCCounter) {
	const marker = stack.FirestoreEmulator + " ready on "
	for {
		if b, err := os.ReadFile(logPath); err == nil {
			if _, rest, ok := strings.Cut(string(b), marker); ok {
				addr, _, _ := strings.Cut(rest, "\n")
				for _, c := range counters {
					_ = c.SetBackend(strings.TrimSpace(addr))
				}
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (sys *system) series(ctx context.Context, cfg Config) ([]Row, error) {
	s := sys.stack
	fs, err := s.Firestore(ctx, "(default)")
	if err != nil {
		return nil, err
	}
	defer fs.Close()
	anc, err := s.Firestore(ctx, "ancillary")
	if err != nil {
		return nil, err
	}
	defer anc.Close()
	fleet := NewFleet(benchPhoneNumber, s.TokenRef, 3, 100, 4)
	if err := fleet.Seed(ctx, fs); err != nil {
		return nil, err
	}
	var rows []Row
	var all []Message
	for _, rate := range cfg.Rates {
		n := int(float64(rate) * cfg.Duration.Seconds())
		msgs := make([]Message, n)
		for i := range msgs {
			msgs[i] = fleet.Message(fmt.Sprintf("r%d", rate), i, 0)
		}
		all = append(all, msgs...)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "%s: %d messages at %d/s\n", sys.name, n, rate)
		}
		row, err := sys.measure(ctx, cfg, fs, anc, rate, msgs, all)
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (sys *system) measure(ctx context.Context, cfg Config, fs, anc *firestore.Client, rate int, msgs, all []Message) (Row, error) {
	row := Row{System: sys.name, Rate: rate, Messages: len(msgs)}
	pids := sys.pids()
	cpu0 := make([]float64, len(pids))
	for i, p := range pids {
		cpu0[i] = cpuSeconds(p.pid)
	}
	rpc0 := map[string]int64{}
	for _, c := range sys.counters {
		for m, n := range c.Counts() {
			rpc0[m] += n
		}
	}
	claims0, err := sys.claims(ctx)
	if err != nil {
		return row, err
	}

	profiled := sys.profiles.during(ctx, fmt.Sprintf("%s-%d", sys.name, rate), cfg.Duration)
	sampled := sampleRSS(ctx, cfg.RSSEvery, pids)
	if err := Create(ctx, fs, msgs, rate); err != nil {
		return row, err
	}
	paths := make([]string, len(msgs))
	for i, m := range msgs {
		paths[i] = m.Path()
	}
	settleCtx, cancel := context.WithTimeout(ctx, cfg.Settle)
	docs, err := WaitFinal(settleCtx, fs, paths, 250*time.Millisecond)
	cancel()
	if err != nil && docs == nil {
		return row, err
	}
	sys.quiesce(ctx)
	files, err := profiled()
	if err != nil {
		return row, err
	}
	row.Profiles = files
	row.RSS = sampled()

	for i, p := range pids {
		row.Procs = append(row.Procs, ProcStat{Name: p.name, CPU: cpuSeconds(p.pid) - cpu0[i], PeakMB: peakMB(p.pid)})
	}
	claims, err := sys.claims(ctx)
	if err != nil {
		return row, err
	}
	for i, c := range claims {
		row.Claims = append(row.Claims, RecorderClaims{Name: c.Name, Claims: c.Claims - claims0[i].Claims})
	}
	rpc := map[string]int64{}
	var total int64
	for _, c := range sys.counters {
		for m, n := range c.Counts() {
			rpc[m] += n
			total += n
		}
	}
	for m, n := range rpc0 {
		rpc[m] -= n
		total -= n
	}
	row.RPCs = float64(total) / float64(len(msgs))
	row.RPCMethods = MethodsLine(rpc, float64(len(msgs)))

	accepted, err := AcceptedMessages(ctx, sys.stack.SimulatorURL)
	if err != nil {
		return row, err
	}
	calledAt := map[string]time.Time{}
	for _, a := range accepted {
		calledAt[RefOf(a)] = a.AcceptedAt
	}
	var call, rec []time.Duration
	var first, last time.Time
	for _, m := range msgs {
		d := docs[m.Path()]
		if first.IsZero() || d.CreatedAt.Before(first) {
			first = d.CreatedAt
		}
		if !d.Status.Final() {
			continue
		}
		row.Final++
		if d.Sent() {
			row.Sent++
			rec = append(rec, d.UpdatedAt.Sub(d.CreatedAt))
			if d.UpdatedAt.After(last) {
				last = d.UpdatedAt
			}
		}
		if at, ok := calledAt[m.Ref.MessageID]; ok {
			call = append(call, at.Sub(d.CreatedAt))
		}
	}
	if span := last.Sub(first); span > 0 {
		row.Throughput = float64(row.Sent) / span.Seconds()
	}
	row.CallP50, row.CallP99 = percentile(call, 0.50), percentile(call, 0.99)
	row.RecordedP50, row.RecordedP99 = percentile(rec, 0.50), percentile(rec, 0.99)

	report, err := Audit(ctx, fs, anc, sys.stack.SimulatorURL, all)
	if err != nil {
		return row, err
	}
	row.Violations = len(report.Violations)
	return row, nil
}

// claims reads each recorder's claims answered so far.
func (sys *system) claims(ctx context.Context) ([]RecorderClaims, error) {
	var out []RecorderClaims
	for _, name := range sys.recorders {
		n, err := sys.stack.Metric(ctx, name, "wadispatch_recorder_claims_total", nil)
		if err != nil {
			return nil, fmt.Errorf("claims of %s: %w", name, err)
		}
		out = append(out, RecorderClaims{Name: name, Claims: n})
	}
	return out, nil
}

// quiesce waits until the services' Firestore calls stop (the writes that
// follow the message document's, such as the ancillary one), so they are
// counted with this rate; at most 10 s.
func (sys *system) quiesce(ctx context.Context) {
	total := func() int64 {
		var n int64
		for _, c := range sys.counters {
			n += c.Total()
		}
		return n
	}
	last := total()
	for range 20 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		n := total()
		if n == last {
			return
		}
		last = n
	}
}

func percentile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// cpuSeconds is the user and system CPU time of pid (utime and stime of
// /proc/<pid>/stat, in clock ticks of 1/100 s on Linux).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; fields are counted after its ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100
}

// peakMB is the peak resident set (VmHWM) of pid in MiB.
func peakMB(pid int) float64 { return statusMB(pid, "VmHWM:") }

// statusMB reads a memory field of /proc/<pid>/status in MB (0 if absent).
func statusMB(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// freeAddr is a free local port's address.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// sampleRSS samples the processes' resident memory every interval (never,
// if 0) until the returned func is called, which returns the samples.
func sampleRSS(ctx context.Context, every time.Duration, pids []namedPID) (stop func() []RSSSample) {
	if every <= 0 {
		return func() []RSSSample { return nil }
	}
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	var samples []RSSSample
	done := make(chan struct{})
	take := func() {
		s := RSSSample{At: time.Since(start).Round(time.Second)}
		for _, p := range pids {
			s.MB = append(s.MB, ProcStat{Name: p.name, PeakMB: statusMB(p.pid, "VmRSS:")})
		}
		samples = append(samples, s)
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		take()
		for {
			select {
			case <-ctx.Done():
				take()
				return
			case <-tick.C:
				take()
			}
		}
	}()
	return func() []RSSSample {
		cancel()
		<-done
		return samples
	}
}

// child is a program the harness runs beside the stack (seed-baseline).
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startChild(ctx context.Context, bin, logPath string, env []string, args ...string) (*child, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(logPath); err == nil && strings.Contains(string(b), "seed-baseline ready on ") {
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("%s %s exited before it was ready; see %s", bin, args[0], logPath)
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, errors.New(bin + " not ready within 30s; see " + logPath)
		}
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
