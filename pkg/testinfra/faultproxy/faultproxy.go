// Package faultproxy is a TCP proxy that tests put in front of a server
// (the Firestore emulator) to make it unavailable on demand, the two ways a
// real outage looks to a client: connections refused, or calls that are
// accepted and never answered.
package faultproxy

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Mode is how the proxy treats connections.
type Mode int

const (
	// Pass forwards every byte both ways.
	Pass Mode = iota
	// Refuse closes every open connection and each new one at once.
	Refuse
	// Blackhole accepts connections and forwards nothing, as a network
	// partition does: calls hang until their deadlines. Connections held
	// this way are closed when the mode changes, so clients dial again.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	}
	return "pass"
}

// Proxy forwards connections to a target in the current Mode.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  Mode
	conns map[*link]struct{}
	// resume is closed when a Blackhole ends.
	resume chan struct{}
	closed bool
	wg     sync.WaitGroup
}

// link is one client connection and, unless it was accepted in Blackhole,
// its connection to the target.
type link struct {
	client, server net.Conn
}

func (l *link) close() {
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

// Start listens on listen ("127.0.0.1:0" picks a port) and forwards to
// target.
func Start(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("fault proxy listen on %s: %w", listen, err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}, resume: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port, for the client in place of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set changes the mode for open and new connections.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return
	}
	if p.mode == Blackhole {
		close(p.resume)
		p.resume = make(chan struct{})
	}
	if m == Refuse || p.mode == Blackhole {
		p.closeAll()
	}
	p.mode = m
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	// Forwarders holding back bytes of a Blackhole wait for it to end.
	if p.mode == Blackhole {
		close(p.resume)
		p.resume = make(chan struct{})
	}
	p.closeAll()
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) closeAll() {
	for l := range p.conns {
		l.close()
		delete(p.conns, l)
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

func (p *Proxy) serve(c net.Conn) {
	p.mu.Lock()
	mode := p.mode
	if p.closed || mode == Refuse {
		p.mu.Unlock()
		c.Close()
		return
	}
	l := &link{client: c}
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	if mode == Blackhole {
		// Held until the mode changes, which closes it.
		_, _ = io.Copy(io.Discard, c)
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(l)
		return
	}
	p.mu.Lock()
	if _, open := p.conns[l]; !open {
		p.mu.Unlock()
		s.Close()
		return
	}
	l.server = s
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.copy(s, c); done <- struct{}{} }()
	go func() { p.copy(c, s); done <- struct{}{} }()
	<-done
	p.drop(l)
	<-done
}

// copy forwards from src to dst; during a Blackhole what it reads is held
// back, and dropped when the connection is closed.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			mode, resume := p.mode, p.resume
			p.mu.Unlock()
			if mode == Blackhole {
				<-resume
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
	l.close()
}
