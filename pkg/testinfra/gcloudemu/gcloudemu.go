// Package gcloudemu runs Google's own Cloud Firestore and Pub/Sub emulators
// (the Java programs the gcloud SDK ships under platform/) for the tests and
// the local stack, as a second backend beside the project's Go emulators.
// WADISPATCH_EMULATORS=gcloud selects it; where the SDK or Java is missing,
// Available says why, so a test can skip with that reason.
//
// The emulators are started as java processes in a process group of their
// own: Google's Firestore wrapper script does not exec java, so stopping
// the script would leave the JVM running.
package gcloudemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvVar selects the emulators: "gcloud" for Google's, anything else (or
// unset) for the project's own.
const EnvVar = "WADISPATCH_EMULATORS"

// Selected reports whether WADISPATCH_EMULATORS asks for Google's emulators.
func Selected() bool { return os.Getenv(EnvVar) == "gcloud" }

// Firestore's main class in the SDK's jar, as its wrapper script runs it.
const firestoreMain = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"

var sdk struct {
	once sync.Once
	root string
	err  error
}

// SDKRoot is the gcloud SDK's installation root, as `gcloud info` reports
// it (asked once per process: gcloud takes seconds to start), or
// CLOUDSDK_ROOT_DIR when set.
func SDKRoot() (string, error) {
	sdk.once.Do(func() {
		if root := os.Getenv("CLOUDSDK_ROOT_DIR"); root != "" {
			sdk.root = root
			return
		}
		if _, err := exec.LookPath("gcloud"); err != nil {
			sdk.err = errors.New("gcloud is not on PATH")
			return
		}
		out, err := exec.Command("gcloud", "info", "--format=value(installation.sdk_root)").Output()
		if err != nil {
			sdk.err = fmt.Errorf("gcloud info: %w", err)
			return
		}
		sdk.root = strings.TrimSpace(string(out))
	})
	return sdk.root, sdk.err
}

// Available reports why Google's emulators cannot run here, or nil.
func Available() error {
	if _, err := exec.LookPath("java"); err != nil {
		return errors.New("java is not on PATH (Google's emulators need Java 17)")
	}
	root, err := SDKRoot()
	if err != nil {
		return err
	}
	for _, p := range []string{firestoreJar(root), pubsubScript(root)} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("the gcloud SDK at %s has no %s (gcloud components install cloud-firestore-emulator pubsub-emulator)", root, strings.TrimPrefix(p, root+"/"))
		}
	}
	return nil
}

func firestoreJar(root string) string {
	return filepath.Join(root, "platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar")
}

func pubsubScript(root string) string {
	return filepath.Join(root, "platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")
}

// Options configure an emulator.
type Options struct {
	// HostPort to listen on; empty or port 0 picks a free port.
	HostPort string
	// Log receives the emulator's output; nil discards it.
	Log io.Writer
	// FunctionsEmulator (Firestore only) is the host:port the emulator's
	// triggers post their CloudEvents to (see Bridge).
	FunctionsEmulator string
}

// Emulator is a running Google emulator.
type Emulator struct {
	// Addr is its host:port, for FIRESTORE_EMULATOR_HOST or
	// PUBSUB_EMULATOR_HOST.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartFirestore starts Google's Cloud Firestore emulator and waits until
// it answers.
func StartFirestore(ctx context.Context, o Options) (*Emulator, error) {
	root, err := SDKRoot()
	if err != nil {
		return nil, err
	}
	return start(ctx, o, func(host, port string) []string {
		args := []string{"java", "-Duser.language=en", "-cp", firestoreJar(root), firestoreMain, "start",
			"--host=" + host, "--port=" + port}
		if o.FunctionsEmulator != "" {
			args = append(args, "--functions_emulator="+o.FunctionsEmulator)
		}
		return args
	})
}

// StartPubSub starts Google's Pub/Sub emulator and waits until it answers.
// It starts empty: create the topology with topology.Apply.
func StartPubSub(ctx context.Context, o Options) (*Emulator, error) {
	root, err := SDKRoot()
	if err != nil {
		return nil, err
	}
	return start(ctx, o, func(host, port string) []string {
		return []string{pubsubScript(root), "--host=" + host, "--port=" + port}
	})
}

func start(ctx context.Context, o Options, command func(host, port string) []string) (*Emulator, error) {
	addr, err := pickAddr(o.HostPort)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	args := command(host, port)
	cmd := exec.Command(args[0], args[1:]...)
	// Its own group, so Close stops the JVM behind a wrapper script; and
	// killed with this process, so a test binary or stack that dies leaves
	// no JVM behind (the signal follows the exec of a wrapper script).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := o.Log
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(args[0]), err)
	}
	e := &Emulator{Addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() { e.err = cmd.Wait(); close(e.done) }()
	if err := e.waitUntilServing(ctx); err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
}

// waitUntilServing polls the emulator's HTTP root, which both emulators
// answer once their servers are up (a JVM takes a few seconds).
func (e *Emulator) waitUntilServing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Addr+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-e.done:
			return fmt.Errorf("emulator on %s exited before serving: %v", e.Addr, e.err)
		case <-ctx.Done():
			return fmt.Errorf("emulator on %s not serving: %w", e.Addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops the emulator's whole process group: SIGTERM, then SIGKILL
// after five seconds.
func (e *Emulator) Close() error {
	pgid := e.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-e.done
	}
	return nil
}

func pickAddr(hostPort string) (string, error) {
	if hostPort == "" {
		hostPort = "127.0.0.1:0"
	}
	if !strings.HasSuffix(hostPort, ":0") {
		return hostPort, nil
	}
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		return "", fmt.Errorf("pick a port on %s: %w", hostPort, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// AddTrigger registers an Eventarc-style Firestore trigger with Google's
// emulator, as the Firebase emulator suite does: events of kind eventType
// ("google.cloud.firestore.document.v1.created", ...) on documents of
// database matching pattern are posted to the functions emulator given at
// start, at /functions/projects/{project}/triggers/{id}.
func (e *Emulator) AddTrigger(ctx context.Context, project, id, eventType, database, pattern string) error {
	body := fmt.Sprintf(`{"eventType":%q,"database":%q,"namespace":"(default)","document":{"value":%q,"matchType":"PATH_PATTERN"}}`,
		eventType, database, pattern)
	url := fmt.Sprintf("http://%s/emulator/v1/projects/%s/eventarcTrigger?eventarcTriggerId=%s", e.Addr, project, id)
	return e.call(ctx, http.MethodPost, url, body)
}

// Clear deletes every document of database in project.
func (e *Emulator) Clear(ctx context.Context, project, database string) error {
	url := fmt.Sprintf("http://%s/emulator/v1/projects/%s/databases/%s/documents", e.Addr, project, database)
	return e.call(ctx, http.MethodDelete, url, "")
}

func (e *Emulator) call(ctx context.Context, method, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
