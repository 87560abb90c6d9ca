package logging

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// Phones replaces driver phone numbers (E.164: "+" and 7 to 15 digits) in
// log text by a keyed hash, "tel:" and 12 hex digits. The same number with
// the same key always gives the same hash, so an operator who has the key
// can find every line about one driver, while a log reader without it
// cannot recover the number (the key defeats trying every number).
type Phones struct {
	key []byte
}

// NewPhones hashes with key; an empty key gets a random one, which
// correlates lines within one process only.
func NewPhones(key string) *Phones {
	k := []byte(key)
	if len(k) == 0 {
		k = make([]byte, 32)
		_, _ = rand.Read(k)
	}
	return &Phones{key: k}
}

// Hash is the form a number takes in logs.
func (p *Phones) Hash(number string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(number))
	return "tel:" + hex.EncodeToString(m.Sum(nil))[:12]
}

// Redact returns s with every phone number in it hashed. A "+" that follows
// a letter or digit (base64 in a wamid) is not a number's start.
func (p *Phones) Redact(s string) string {
	var out []byte
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '+' || (i > 0 && isAlnum(s[i-1])) {
			continue
		}
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if n := j - i - 1; n < 7 || n > 15 || s[i+1] == '0' || (j < len(s) && isAlnum(s[j])) {
			continue
		}
		out = append(out, s[last:i]...)
		out = append(out, p.Hash(s[i:j])...)
		last, i = j, j-1
	}
	if out == nil {
		return s
	}
	return string(append(out, s[last:]...))
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
