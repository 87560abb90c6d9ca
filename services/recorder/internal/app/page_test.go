package app_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	wadispatchv1 "github.com/visn/wadispatch/proto/wadispatch/v1"
)

// pages reads a listing page by page from its first, and returns the
// message paths in the order listed and how many pages it took.
func pages(t *testing.T, list func(token string) ([]*wadispatchv1.MessageState, string, error)) ([]string, int) {
	t.Helper()
	var (
		got   []string
		token string
	)
	for n := 1; ; n++ {
		msgs, next, err := list(token)
		if err != nil {
			t.Fatalf("page %d: %v", n, err)
		}
		for _, m := range msgs {
			got = append(got, m.GetMessageDocId())
		}
		if next == "" {
			return got, n
		}
		if n > 100 {
			t.Fatalf("no last page after %d pages: %v", n, got)
		}
		token = next
	}
}

func paths(ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, messagePath(id))
	}
	return out
}

// Pages of UNKNOWN messages list each exactly once, in the listing's
// order, also when a page ends between messages updated at the same
// instant: the path breaks the tie, and the next page starts after it.
func TestListUnknownPagesCoverEachOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	// Ties the service cannot make on demand: states written as the
	// recorder writes them, three of them updated at the same instant.
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	at := map[string]time.Time{"m5": t0, "m3": t0.Add(time.Second), "m1": t0.Add(time.Second), "m4": t0.Add(time.Second), "m2": t0.Add(2 * time.Second)}
	for id, updated := range at {
		if _, err := e.db.Doc(messagePath(id)+"/dispatch/state").Set(ctx, map[string]any{
			"messagePath": messagePath(id), "messageId": id, "status": "UNKNOWN", "reason": "claim expired", "updatedAt": updated,
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := paths("m5", "m1", "m3", "m4", "m2")
	for _, size := range []int32{1, 2, 3, 5} {
		got, n := pages(t, func(token string) ([]*wadispatchv1.MessageState, string, error) {
			resp, err := e.rec.ListUnknown(ctx, &wadispatchv1.ListUnknownRequest{PageSize: size, PageToken: token})
			return resp.GetMessages(), resp.GetNextPageToken(), err
		})
		if !slices.Equal(got, want) {
			t.Errorf("page_size %d: %v, want %v", size, got, want)
		}
		if wantPages := (len(want) + int(size) - 1) / int(size); n != wantPages {
			t.Errorf("page_size %d: %d pages, want %d (the last full page says there is no next)", size, n, wantPages)
		}
	}
	all, err := e.rec.ListUnknown(ctx, &wadispatchv1.ListUnknownRequest{})
	if err != nil || len(all.GetMessages()) != len(want) || all.GetNextPageToken() != "" {
		t.Errorf("default page size: %d messages, token %q, %v", len(all.GetMessages()), all.GetNextPageToken(), err)
	}
	if _, err := e.rec.ListUnknown(ctx, &wadispatchv1.ListUnknownRequest{PageSize: 5000}); err != nil {
		t.Errorf("page_size above the maximum is cut down to it, not refused: %v", err)
	}
}

// Stalled claims and an enquiry's messages page the same way, through the
// service's own writes.
func TestListStalledAndEnquiryPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("m%d", i)
		ids = append(ids, id)
		task := e.newMessage(t, id)
		if _, err := e.release(task, e.claim(t, task, time.Hour).GetClaimId()); err != nil {
			t.Fatal(err)
		}
	}
	got, n := pages(t, func(token string) ([]*wadispatchv1.MessageState, string, error) {
		resp, err := e.rec.ListStalled(ctx, &wadispatchv1.ListStalledRequest{OlderThan: durationpb.New(0), PageSize: 2, PageToken: token})
		return resp.GetMessages(), resp.GetNextPageToken(), err
	})
	if !slices.Equal(got, paths(ids...)) || n != 3 {
		t.Errorf("stalled in %d pages: %v, want %v (released in that order)", n, got, paths(ids...))
	}

	for _, id := range ids[:3] {
		task := e.newMessage(t, id)
		e.record(t, sent(task, e.claim(t, task, 0).GetClaimId(), "wamid."+id))
	}
	var wamids [][]string
	got, n = pages(t, func(token string) ([]*wadispatchv1.MessageState, string, error) {
		resp, err := e.rec.ListEnquiryMessages(ctx, &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: driver, EnquiryId: "e1", PageSize: 2, PageToken: token})
		wamids = append(wamids, resp.GetWhatsappMessageIds())
		return resp.GetMessages(), resp.GetNextPageToken(), err
	})
	if !slices.Equal(got, paths(ids...)) || n != 3 {
		t.Errorf("enquiry messages in %d pages: %v, want %v (path order)", n, got, paths(ids...))
	}
	for i, w := range wamids {
		slices.Sort(w)
		if !slices.Equal(w, []string{"wamid.m0", "wamid.m1", "wamid.m2"}) {
			t.Errorf("page %d: ancillary ids %v, want the whole record on every page", i+1, w)
		}
	}
}

