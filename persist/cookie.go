package persist

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/netip"
	"sync"
)

// The cookie_insert value is stateless and tamper-proof:
//
//	base64url-nopad( payload || MAC )
//	payload = version(1)=1 | addrlen(1)=4|16 | addr | port(2, big endian) | pool name (rest)
//	MAC     = HMAC-SHA256(secret, label || cookie name || 0x00 || payload)[:16]
//
// The pool name travels in the cookie so that a cookie issued for pool A is
// not honoured by pool B (unless match_across_pools), and so that with
// match_across_pools the proxy learns which pool the member belongs to. The
// cookie name is bound into the MAC so that two profiles that happen to share
// a secret cannot replay each other's cookies. No expiry is inside: the
// cookie's Max-Age is the lifetime, as with F5 and HAProxy cookie insert.
//
// The member address is readable by the client (base64 is not encryption),
// exactly like F5's default cookie insert; it is authenticated, not hidden.

const (
	cookieVersion = 1
	cookieMACLen  = 16
	cookieLabel   = "fulcrum persist cookie v1\x00"
	// maxCookieLen bounds the work done on a hostile cookie before the MAC
	// check: a 255-byte pool name plus header and MAC encodes to < 400 bytes.
	maxCookieLen = 512
	// minCookiePayload is version, addrlen, an IPv4 address and a port.
	minCookiePayload = 1 + 1 + 4 + 2
)

var cookieEncoding = base64.RawURLEncoding.Strict()

// cookieCodec encodes and verifies cookie values for one secret and cookie
// name. It is safe for concurrent use: keyed HMAC states are pooled, which
// saves re-deriving the padded keys on every request.
type cookieCodec struct {
	macs sync.Pool // of hash.Hash keyed with the secret
}

func newCookieCodec(secret []byte) *cookieCodec {
	key := append([]byte(nil), secret...)
	c := &cookieCodec{}
	c.macs.New = func() any { return hmac.New(sha256.New, key) }
	return c
}

func (c *cookieCodec) mac(name string, payload []byte, out []byte) []byte {
	h := c.macs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(cookieLabel))
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(payload)
	out = h.Sum(out)
	c.macs.Put(h)
	return out
}

// encode returns the cookie value for member in pool. member must be valid
// (the proxy only records members it connected to); a zone is dropped since
// it cannot be meaningful on another host.
func (c *cookieCodec) encode(name, pool string, member netip.AddrPort) string {
	addr := member.Addr().WithZone("")
	raw := addr.AsSlice()
	buf := make([]byte, 0, 2+len(raw)+2+len(pool)+sha256.Size)
	buf = append(buf, cookieVersion, byte(len(raw)))
	buf = append(buf, raw...)
	buf = binary.BigEndian.AppendUint16(buf, member.Port())
	buf = append(buf, pool...)
	n := len(buf)
	buf = c.mac(name, buf, buf)
	return cookieEncoding.EncodeToString(buf[:n+cookieMACLen])
}

// decode verifies value and returns the pool and member it carries. Anything
// that is not a cookie this codec issued under this name (wrong secret,
// tampered, truncated, garbage) yields ok=false; it never panics.
func (c *cookieCodec) decode(name, value string) (pool string, member netip.AddrPort, ok bool) {
	if len(value) == 0 || len(value) > maxCookieLen {
		return "", netip.AddrPort{}, false
	}
	// encoding/base64 silently skips '\r' and '\n'; only the exact alphabet
	// is accepted so that one cookie has exactly one spelling.
	for i := 0; i < len(value); i++ {
		if !isBase64URL(value[i]) {
			return "", netip.AddrPort{}, false
		}
	}
	raw, err := cookieEncoding.DecodeString(value)
	if err != nil || len(raw) < minCookiePayload+cookieMACLen {
		return "", netip.AddrPort{}, false
	}
	payload, tag := raw[:len(raw)-cookieMACLen], raw[len(raw)-cookieMACLen:]
	var sum [sha256.Size]byte
	want := c.mac(name, payload, sum[:0])
	if !hmac.Equal(want[:cookieMACLen], tag) {
		return "", netip.AddrPort{}, false
	}
	return parseCookiePayload(payload)
}

// parseCookiePayload decodes an authenticated payload. It is strict even
// though the MAC already vouches for the bytes, so that a future format
// change or a secret shared with something else cannot be misread.
func parseCookiePayload(p []byte) (pool string, member netip.AddrPort, ok bool) {
	if len(p) < minCookiePayload || p[0] != cookieVersion {
		return "", netip.AddrPort{}, false
	}
	alen := int(p[1])
	if alen != 4 && alen != 16 {
		return "", netip.AddrPort{}, false
	}
	p = p[2:]
	if len(p) < alen+2 {
		return "", netip.AddrPort{}, false
	}
	addr, _ := netip.AddrFromSlice(p[:alen])
	port := binary.BigEndian.Uint16(p[alen:])
	if !addr.IsValid() || addr.IsUnspecified() || port == 0 {
		return "", netip.AddrPort{}, false
	}
	return string(p[alen+2:]), netip.AddrPortFrom(addr, port), true
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
