package dispatch_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/visn/wadispatch/pkg/dispatch"
)

const claimID = "5f0c7a52-3c1e-4f0e-9a0b-2d7e4c1b9a10"

func TestCallbackRoundTrip(t *testing.T) {
	c := dispatch.Callback{ClaimID: claimID, Ref: dispatch.MessageRef{LeaseID: "lease-1", EnquiryID: "enq 7", MessageID: "msg-ü"}}
	s, ok := c.Encode()
	if !ok || s != "wd1/"+claimID+"/lease-1/enq 7/msg-ü" {
		t.Fatalf("Encode = %q, %v", s, ok)
	}
	got, err := dispatch.ParseCallback(s)
	if err != nil || got != c {
		t.Fatalf("ParseCallback(%q) = %+v, %v", s, got, err)
	}
}

// A message whose ids make the callback too long is sent without one.
func TestCallbackTooLongIsNotCarried(t *testing.T) {
	long := dispatch.Callback{ClaimID: claimID, Ref: dispatch.MessageRef{LeaseID: "l1", EnquiryID: "e1", MessageID: strings.Repeat("m", 500)}}
	if s, ok := long.Encode(); ok {
		t.Errorf("a %d-byte callback encoded", len(s))
	}
	fits := long
	fits.Ref.MessageID = strings.Repeat("m", dispatch.MaxCallbackLength-len("wd1/"+claimID+"/l1/e1/"))
	if s, ok := fits.Encode(); !ok || len(s) != dispatch.MaxCallbackLength {
		t.Errorf("a callback of exactly %d bytes: %d, %v", dispatch.MaxCallbackLength, len(s), ok)
	}
}

func TestParseCallbackRefusesWhatIsNotOurs(t *testing.T) {
	for _, s := range []string{
		"",
		"campaign-42",
		`{"source":"api"}`,
		"wd2/" + claimID + "/l1/e1/m1",
		"wd1/" + claimID + "/l1/e1",
		"wd1/" + claimID + "/l1/e1/m1/extra",
		"wd1/" + claimID + "/l1//m1",
		"wd1/" + claimID + "/../e1/m1",
		"wd1/" + claimID + "/__l1__/e1/m1",
		"wd1/" + claimID + "/l1/e1/\xff",
		"wd1/c1/l1/e1/m1",
		"wd1/" + strings.ToUpper(claimID) + "/l1/e1/m1",
		"wd1/{" + claimID + "}/l1/e1/m1",
		"wd1/urn:uuid:" + claimID + "/l1/e1/m1",
		"wd1/" + claimID + "/l1/e1/" + strings.Repeat("m", 600),
	} {
		if c, err := dispatch.ParseCallback(s); err == nil {
			t.Errorf("%q accepted as %+v", s, c)
		} else if !utf8.ValidString(err.Error()) || len(err.Error()) > 300 {
			t.Errorf("%q: error %q quotes too much", s, err)
		}
	}
}

// Whatever WhatsApp echoes, parsing never panics, accepts only what Encode
// would write, and quotes little of it.
func FuzzParseCallback(f *testing.F) {
	f.Add("wd1/" + claimID + "/l1/e1/m1")
	f.Add("wd1/" + claimID + "/l1/e1/m1/")
	f.Add("wd1///")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := dispatch.ParseCallback(s)
		if err != nil {
			if len(err.Error()) > 300 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if again, ok := c.Encode(); !ok || again != s {
			t.Fatalf("%q parsed as %+v, which encodes as %q, %v", s, c, again, ok)
		}
		if _, err := dispatch.ParseMessagePath(c.Ref.Path()); err != nil {
			t.Fatalf("%q names no message: %v", s, err)
		}
	})
}
