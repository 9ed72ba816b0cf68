package h1

import "strings"

// Field is one header field line. Name is kept exactly as received (case
// included) so a proxy forwards what it was given.
type Field struct{ Name, Value string }

// Header is an ordered list of fields with case-insensitive access by name.
// Order and duplicates are preserved; nothing is canonicalised.
type Header []Field

// Get returns the value of the first field called name.
func (h Header) Get(name string) (string, bool) {
	for i := range h {
		if equalFold(h[i].Name, name) {
			return h[i].Value, true
		}
	}
	return "", false
}

// Values returns the values of every field called name, in order, or nil.
func (h Header) Values(name string) []string {
	var vs []string
	for i := range h {
		if equalFold(h[i].Name, name) {
			vs = append(vs, h[i].Value)
		}
	}
	return vs
}

// Has reports whether a field called name is present.
func (h Header) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Del removes every field called name, keeping the order of the others.
func (h *Header) Del(name string) {
	s := *h
	j := 0
	for i := range s {
		if !equalFold(s[i].Name, name) {
			s[j] = s[i]
			j++
		}
	}
	clear(s[j:]) // drop references to removed strings
	*h = s[:j]
}

// Set replaces every field called name with one field name: value. It takes
// the position of the first such field (so a rewritten header stays where
// the client put it) or is appended when there was none.
func (h *Header) Set(name, value string) {
	s := *h
	for i := range s {
		if equalFold(s[i].Name, name) {
			s[i] = Field{Name: name, Value: value}
			rest := Header(s[i+1:])
			rest.Del(name)
			*h = s[:i+1+len(rest)]
			return
		}
	}
	*h = append(s, Field{Name: name, Value: value})
}

// Add appends the field name: value.
func (h *Header) Add(name, value string) {
	*h = append(*h, Field{Name: name, Value: value})
}

// equalFold is ASCII-only case-insensitive equality. Field names are tokens,
// so Unicode folding (strings.EqualFold) would only be slower and could make
// "K" (Kelvin sign) match "k".
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// tchar bitmaps (RFC 9110 §5.6.2): bit c of tokenLo for c < 64, bit c-64 of
// tokenHi for 64 <= c < 128. Constants rather than a lookup table so the
// package has no mutable state; TestTokenTable checks them against the RFC's
// list.
const (
	tokenLo = 0x03ff6cfa00000000
	tokenHi = 0x57ffffffc7fffffe
)

func isTchar(c byte) bool {
	if c < 64 {
		return tokenLo&(1<<c) != 0
	}
	if c < 128 {
		return tokenHi&(1<<(c-64)) != 0
	}
	return false
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v is a legal field value after OWS
// trimming: HTAB, SP, VCHAR and obs-text only. That refuses NUL, CR, LF, DEL
// and the other controls, which is what keeps a value from carrying a second
// header line past us.
func validFieldValue(v string) bool {
	// Eight bytes at a time: values are most of a head's bytes. hasLess
	// and hasZero are exact as booleans (bytes >= 0x80 never trigger them);
	// a word that trips either, HTAB being the legitimate case, is rechecked
	// byte by byte below.
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := uint64(v[i]) | uint64(v[i+1])<<8 | uint64(v[i+2])<<16 | uint64(v[i+3])<<24 |
			uint64(v[i+4])<<32 | uint64(v[i+5])<<40 | uint64(v[i+6])<<48 | uint64(v[i+7])<<56
		ctl := (x - lo*0x20) &^ x & hi // some byte < 0x20
		y := x ^ lo*0x7f
		del := (y - lo) &^ y & hi // some byte == 0x7f
		if ctl|del != 0 {
			break
		}
	}
	for ; i < len(v); i++ {
		c := v[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// trimOWS removes leading and trailing SP and HTAB.
func trimOWS(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// forEachListElem calls fn for each element of a comma-separated list value
// (RFC 9110 §5.6.1) with OWS trimmed, skipping empty elements as the RFC
// requires recipients to. fn returns false to stop early.
func forEachListElem(v string, fn func(elem string) bool) {
	for v != "" {
		var elem string
		if i := strings.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			elem, v = v, ""
		}
		if elem = trimOWS(elem); elem != "" {
			if !fn(elem) {
				return
			}
		}
	}
}
