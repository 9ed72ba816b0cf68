package persist

import (
	"encoding/base64"
	"net/netip"
	"testing"
)

func TestCookieCodecRoundTrip(t *testing.T) {
	t.Parallel()
	c := newCookieCodec(secret)
	tests := []struct {
		pool   string
		member string
	}{
		{"web", "10.0.0.1:80"},
		{"", "192.0.2.1:65535"},
		{"a-very_long.pool-name", "[2001:db8::1]:8443"},
		{"mapped", "[::ffff:10.0.0.1]:80"},
	}
	for _, tc := range tests {
		m := netip.MustParseAddrPort(tc.member)
		v := c.encode("N", tc.pool, m)
		pool, got, ok := c.decode("N", v)
		if !ok || pool != tc.pool || got != m {
			t.Errorf("round trip %s/%s: %q %v %v", tc.pool, tc.member, pool, got, ok)
		}
		if _, _, ok := c.decode("OTHER", v); ok {
			t.Errorf("cookie for name N accepted under name OTHER")
		}
	}
	// The format is stable: cookies issued by an earlier build keep working
	// after an upgrade (and on a peer running another build).
	pool, m, ok := c.decode("FULCRUM_web", "AQQKAAABAFB3ZWL1sHAnfIYt1EMsQLgyfD8y")
	if !ok || pool != "web" || m.String() != "10.0.0.1:80" {
		t.Errorf("pinned cookie: %q %v %v", pool, m, ok)
	}
	// A zone cannot cross hosts: it is dropped.
	v := c.encode("N", "p", netip.MustParseAddrPort("[fe80::1%eth0]:80"))
	if _, got, ok := c.decode("N", v); !ok || got.String() != "[fe80::1]:80" {
		t.Errorf("zone: %v %v", got, ok)
	}
}

func TestParseCookiePayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    []byte
		ok   bool
	}{
		{"ok v4", []byte{1, 4, 10, 0, 0, 1, 0, 80, 'w'}, true},
		{"ok v4 no pool", []byte{1, 4, 10, 0, 0, 1, 0, 80}, true},
		{"bad version", []byte{2, 4, 10, 0, 0, 1, 0, 80}, false},
		{"bad addr len", []byte{1, 5, 10, 0, 0, 1, 0, 80, 0}, false},
		{"short v6", []byte{1, 16, 10, 0, 0, 1, 0, 80, 0}, false},
		{"port zero", []byte{1, 4, 10, 0, 0, 1, 0, 0}, false},
		{"unspecified", []byte{1, 4, 0, 0, 0, 0, 0, 80}, false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		if _, _, ok := parseCookiePayload(tc.p); ok != tc.ok {
			t.Errorf("%s: ok=%v want %v", tc.name, ok, tc.ok)
		}
	}
}

// FuzzCookieDecode feeds arbitrary cookie values to the decoder. It must never
// panic, must only accept values it would itself produce (no malleability),
// and, for arbitrary bytes given a valid MAC, the payload parser must either
// reject them or return something that re-encodes to the same cookie.
func FuzzCookieDecode(f *testing.F) {
	c := newCookieCodec(secret)
	f.Add(c.encode("FULCRUM_web", "web", netip.MustParseAddrPort("10.0.0.1:80")))
	f.Add(c.encode("FULCRUM_web", "", netip.MustParseAddrPort("[2001:db8::1]:443")))
	f.Add("")
	f.Add("not base64 !!")
	f.Add("AQQKAAABAFB3ZWI")
	f.Fuzz(func(t *testing.T, value string) {
		const name = "FULCRUM_web"
		if pool, m, ok := c.decode(name, value); ok {
			if again := c.encode(name, pool, m); again != value {
				t.Fatalf("accepted %q, which re-encodes to %q", value, again)
			}
		}
		// Sign the raw bytes so the payload parser itself is exercised.
		raw := []byte(value)
		if len(raw) > 300 {
			raw = raw[:300]
		}
		signed := c.mac(name, raw, append([]byte(nil), raw...))
		cookie := base64.RawURLEncoding.EncodeToString(signed[:len(raw)+cookieMACLen])
		pool, m, ok := c.decode(name, cookie)
		if !ok {
			return
		}
		if !m.IsValid() || m.Port() == 0 {
			t.Fatalf("accepted invalid member %v from %x", m, raw)
		}
		if m.Addr().Is4() && raw[1] != 4 || m.Addr().Is6() && raw[1] != 16 {
			t.Fatalf("address family mismatch for %x", raw)
		}
		if again := c.encode(name, pool, m); again != cookie {
			t.Fatalf("payload %x decoded to %q %v, re-encodes differently", raw, pool, m)
		}
	})
}
