// Command firestore-emulator runs the wadispatch Firestore emulator (package
// pkg/testinfra/firestoreemu) as a program with the gcloud emulators' interface.
//
//	firestore-emulator --host-port 127.0.0.1:8080 \
//	  --trigger 'created:leasecompany/{leaseId}/enquiries/{enquiryId}/whatsapp/messages/chatMessages/{messageId}=http://127.0.0.1:8081/' \
//	  --import seed.json --export-on-exit seed.json \
//	  --indexes charts/wadispatch/firestore.indexes.json
//
// --indexes [DATABASE=]FILE (repeatable; DATABASE defaults to "(default)")
// loads a firestore.indexes.json file as the composite indexes of a
// database, whose queries then fail with FAILED_PRECONDITION where
// Firestore would want an index; databases without one are not checked.
//
// For tests, HTTP POST /emulator/v1/triggers:dropDeliveries on its port
// drops the trigger events of the commits that follow (as if Eventarc lost
// them) until POST /emulator/v1/triggers:resumeDeliveries.
//
// It prints "firestore-emulator ready on HOST:PORT" and an export line for
// FIRESTORE_EMULATOR_HOST once it listens, and stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/visn/wadispatch/pkg/testinfra/firestoreemu"
)

type triggerFlags []firestoreemu.Trigger

func (t *triggerFlags) String() string { return fmt.Sprint(len(*t), " triggers") }

func (t *triggerFlags) Set(v string) error {
	tr, err := firestoreemu.ParseTrigger(v)
	if err != nil {
		return err
	}
	*t = append(*t, tr)
	return nil
}

// indexFlags are the --indexes values, read once flags are parsed so that a
// bad file fails like the program's other startup errors.
type indexFlags []string

func (f *indexFlags) String() string { return strings.Join(*f, " ") }

func (f *indexFlags) Set(v string) error {
	*f = append(*f, v)
	return nil
}

// load reads each [DATABASE=]FILE value.
func (f indexFlags) load() (map[string]*firestoreemu.IndexConfig, error) {
	if len(f) == 0 {
		return nil, nil
	}
	out := map[string]*firestoreemu.IndexConfig{}
	for _, v := range f {
		db, file, ok := strings.Cut(v, "=")
		if !ok {
			db, file = "(default)", v
		}
		if _, dup := out[db]; dup {
			return nil, fmt.Errorf("--indexes %s: database %s already has an index file", v, db)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read index file: %w", err)
		}
		cfg, err := firestoreemu.ParseIndexConfig(data)
		if err != nil {
			return nil, fmt.Errorf("index file %s: %w", file, err)
		}
		out[db] = cfg
		logrus.Infof("firestore-emulator: database %s checks queries against the %d indexes of %s", db, len(cfg.Indexes), file)
	}
	return out, nil
}

func main() {
	if err := run(); err != nil {
		logrus.WithError(err).Error("firestore-emulator failed")
		os.Exit(1)
	}
}

func run() error {
	var (
		hostPort   = flag.String("host-port", "127.0.0.1:8080", "address to listen on (port 0 picks a free port)")
		importFile = flag.String("import", "", "JSON file of documents to load at start (as written by --export-on-exit)")
		exportFile = flag.String("export-on-exit", "", "JSON file to write all documents to on shutdown")
		location   = flag.String("location", "nam5", "location reported in the ce-location attribute of trigger events")
		attempts   = flag.Int("trigger-attempts", 10, "delivery attempts per trigger event")
		minBackoff = flag.Duration("trigger-min-backoff", 100*time.Millisecond, "first retry delay of a failed trigger delivery")
		maxBackoff = flag.Duration("trigger-max-backoff", 10*time.Second, "maximum retry delay of a failed trigger delivery")
		pprofAddr  = flag.String("pprof-addr", "", "serve Go's runtime profiles at /debug/pprof/ on this address, to see where the emulator's time goes under load")
		retention  = flag.Duration("version-retention", time.Hour, "how far back read_time reads can see; every document version written within it is kept in memory")
		writeRate  = flag.Float64("document-write-rate", 0, "sustained writes per second each document takes, commits beyond it wait (Firestore's is about 1/s; 0: unlimited)")
		writeBurst = flag.Int("document-write-burst", 1, "writes a document idle for a while takes at once before --document-write-rate holds")
		triggers   triggerFlags
		indexFiles indexFlags
	)
	flag.Var(&triggers, "trigger", "KIND[@DATABASE]:PATTERN=URL, repeatable; KIND is created, updated, deleted or written")
	flag.Var(&indexFiles, "indexes", "`[DATABASE=]FILE`, repeatable: firestore.indexes.json of a database (default \"(default)\"), whose queries are then refused where Firestore would want an index")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }() // net/http/pprof registers on the default mux
	}
	indexes, err := indexFiles.load()
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := firestoreemu.Start(ctx, firestoreemu.Options{
		Addr:     *hostPort,
		Triggers: triggers,
		Location: *location,
		Delivery: firestoreemu.DeliveryPolicy{Attempts: *attempts, MinBackoff: *minBackoff, MaxBackoff: *maxBackoff},
		Indexes:  indexes,
		// Firestore keeps an hour of versions; a long local run that needs
		// no old reads can keep less, and so less memory.
		VersionRetention:   *retention,
		DocumentWriteRate:  *writeRate,
		DocumentWriteBurst: *writeBurst,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	if *importFile != "" {
		if err := importFrom(srv, *importFile); err != nil {
			return err
		}
	}
	fmt.Printf("firestore-emulator ready on %s\nexport FIRESTORE_EMULATOR_HOST=%s\n", srv.Addr(), srv.Addr())
	for _, t := range triggers {
		db := t.Database
		if db == "" {
			db = "(default)"
		}
		logrus.Infof("firestore-emulator: trigger %s on %s (database %s) -> %s", t.Event, t.Pattern, db, t.URL)
	}
	<-ctx.Done()
	logrus.Info("firestore-emulator: shutting down")
	if *exportFile != "" {
		if err := exportTo(srv, *exportFile); err != nil {
			return err
		}
	}
	return srv.Close()
}

func importFrom(srv *firestoreemu.Server, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		logrus.Warnf("firestore-emulator: import file %s does not exist; starting empty", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("open import file: %w", err)
	}
	defer f.Close()
	if err := srv.Import(f); err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	return nil
}

// exportTo writes through a temporary file so an interrupted export never
// truncates the previous one.
func exportTo(srv *firestoreemu.Server, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create export file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := srv.Export(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write export file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("export to %s: %w", path, err)
	}
	logrus.Infof("firestore-emulator: exported documents to %s", strings.TrimSpace(path))
	return nil
}
