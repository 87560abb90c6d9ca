package adapters

import (
	"context"
	"fmt"
	"iter"
	"strconv"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visn/wadispatch/pkg/chatmessage"
	"github.com/visn/wadispatch/pkg/dispatch"
	"github.com/visn/wadispatch/pkg/expiring"
	"github.com/visn/wadispatch/pkg/firestoreevent"
	"github.com/visn/wadispatch/pkg/logging"
	"github.com/visn/wadispatch/services/ingest/internal/app"
)

// LeaseConfigs reads leases' WhatsApp configurations and keeps them for a
// short TTL: a burst of messages for one lease costs one read, and an edit
// of the configuration is seen within the TTL. An absent or unusable
// configuration is kept too, for a shorter time, so a lease without WhatsApp
// does not cost a read per message while a fix is picked up quickly.
type LeaseConfigs struct {
	fs       *firestore.Client
	defaults chatmessage.ConfigDefaults
	ttl      time.Duration
	missTTL  time.Duration
	now      func() time.Time
	log      *logrus.Entry
	entries  *expiring.Cache[leaseEntry]
	numbers  *expiring.Cache[app.NumberLeases]
	accounts *expiring.Cache[app.NumberLeases]
}

type leaseEntry struct {
	cfg chatmessage.WhatsAppConfig
	err error // a no_whatsapp_config rejection
}

// maxMissTTL bounds how long a missing configuration is remembered.
const maxMissTTL = 5 * time.Second

// NewLeaseConfigs reads through fs, completing configurations with
// defaults; now is the cache's clock.
func NewLeaseConfigs(fs *firestore.Client, defaults chatmessage.ConfigDefaults, ttl time.Duration, now func() time.Time, log *logrus.Entry) *LeaseConfigs {
	return &LeaseConfigs{
		fs: fs, defaults: defaults, ttl: ttl, missTTL: min(ttl, maxMissTTL), now: now, log: log,
		entries:  expiring.New[leaseEntry](now),
		numbers:  expiring.New[app.NumberLeases](now),
		accounts: expiring.New[app.NumberLeases](now),
	}
}

// WhatsAppConfig implements app.Leases.
func (c *LeaseConfigs) WhatsAppConfig(ctx context.Context, leaseID string) (chatmessage.WhatsAppConfig, error) {
	e, err := c.entries.Get(ctx, leaseID, c.load)
	if err != nil {
		return chatmessage.WhatsAppConfig{}, err
	}
	return e.cfg, e.err
}

func (c *LeaseConfigs) load(ctx context.Context, leaseID string) (leaseEntry, time.Duration, error) {
	ref := c.fs.Collection("leasecompany").Doc(leaseID)
	if ref == nil {
		return leaseEntry{}, 0, &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: fmt.Sprintf("lease id %q is not a document id", leaseID)}
	}
	var data map[string]any
	snap, err := ref.Get(ctx)
	switch {
	case status.Code(err) == codes.NotFound:
	case err != nil:
		return leaseEntry{}, 0, firestoreError("read lease "+leaseID, err)
	default:
		data = snap.Data()
	}
	cfg, err := chatmessage.ParseWhatsAppConfig(data, c.defaults)
	if err != nil {
		logging.WithContext(ctx, c.log).WithError(err).WithField("leaseId", leaseID).Debug("lease has no usable WhatsApp configuration")
		return leaseEntry{err: err}, c.missTTL, nil
	}
	// The token reference names a secret: only whether it is set is logged.
	logging.WithContext(ctx, c.log).WithFields(logrus.Fields{
		"leaseId": leaseID, "phoneNumberId": cfg.PhoneNumberID, "apiVersion": cfg.APIVersion,
		"templateLanguage": cfg.TemplateLanguage, "tokenRefSet": cfg.TokenRef != "",
	}).Debug("lease WhatsApp configuration loaded")
	return leaseEntry{cfg: cfg}, c.ttl, nil
}

// BusinessNumber implements app.Leases with one query of the leases whose
// whatsappConfig.phoneNumberId is the number (as a string, or as the
// integer a console write may store), served by Firestore's automatic
// single-field index; kept like a configuration, an unknown number for the
// shorter time. Leases whose configuration is unusable are not the
// number's: to the pipeline they have no WhatsApp.
func (c *LeaseConfigs) BusinessNumber(ctx context.Context, phoneNumberID string) (app.NumberLeases, error) {
	return c.numbers.Get(ctx, phoneNumberID, c.loadNumber)
}

func (c *LeaseConfigs) loadNumber(ctx context.Context, phoneNumberID string) (app.NumberLeases, time.Duration, error) {
	return c.loadLeases(ctx, "phoneNumberId", phoneNumberID)
}