// A token that is not one, was altered, or continues another listing or
// filter is refused with INVALID_ARGUMENT saying so; it never lists
// anything.
func TestPageTokensRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	for _, id := range []string{"m1", "m2", "m3"} {
		task := e.newMessage(t, id)
		if _, err := e.release(task, e.claim(t, task, time.Hour).GetClaimId()); err != nil {
			t.Fatal(err)
		}
	}
	enquiry := func(driverNumber, token string) error {
		_, err := e.rec.ListEnquiryMessages(ctx, &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: driverNumber, EnquiryId: "e1", PageSize: 1, PageToken: token})
		return err
	}
	stalled := func(olderThan time.Duration, token string) (*wadispatchv1.ListStalledResponse, error) {
		return e.rec.ListStalled(ctx, &wadispatchv1.ListStalledRequest{OlderThan: durationpb.New(olderThan), PageSize: 1, PageToken: token})
	}
	first, err := stalled(0, "")
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v, %v", first, err)
	}
	tok := first.GetNextPageToken()
	enq, err := e.rec.ListEnquiryMessages(ctx, &wadispatchv1.ListEnquiryMessagesRequest{DriverMobileNumber: driver, EnquiryId: "e1", PageSize: 1})
	if err != nil || enq.GetNextPageToken() == "" {
		t.Fatalf("first enquiry page: %v, %v", enq, err)
	}

	flipped := []byte(tok)
	mid := len(flipped) / 2
	flipped[mid] = map[bool]byte{true: 'B', false: 'A'}[flipped[mid] == 'A']
	calls := map[string]struct {
		err  func() error
		want string
	}{
		"not base64": {func() error { _, err := stalled(0, "not a token!"); return err }, "malformed"},
		"too short":  {func() error { _, err := stalled(0, "abc"); return err }, "malformed"},
		"altered":    {func() error { _, err := stalled(0, string(flipped)); return err }, "damaged or altered"},
		"truncated":  {func() error { _, err := stalled(0, tok[:len(tok)-3]); return err }, "page_token"},
		"other age":  {func() error { _, err := stalled(time.Hour, tok); return err }, "another method or filter"},
		"other list": {func() error {
			_, err := e.rec.ListUnknown(ctx, &wadispatchv1.ListUnknownRequest{PageToken: tok})
			return err
		}, "another method or filter"},
		"other driver":                 {func() error { return enquiry("+447700900999", enq.GetNextPageToken()) }, "another method or filter"},
		"stalled token for an enquiry": {func() error { return enquiry(driver, tok) }, "another method or filter"},
	}
	for name, c := range calls {
		err := c.err()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("%s: %v, want InvalidArgument naming page_token, %q", name, err, c.want)
		}
	}
	if err := enquiry(driver, enq.GetNextPageToken()); err != nil {
		t.Errorf("the token with its own filter: %v", err)
	}
	next, err := stalled(0, tok)
	if err != nil || len(next.GetMessages()) != 1 || next.GetMessages()[0].GetMessageId() != "m2" {
		t.Errorf("the token with its own filter: %v, %v", next, err)
	}
	if _, err := e.rec.ListStalled(ctx, &wadispatchv1.ListStalledRequest{PageSize: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative page_size: %v, want InvalidArgument", err)
	}
}
