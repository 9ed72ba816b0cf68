package persist

import (
	"fmt"
	"strings"
)

// This file owns the request-key grammar shared by consistent-hash pools
// (pool hash_key) and universal persistence (profile key). config validates
// with ParseKey/ParseUniversalKey and the engine compiles from the same
// parse, so the grammar has one definition.

// KeyKind says which part of a connection or request a key reads.
type KeyKind uint8

// Key kinds. KeySourceAddr is valid only where ParseKey is (hash keys).
const (
	KeyNone       KeyKind = iota
	KeySourceAddr         // "source_addr": the client address
	KeyURI                // "uri": the request path without the query
	KeyHeader             // "header:NAME": a request header's first value
	KeyQuery              // "query:NAME": a query parameter
	KeyCookie             // "cookie:NAME": a request cookie
)

var keyKindNames = [...]string{KeyNone: "", KeySourceAddr: "source_addr", KeyURI: "uri", KeyHeader: "header", KeyQuery: "query", KeyCookie: "cookie"}

func (k KeyKind) String() string {
	if int(k) < len(keyKindNames) {
		return keyKindNames[k]
	}
	return fmt.Sprintf("KeyKind(%d)", uint8(k))
}

// Key is a parsed request key.
type Key struct {
	Kind KeyKind
	Name string // header, query parameter or cookie name; "" otherwise
}

// String formats k in the syntax ParseKey accepts.
func (k Key) String() string {
	if k.Name == "" {
		return k.Kind.String()
	}
	return k.Kind.String() + ":" + k.Name
}

// HTTP reports whether the key reads the HTTP request (every kind but
// source_addr).
func (k Key) HTTP() bool { return k.Kind != KeySourceAddr && k.Kind != KeyNone }

// KeyError is a key that does not parse. Msg names the key and says what
// to write instead; config adds the file and line.
type KeyError struct {
	Key string // as written
	Msg string
}

func (e *KeyError) Error() string { return e.Msg }

// ParseKey parses a consistent-hash key: source_addr | uri | header:NAME |
// query:NAME | cookie:NAME. Header and cookie names are RFC 9110 tokens; a
// query parameter name holds no &, =, #, ? or white space (it could never
// match a parameter).
func ParseKey(s string) (Key, error) { return parseKey(s, true) }

// ParseUniversalKey parses a universal-persistence key: ParseKey's grammar
// without source_addr (universal persistence keys on HTTP data; the
// source_addr profile type keys on the client address).
func ParseUniversalKey(s string) (Key, error) { return parseKey(s, false) }

func parseKey(s string, allowSource bool) (Key, error) {
	forms := "uri, header:NAME, query:NAME or cookie:NAME"
	if allowSource {
		forms = "source_addr, " + forms
	}
	switch s {
	case "source_addr":
		if allowSource {
			return Key{Kind: KeySourceAddr}, nil
		}
	case "uri":
		return Key{Kind: KeyURI}, nil
	}
	src, name, ok := strings.Cut(s, ":")
	var kind KeyKind
	switch src {
	case "header":
		kind = KeyHeader
	case "query":
		kind = KeyQuery
	case "cookie":
		kind = KeyCookie
	}
	switch {
	case !ok || kind == KeyNone:
		return Key{}, &KeyError{s, fmt.Sprintf("key %q is not valid: use %s", s, forms)}
	case name == "":
		return Key{}, &KeyError{s, fmt.Sprintf("key %q names no %s: write %s:NAME", s, src, src)}
	case kind == KeyQuery && strings.ContainsAny(name, "&=#? \t"):
		return Key{}, &KeyError{s, fmt.Sprintf("key %q: a query parameter name cannot contain &, =, #, ? or spaces", s)}
	case kind != KeyQuery && !validToken(name):
		return Key{}, &KeyError{s, fmt.Sprintf("key %q: %q is not a valid %s name", s, name, src)}
	}
	return Key{Kind: kind, Name: name}, nil
}