// BusinessAccount implements app.Leases as BusinessNumber does, by
// whatsappConfig.businessAccountId.
func (c *LeaseConfigs) BusinessAccount(ctx context.Context, accountID string) (app.NumberLeases, error) {
	return c.accounts.Get(ctx, accountID, c.loadAccount)
}

func (c *LeaseConfigs) loadAccount(ctx context.Context, accountID string) (app.NumberLeases, time.Duration, error) {
	return c.loadLeases(ctx, "businessAccountId", accountID)
}

// loadLeases finds the leases whose whatsappConfig.{key} is id.
func (c *LeaseConfigs) loadLeases(ctx context.Context, key, id string) (app.NumberLeases, time.Duration, error) {
	forms := []any{id}
	if n, err := strconv.ParseInt(id, 10, 64); err == nil && strconv.FormatInt(n, 10) == id {
		forms = append(forms, n)
	}
	snaps, err := c.fs.Collection("leasecompany").Where("whatsappConfig."+key, "in", forms).
		OrderBy(firestore.DocumentID, firestore.Asc).Limit(app.MaxLeasesPerNumber + 1).Documents(ctx).GetAll()
	if err != nil {
		return app.NumberLeases{}, 0, &app.DependencyError{Dep: app.DepFirestore, Err: fmt.Errorf("query leases by %s: %w", key, err)}
	}
	if len(snaps) > app.MaxLeasesPerNumber {
		return app.NumberLeases{Problem: app.NumberShared}, c.missTTL, nil
	}
	var n app.NumberLeases
	for _, snap := range snaps {
		cfg, err := chatmessage.ParseWhatsAppConfig(snap.Data(), c.defaults)
		if err != nil {
			continue
		}
		if len(n.LeaseIDs) == 0 {
			n.Config = cfg
			m, _ := snap.Data()["whatsappConfig"].(map[string]any)
			n.OptOut = chatmessage.ParseOptOut(m)
		}
		n.LeaseIDs = append(n.LeaseIDs, snap.Ref.ID)
	}
	if len(n.LeaseIDs) == 0 {
		return app.NumberLeases{Problem: app.NumberUnknown}, c.missTTL, nil
	}
	return n, c.ttl, nil
}

// Documents reads message and enquiry documents. Enquiries are kept for a
// while: the fields ingest takes from them (accountId, serviceUnitId) do
// not change while messages are written in the enquiry, and a burst of
// messages in one enquiry then costs one read.
type Documents struct {
	fs         *firestore.Client
	enquiryTTL time.Duration
	enquiries  *expiring.Cache[map[string]any]
}

// NewDocuments reads through fs, keeping enquiries for enquiryTTL (0: not
// at all); now is the cache's clock.
func NewDocuments(fs *firestore.Client, enquiryTTL time.Duration, now func() time.Time) Documents {
	return Documents{fs: fs, enquiryTTL: enquiryTTL, enquiries: expiring.New[map[string]any](now)}
}

// Message implements app.Messages.
func (e Documents) Message(ctx context.Context, path string) (app.StoredMessage, error) {
	ref := e.fs.Doc(path)
	if ref == nil {
		return app.StoredMessage{}, &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: fmt.Sprintf("message path %q is not a document path", dispatch.Clip(path, 200))}
	}
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		return app.StoredMessage{}, nil
	}
	if err != nil {
		return app.StoredMessage{}, firestoreError("read message", err)
	}
	return app.StoredMessage{Exists: true, CreateTime: snap.CreateTime, Fields: snap.Data()}, nil
}

// MessageAndDriver implements app.Messages with one BatchGetDocuments.
func (e Documents) MessageAndDriver(ctx context.Context, path string, with app.Companions) (app.StoredMessage, error) {
	if with == (app.Companions{}) {
		return e.Message(ctx, path)
	}
	snaps, err := e.getAll(ctx, "read message", path, with.DriverRecord, with.Template, with.TemplateName)
	if err != nil {
		return app.StoredMessage{}, err
	}
	stored := app.StoredMessage{DriverRecordPath: with.DriverRecord, TemplatePath: with.Template, TemplateNamePath: with.TemplateName}
	if snaps[0] != nil {
		stored.Exists, stored.CreateTime, stored.Fields = true, snaps[0].CreateTime, snaps[0].Data()
	}
	stored.DriverRecord, stored.Template, stored.TemplateName = data(snaps[1]), data(snaps[2]), data(snaps[3])
	return stored, nil
}

// Template implements app.Messages with one BatchGetDocuments.
func (e Documents) Template(ctx context.Context, path, namePath string) (entry, name map[string]any, err error) {
	snaps, err := e.getAll(ctx, "read template registry", path, namePath)
	if err != nil {
		return nil, nil, err
	}
	return data(snaps[0]), data(snaps[1]), nil
}

