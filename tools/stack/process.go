package stack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// process is one program of the stack running as a child process, its
// output going to a log file of its own.
type process struct {
	name    string
	bin     string
	args    []string
	env     []string
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // the exit status, once done is closed
}

// start runs p; ready waits until it can serve.
func (p *process) start() error {
	// A new stack starts its logs afresh (a ready line of an earlier run
	// would name a stale address); a restart appends to the same log.
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if p.done == nil {
		flags |= os.O_TRUNC
	}
	logFile, err := os.OpenFile(p.logPath, flags, 0o644)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.name, err)
	}
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout = logFile
	p.cmd.Stderr = logFile
	// Its own process group, so Ctrl-C on the terminal reaches only the
	// stack runner, which then stops the children in order.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.done = make(chan struct{})
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return nil
}

// waitForLine waits until the log holds a line containing marker.
func (p *process) waitForLine(ctx context.Context, marker string) error {
	for {
		if f, err := os.Open(p.logPath); err == nil {
			found := scanFor(f, marker)
			f.Close()
			if found {
				return nil
			}
		}
		if err := p.pause(ctx); err != nil {
			return err
		}
	}
}

// waitForHTTP waits until url answers 200.
func (p *process) waitForHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := p.pause(ctx); err != nil {
			return err
		}
	}
}

// pause waits a moment, failing if p exited or ctx ended meanwhile.
func (p *process) pause(ctx context.Context) error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited before it was ready (%v); its log: %s\n%s", p.name, p.err, p.logPath, tail(p.logPath, 20))
	case <-ctx.Done():
		return fmt.Errorf("%s not ready: %w; its log: %s\n%s", p.name, ctx.Err(), p.logPath, tail(p.logPath, 20))
	case <-time.After(20 * time.Millisecond):
		return nil
	}
}

// stop sends SIGTERM and waits up to grace, then kills. It returns the exit
// error of a process that did not exit cleanly.
func (p *process) stop(grace time.Duration) error {
	if p.cmd == nil || p.done == nil {
		return nil
	}
	select {
	case <-p.done:
		return p.exitError()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitError()
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", p.name, grace)
	}
}

// kill ends p at once, as a crash would (SIGKILL).
func (p *process) kill() {
	if p.cmd != nil && p.done != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) exitError() error {
	if p.err != nil {
		return fmt.Errorf("%s exited: %w", p.name, p.err)
	}
	return nil
}

func scanFor(r io.Reader, marker string) bool {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if strings.Contains(sc.Text(), marker) {
			return true
		}
	}
	return false
}

// tail returns the last n lines of a log, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr reserves a loopback port for a program that must be told its
// address before it starts (the emulator's trigger points at ingest).
// freeAddr picks a local address for a program to listen on later. The
// port comes from below the kernel's ephemeral range, which outgoing
// connections and port-0 listeners draw from, so none of those can take it
// in the meantime; where that range is unknown, the kernel picks.
func freeAddr() (string, error) {
	const lowest = 10000
	if top := ephemeralPortsStart(); top > lowest+1000 {
		for range 20 {
			if addr, err := bindable(fmt.Sprintf("127.0.0.1:%d", lowest+rand.IntN(top-lowest))); err == nil {
				return addr, nil
			}
		}
	}
	return bindable("127.0.0.1:0")
}

// bindable reports the address a listener gets for addr, and frees it.
func bindable(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ephemeralPortsStart is the first port of Linux's ephemeral range, or 0.
func ephemeralPortsStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// Build compiles the stack's programs into dir: the services and
// wadispatchctl from the product module at repoRoot, the dev tools from
// this module (tools/).
func Build(ctx context.Context, repoRoot, dir string) error {
	for _, b := range []struct {
		dir  string
		pkgs []string
	}{
		{repoRoot, []string{"./services/...", "./cmd/..."}},
		{filepath.Join(repoRoot, "tools"), []string{"./cmd/..."}},
	} {
		cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + string(filepath.Separator)}, b.pkgs...)...)
		cmd.Dir = b.dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build %s in %s: %w\n%s", b.pkgs, b.dir, err, out)
		}
	}
	return nil
}

// emulatorOptions connect a Google client library to an emulator at addr.
func emulatorOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}
