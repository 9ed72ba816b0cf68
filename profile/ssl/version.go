// Package ssl owns the grammar of the TLS profiles (F5 client-ssl and
// server-ssl): today the min_version keyword. config validates with
// ParseVersion and adds the file and line; the engine builds its
// crypto/tls configuration from the same parse.
package ssl

import (
	"crypto/tls"
	"fmt"
	"strings"
)

type version struct {
	name string
	v    uint16
}

// versions maps each min_version keyword to its crypto/tls constant, in
// documentation order. A function, not a variable: no package state.
func versions() [4]version {
	return [...]version{{"1.0", tls.VersionTLS10}, {"1.1", tls.VersionTLS11}, {"1.2", tls.VersionTLS12}, {"1.3", tls.VersionTLS13}}
}

// Versions lists the min_version keywords, oldest first.
func Versions() []string {
	vs := versions()
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.name
	}
	return out
}

// VersionError is a min_version keyword that does not parse.
type VersionError struct {
	Value string // as written
}

func (e *VersionError) Error() string {
	msg := fmt.Sprintf("min_version %q is not valid: use one of %s", e.Value, strings.Join(Versions(), ", "))
	// "TLSv1.2", "tls1.3", "v1.2": the operator meant the bare number.
	if s := strings.TrimLeft(strings.ToLower(e.Value), "tlsv "); s != e.Value {
		for _, v := range versions() {
			if s == v.name {
				msg += fmt.Sprintf(" (did you mean %q?)", v.name)
			}
		}
	}
	return msg
}

// ParseVersion returns the crypto/tls constant (tls.VersionTLS12, …) for a
// min_version keyword: 1.0, 1.1, 1.2 or 1.3.
func ParseVersion(s string) (uint16, error) {
	for _, v := range versions() {
		if s == v.name {
			return v.v, nil
		}
	}
	return 0, &VersionError{Value: s}
}