// getAll reads the documents at paths in one BatchGetDocuments: a
// snapshot per path, nil for a path that is "" or a document that does not
// exist. The first path is the one a bad path is reported for (the
// others are built from it or from ids checked before).
func (e Documents) getAll(ctx context.Context, what string, paths ...string) ([]*firestore.DocumentSnapshot, error) {
	var refs []*firestore.DocumentRef
	for _, p := range paths {
		if p == "" {
			continue
		}
		ref := e.fs.Doc(p)
		if ref == nil {
			return nil, &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: fmt.Sprintf("%q is not a document path", dispatch.Clip(paths[0], 200))}
		}
		refs = append(refs, ref)
	}
	got, err := e.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, firestoreError(what, err)
	}
	snaps := make([]*firestore.DocumentSnapshot, len(paths))
	for i, p := range paths {
		if p == "" {
			continue
		}
		if got[0].Exists() {
			snaps[i] = got[0]
		}
		got = got[1:]
	}
	return snaps, nil
}

// data is a snapshot's fields; nil for none.
func data(snap *firestore.DocumentSnapshot) map[string]any {
	if snap == nil {
		return nil
	}
	return snap.Data()
}

// DriverRecord implements app.Messages.
func (e Documents) DriverRecord(ctx context.Context, path string) (map[string]any, error) {
	ref := e.fs.Doc(path)
	if ref == nil {
		return nil, &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: "driver record path is not a document path"}
	}
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, firestoreError("read driver's record", err)
	}
	return snap.Data(), nil
}

// Enquiry implements app.Enquiries.
func (e Documents) Enquiry(ctx context.Context, path string) (map[string]any, error) {
	return e.enquiries.Get(ctx, path, e.readEnquiry)
}

func (e Documents) readEnquiry(ctx context.Context, path string) (map[string]any, time.Duration, error) {
	ref := e.fs.Doc(path)
	if ref == nil {
		return nil, 0, &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: fmt.Sprintf("enquiry path %q is not a document path", path)}
	}
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		// Not kept: the web app may be about to create it.
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, firestoreError("read enquiry", err)
	}
	return snap.Data(), e.enquiryTTL, nil
}

// RecentMessages finds chatMessages documents by the timestamp the web app
// writes on each (INGEST_RECONCILE_TIME_FIELD), a page at a time so that no
// query stream stays open while the documents of a page are handled.
//
// Firestore keeps no single-field index of a collection group by default,
// and a composite index needs two fields, so the query also names the two
// message types the web app writes: it is then served by the composite
// index on (type, the timestamp field) that charts/wadispatch/firestore.indexes.json
// declares. A document of another type is invalid, and its own event says so.
type RecentMessages struct {
	fs       *firestore.Client
	field    string
	pageSize int
}

// recentPage is the number of documents read per query.
const recentPage = 300

// NewRecentMessages queries fs by the timestamp field.
func NewRecentMessages(fs *firestore.Client, field string) RecentMessages {
	return RecentMessages{fs: fs, field: field, pageSize: recentPage}
}

// Messages implements app.Recent.
func (r RecentMessages) Messages(ctx context.Context, from, to time.Time) iter.Seq2[app.RecentMessage, error] {
	return func(yield func(app.RecentMessage, error) bool) {
		q := r.fs.CollectionGroup("chatMessages").
			Where("type", "in", []any{chatmessage.TypeText, chatmessage.TypeTemplate, chatmessage.TypeInteractive,
				chatmessage.TypeImage, chatmessage.TypeDocument, chatmessage.TypeVideo, chatmessage.TypeAudio}).
			Where(r.field, ">=", from).Where(r.field, "<", to).
			OrderBy(r.field, firestore.Asc).Limit(r.pageSize)
		var last *firestore.DocumentSnapshot
		for {
			page := q
			if last != nil {
				page = q.StartAfter(last)
			}
			snaps, err := page.Documents(ctx).GetAll()
			if err != nil {
				yield(app.RecentMessage{}, &app.DependencyError{Dep: app.DepFirestore, Err: fmt.Errorf("query chatMessages by %s: %w", r.field, err)})
				return
			}
			for _, snap := range snaps {
				m := app.RecentMessage{Path: snap.Ref.Path, Stored: app.StoredMessage{Exists: true, CreateTime: snap.CreateTime, Fields: snap.Data()}}
				if !yield(m, nil) {
					return
				}
			}
			if len(snaps) < r.pageSize {
				return
			}
			last = snaps[len(snaps)-1]
		}
	}
}

// firestoreError classifies a Firestore read error. InvalidArgument means
// Firestore refuses the path itself, which no retry changes.
func firestoreError(what string, err error) error {
	if status.Code(err) == codes.InvalidArgument {
		return &firestoreevent.Rejection{Reason: firestoreevent.ReasonInvalidEvent, Detail: fmt.Sprintf("%s: %v", what, err)}
	}
	return &app.DependencyError{Dep: app.DepFirestore, Err: fmt.Errorf("%s: %w", what, err)}
}
