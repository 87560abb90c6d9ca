package stack

import (
	"context"
	"sync"
)

// Supervise restarts a service of the stack (ingest, sender, a recorder) that
// exits while ctx lasts, and tells report which one, how it ended, and
// whether the restart failed (a service that cannot start again is left
// down). It returns once ctx ends. It is for `make run`, where nothing else
// stops a service: a test that stops or kills one on purpose must not run
// it.
func (s *Stack) Supervise(ctx context.Context, report func(name string, exit, restart error)) {
	var wg sync.WaitGroup
	var names []string
	for i := range s.RecorderAddrs {
		names = append(names, RecorderName(i))
	}
	for _, name := range append(names, Sender, Ingest) {
		p := s.process(name)
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-p.done:
				}
				if ctx.Err() != nil {
					return
				}
				exit := p.exitError()
				err := s.Restart(ctx, name)
				report(name, exit, err)
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}
