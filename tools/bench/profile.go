package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// profiles takes a CPU profile of each service (their PPROF endpoint)
// while a rate is offered, one file per service and rate in dir.
type profiles struct {
	dir  string
	urls map[string]string // service name → its probes URL
}

// during profiles every service for d, starting now; wait returns once the
// profiles are written, with the files.
func (p *profiles) during(ctx context.Context, label string, d time.Duration) (wait func() ([]string, error)) {
	if p == nil {
		return func() ([]string, error) { return nil, nil }
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		files []string
		errs  []error
	)
	for name, url := range p.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			file := filepath.Join(p.dir, fmt.Sprintf("%s-%s.pprof", label, name))
			err := fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", url, max(1, int(d.Seconds()))), file)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("profile of %s: %w", name, err))
				return
			}
			files = append(files, file)
		}()
	}
	return func() ([]string, error) {
		wg.Wait()
		return files, errors.Join(errs...)
	}
}

func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d (is PPROF=true set?)", url, resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// PrintProfileTops writes the top functions of each profile, by flat CPU
// time, as `go tool pprof -top` shows them.
func PrintProfileTops(w io.Writer, files []string, nodes int) error {
	for _, f := range files {
		out, err := exec.Command("go", "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", nodes), f).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof %s: %w: %s", f, err, out)
		}
		fmt.Fprintf(w, "\n%s\n%s", filepath.Base(f), out)
	}
	return nil
}
