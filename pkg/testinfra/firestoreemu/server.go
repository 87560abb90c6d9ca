package firestoreemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/visn/wadispatch/pkg/testinfra/eventdelivery"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	// Default 127.0.0.1:0.
	Addr string
	// Triggers are registered before the server accepts requests.
	Triggers []Trigger
	// Delivery controls how trigger CloudEvents are retried.
	Delivery DeliveryPolicy
	// Location is reported in the ce-location attribute of CloudEvents.
	// Default "nam5".
	Location string
	// VersionRetention is how far back read_time reads and read-only
	// transactions can see. Default one hour, as Firestore without
	// point-in-time recovery.
	VersionRetention time.Duration
	// TransactionIdleTimeout is how long a read-write transaction may hold
	// locks without activity before a transaction waiting for them aborts it.
	// Default 60s.
	TransactionIdleTimeout time.Duration
	// Logger receives delivery errors and lifecycle messages. Default: the
	// logrus standard logger.
	Logger logrus.FieldLogger
	// Indexes are the composite indexes of databases, keyed by database id
	// ("(default)", "ancillary", ...), so that queries no index would serve
	// fail with FAILED_PRECONDITION as in Firestore instead of only in
	// production. A database not in the map is not checked, like in
	// Google's emulator; a database in it with a nil configuration has only
	// Firestore's automatic single-field indexes.
	Indexes map[string]*IndexConfig
	// DocumentWriteRate is the sustained writes per second each document
	// takes; a commit writing a document faster waits its turn (see "Writes
	// to one document" in the package documentation). 0, the default,
	// leaves writes unlimited, as Google's emulator does.
	DocumentWriteRate float64
	// DocumentWriteBurst is how many writes a document idle for a while
	// takes at once before DocumentWriteRate holds. Default 1.
	DocumentWriteBurst int
}

// Server is a running emulator.
type Server struct {
	pb.UnimplementedFirestoreServer

	opts    Options
	log     logrus.FieldLogger
	indexes map[string][]compiledIndex // by database id
	limits  *docLimits                 // nil: writes unlimited

	lis     net.Listener
	grpcSrv *grpc.Server
	httpSrv *http.Server
	grpcLis *connListener
	httpLis *connListener

	mu     sync.Mutex // guards dbs and lastTime
	dbs    map[string]*database
	last   time.Time
	trigMu sync.RWMutex
	trigs  []Trigger
	// deliveries posts trigger events; Close abandons pending ones.
	deliveries *eventdelivery.Queue
	closing    sync.Once
}

// Start listens on opts.Addr and serves the Firestore gRPC API and the
// emulator's HTTP admin API on the same port.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Location == "" {
		opts.Location = "nam5"
	}
	if opts.VersionRetention <= 0 {
		opts.VersionRetention = time.Hour
	}
	if opts.TransactionIdleTimeout <= 0 {
		opts.TransactionIdleTimeout = 60 * time.Second
	}
	for _, t := range opts.Triggers {
		if err := t.validate(); err != nil {
			return nil, err
		}
	}
	indexes, err := compileIndexes(opts.Indexes)
	if err != nil {
		return nil, fmt.Errorf("firestoreemu: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = logrus.StandardLogger()
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("firestoreemu: listen on %s: %w", opts.Addr, err)
	}
	s := &Server{
		opts:    opts,
		log:     log,
		indexes: indexes,
		limits:  newDocLimits(opts.DocumentWriteRate, opts.DocumentWriteBurst),
		lis:     lis,
		dbs:     map[string]*database{},
		trigs:   append([]Trigger(nil), opts.Triggers...),
		grpcLis: newConnListener(lis.Addr()),
		httpLis: newConnListener(lis.Addr()),
	}
	s.deliveries = eventdelivery.New(opts.Delivery, log.WithField("component", "firestore-emulator"))
	s.grpcSrv = grpc.NewServer(
		grpc.MaxRecvMsgSize(64<<20),
		// Clients of long-lived Listen streams may ping; tolerate it rather
		// than answer GOAWAY as gRPC's strict default would.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Close relies on Stop returning only after every handler has, so
		// that no commit starts a delivery once Close waits for them.
		grpc.WaitForHandlers(true),
	)
	pb.RegisterFirestoreServer(s.grpcSrv, s)
	s.httpSrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	// Both servers return only once Close has closed their listeners.
	go func() { _ = s.grpcSrv.Serve(s.grpcLis) }()
	go func() { _ = s.httpSrv.Serve(s.httpLis) }()
	go s.acceptLoop()
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Close stops serving, abandons pending trigger deliveries and waits for
// in-flight ones to return.
func (s *Server) Close() error {
	var err error
	s.closing.Do(func() {
		err = s.lis.Close()
		s.grpcLis.close()
		s.httpLis.close()
		s.grpcSrv.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if herr := s.httpSrv.Shutdown(ctx); herr != nil && err == nil {
			err = herr
		}
		s.deliveries.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// Reset deletes every document of every database and aborts open
// transactions. Triggers stay registered.
func (s *Server) Reset() {
	s.mu.Lock()
	dbs := make([]*database, 0, len(s.dbs))
	for _, db := range s.dbs {
		dbs = append(dbs, db)
	}
	s.mu.Unlock()
	for _, db := range dbs {
		s.clearDatabase(db)
	}
}

func (s *Server) clearDatabase(db *database) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var gone []change
	for name, e := range db.docs {
		if d := e.current(); d != nil {
			gone = append(gone, change{name: name, old: d})
		}
	}
	db.clear()
	s.notifyListeners(db, gone, s.readTime())
}

// database returns the database named by a resource name, creating it on
// first use as Firestore's emulator does.
func (s *Server) database(resource string) (*database, error) {
	name, err := databaseOf(resource)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	db := s.dbs[name]
	if db == nil {
		db = newDatabase(name)
		s.dbs[name] = db
	}
	return db, nil
}

// readTime returns a read timestamp no earlier than any commit so far; later
// commits get strictly later timestamps, so a read at this time is stable.
func (s *Server) readTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Microsecond)
	if now.After(s.last) {
		s.last = now
	}
	return s.last
}

// commitTime returns a fresh, strictly increasing commit timestamp with
// Firestore's microsecond precision.
func (s *Server) commitTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.last) {
		now = s.last.Add(time.Microsecond)
	}
	s.last = now
	return now
}

// acceptLoop sends each connection to the gRPC server when it starts with
// the HTTP/2 preface (gRPC clients) and to the HTTP admin server otherwise,
// so both share one port while gRPC keeps its native transport.
func (s *Server) acceptLoop() {
	for {
		c, err := s.lis.Accept()
		if err != nil {
			s.grpcLis.close()
			s.httpLis.close()
			return
		}
		go s.route(c)
	}
}

func (s *Server) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	head, err := br.Peek(3)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		_ = c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: br}
	if string(head) == "PRI" {
		s.grpcLis.deliver(pc)
		return
	}
	s.httpLis.deliver(pc)
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) close()         { l.once.Do(func() { close(l.done) }) }
func (l *connListener) Close() error   { l.close(); return nil }
func (l *connListener) Addr() net.Addr { return l.addr }

// adminHandler serves the subset of the Google emulator's REST admin API
// that tools rely on.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /emulator/v1/projects/{project}/databases/{database}/documents", func(w http.ResponseWriter, r *http.Request) {
		db, err := s.database("projects/" + r.PathValue("project") + "/databases/" + r.PathValue("database"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.clearDatabase(db)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}\n"))
	})
	// Test-only, not in Google's emulator: lose trigger events on purpose.
	s.deliveries.ControlHandler(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("Ok\n"))
	})
	return mux
}
