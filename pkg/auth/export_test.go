package auth

import "time"

// SetClock sets the verifier's clock, for tests of expiry.
func SetClock(v *Verifier, now func() time.Time) { v.now = now }
