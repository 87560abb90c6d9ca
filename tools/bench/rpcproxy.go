package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// RPCCounter is a transparent gRPC proxy in front of the Firestore emulator
// that counts the calls passing through it by method. Each service under
// measurement gets its own, as its FIRESTORE_EMULATOR_HOST, so the counts are
// per service; the emulator itself is left as it is.
type RPCCounter struct {
	Addr string

	srv     *grpc.Server
	backend chan string // receives the emulator address once
	ready   chan struct{}
	conn    *grpc.ClientConn

	mu     sync.Mutex
	counts map[string]*atomic.Int64
}

// rawCodec passes messages through as bytes. Named "proto" so the backend
// sees the content type it expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// StartRPCCounter listens on a free loopback port. Calls wait until
// SetBackend names the emulator, so the proxy can be handed to programs
// started before the emulator's address is known.
func StartRPCCounter() (*RPCCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rpc counter listen: %w", err)
	}
	p := &RPCCounter{
		Addr:    ln.Addr().String(),
		backend: make(chan string, 1),
		ready:   make(chan struct{}),
		counts:  map[string]*atomic.Int64{},
	}
	p.srv = grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(p.forward))
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetBackend points the proxy at the emulator; only the first call counts.
func (p *RPCCounter) SetBackend(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return fmt.Errorf("rpc counter backend %s: %w", addr, err)
	}
	select {
	case p.backend <- addr:
		p.conn = conn
		close(p.ready)
		return nil
	default:
		conn.Close()
		return errors.New("rpc counter backend already set")
	}
}

// Close stops the proxy.
func (p *RPCCounter) Close() {
	p.srv.Stop()
	select {
	case <-p.ready:
		p.conn.Close()
	default:
	}
}

// Counts returns the calls so far by full method name.
func (p *RPCCounter) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.counts))
	for m, c := range p.counts {
		out[m] = c.Load()
	}
	return out
}

// Total is the number of calls so far.
func (p *RPCCounter) Total() int64 {
	var n int64
	for _, c := range p.Counts() {
		n += c
	}
	return n
}

func (p *RPCCounter) count(method string) {
	p.mu.Lock()
	c, ok := p.counts[method]
	if !ok {
		c = &atomic.Int64{}
		p.counts[method] = c
	}
	p.mu.Unlock()
	c.Add(1)
}

// forward relays one call, unary or streaming, in both directions.
func (p *RPCCounter) forward(_ any, in grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(in)
	ctx := in.Context()
	select {
	case <-p.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.count(method)
	md, _ := metadata.FromIncomingContext(ctx)
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, md.Copy()))
	defer cancel()
	out, err := p.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	upErr := make(chan error, 1)
	go func() {
		for {
			var msg []byte
			if err := in.RecvMsg(&msg); err != nil {
				if errors.Is(err, io.EOF) {
					upErr <- out.CloseSend()
				} else {
					upErr <- err
				}
				return
			}
			if err := out.SendMsg(&msg); err != nil {
				upErr <- err
				return
			}
		}
	}()
	first := true
	for {
		var msg []byte
		err := out.RecvMsg(&msg)
		if first {
			// Headers arrive with (or before) the first answer.
			if h, herr := out.Header(); herr == nil {
				_ = in.SendHeader(h)
			}
			first = false
		}
		if errors.Is(err, io.EOF) {
			in.SetTrailer(out.Trailer())
			return nil
		}
		if err != nil {
			in.SetTrailer(out.Trailer())
			return err
		}
		if err := in.SendMsg(&msg); err != nil {
			return err
		}
		select {
		case err := <-upErr:
			if err != nil {
				return err
			}
			upErr = nil // the client finished sending; keep relaying answers
		default:
		}
	}
}

// MethodsLine lists counts by short method name, busiest first.
func MethodsLine(counts map[string]int64, perMessage float64) string {
	type kv struct {
		m string
		n int64
	}
	var xs []kv
	for m, n := range counts {
		if n > 0 {
			xs = append(xs, kv{m[strings.LastIndex(m, "/")+1:], n})
		}
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].n > xs[j].n || (xs[i].n == xs[j].n && xs[i].m < xs[j].m) })
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=%.2f", x.m, float64(x.n)/perMessage)
	}
	return s
}
