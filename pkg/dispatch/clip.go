package dispatch

import "unicode/utf8"

// Clip keeps a caller-sized value (an event id, a document field, a
// webhook id) out of log lines, span attributes and error strings whole: at
// most n bytes of it, cut on a character boundary, with "…" when cut.
// Cloud Logging drops entries over 256 KB, and a log line is no place for
// a megabyte somebody else chose.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
