package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Profile types.
const (
	TypeSourceAddr    = "source_addr"
	TypeCookieInsert  = "cookie_insert"
	TypeCookiePassive = "cookie_passive"
	TypeUniversal     = "universal"
	TypeDestAddr      = "dest_addr"
	TypeHash          = "hash"
	TypeMSRDP         = "msrdp"
	TypeSIP           = "sip"
	TypeSSL           = "ssl"
	// TypeLBSP keys on the client identity of the IPv6 Destination Option
	// of the connection's SYN (LBSP, docs/lbsp.md).
	TypeLBSP = "lbsp"
)

// Types lists every profile type, in documentation order.
func Types() []string {
	return []string{TypeSourceAddr, TypeDestAddr, TypeCookieInsert, TypeCookiePassive, TypeUniversal, TypeHash, TypeMSRDP, TypeSIP, TypeSSL, TypeLBSP}
}

// Peek defaults and bounds for the types that read the first client bytes
// (msrdp, sip, ssl).
const (
	DefaultPeekTimeout  = 5 * time.Second
	DefaultPeekMaxBytes = 4096
	MinPeekMaxBytes     = 64
	MaxPeekMaxBytes     = 64 << 10
)

// DefaultCookiePrefix prefixes the pool name to form the cookie_insert cookie
// name when none is configured (F5 uses "BIGipServer" + pool).
const DefaultCookiePrefix = "FULCRUM_"

// MinSecretLen is the shortest cookie_insert HMAC secret accepted.
const MinSecretLen = 16

// maxValueLen bounds the identity stored verbatim in a key. Longer values
// (a huge header, a long URI) are keyed by their SHA-256 instead so that a
// client cannot make each record cost kilobytes.
const maxValueLen = 128

// HTTPRequest is the view of an HTTP request persistence needs (the proxy's
// request type implements it).
type HTTPRequest interface {
	Header(name string) (string, bool) // first value, case-insensitive name
	Cookie(name string) (string, bool)
	Path() string // request target path without query
	Query(name string) (string, bool)
}

// Request is what a profile needs to know about a connection or request.
type Request struct {
	Virtual string
	Pool    string // the virtual's pool
	Client  netip.Addr
	Local   netip.Addr  // the virtual-side (destination) address the client connected to
	HTTP    HTTPRequest // nil for L4 virtuals
	// Payload is the first bytes the client sent (a tcp virtual's peek, a
	// udp virtual's datagram); nil when the profile does not read them.
	Payload []byte
	// LBSP is the client identity of the connection's LBSP option (16
	// bytes), nil when it carried none.
	LBSP []byte
}

// ProfileConfig is a persistence profile as configured.
type ProfileConfig struct {
	Name                     string
	Type                     string        // one of Types()
	Timeout                  time.Duration // table entry lifetime; cookie_insert: cookie Max-Age (0 = session cookie); unused by hash
	PrefixV4, PrefixV6       int           // source_addr, dest_addr, msrdp's fallback and hash's source_addr key: masks
	CookieName               string        // cookie_insert: "" => "FULCRUM_" + pool name; cookie_passive: the application's cookie, required
	CookiePath, CookieDomain string
	HTTPOnly, Secure         bool
	Secret                   []byte // cookie_insert HMAC key (>= 16 bytes; the caller supplies a random one when the operator set none)
	Key                      string // universal: "header:NAME" | "uri" | "query:NAME" | "cookie:NAME"; hash: the same or "source_addr"
	// PeekTimeout and PeekMaxBytes bound how long and how far msrdp, sip
	// and ssl read the first client bytes (0: the defaults).
	PeekTimeout         time.Duration
	PeekMaxBytes        int
	MatchAcrossVirtuals bool // records are shared by all virtuals (scope excludes the virtual name)
	MatchAcrossPools    bool // records are shared across pools too (scope excludes pool name) and may point into another pool
}

// Profile is a validated, immutable persistence profile. It is safe for
// concurrent use and holds no records itself: table-based types keep them in
// the Table passed to each call.
type Profile struct {
	cfg    ProfileConfig
	uniKey Key // universal and hash: what the key reads
	cookie *cookieCodec
	// attrs is the fixed tail of a cookie_insert Set-Cookie header.
	attrs string
}

// NewProfile validates cfg and returns the profile.
func NewProfile(cfg ProfileConfig) (*Profile, error) {
	p := &Profile{cfg: cfg}
	p.cfg.Secret = append([]byte(nil), cfg.Secret...)
	name := cfg.Name
	if name == "" {
		return nil, errors.New("persistence profile: name is required")
	}
	if strings.ContainsAny(name, "|") {
		return nil, fmt.Errorf("persistence profile %q: name must not contain '|'", name)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("persistence profile %q: timeout %v is negative", name, cfg.Timeout)
	}
	switch cfg.Type {
	case TypeMSRDP, TypeSIP, TypeSSL:
		if cfg.PeekTimeout < 0 {
			return nil, fmt.Errorf("persistence profile %q: peek_timeout %v is negative", name, cfg.PeekTimeout)
		}
		if cfg.PeekTimeout == 0 {
			p.cfg.PeekTimeout = DefaultPeekTimeout
		}
		if cfg.PeekMaxBytes == 0 {
			p.cfg.PeekMaxBytes = DefaultPeekMaxBytes
		}
		if n := p.cfg.PeekMaxBytes; n < MinPeekMaxBytes || n > MaxPeekMaxBytes {
			return nil, fmt.Errorf("persistence profile %q: peek_max_bytes %d is out of range %d..%d", name, n, MinPeekMaxBytes, MaxPeekMaxBytes)
		}
	}
	switch cfg.Type {
	case TypeSourceAddr, TypeDestAddr, TypeMSRDP:
		if cfg.PrefixV4 < 0 || cfg.PrefixV4 > 32 {
			return nil, fmt.Errorf("persistence profile %q: prefix_v4 %d is out of range 0..32", name, cfg.PrefixV4)
		}
		if cfg.PrefixV6 < 0 || cfg.PrefixV6 > 128 {
			return nil, fmt.Errorf("persistence profile %q: prefix_v6 %d is out of range 0..128", name, cfg.PrefixV6)
		}
	case TypeCookieInsert:
		if len(cfg.Secret) < MinSecretLen {
			return nil, fmt.Errorf("persistence profile %q: cookie_insert secret is %d bytes, need at least %d", name, len(cfg.Secret), MinSecretLen)
		}
		if cfg.CookieName != "" && !validToken(cfg.CookieName) {
			return nil, fmt.Errorf("persistence profile %q: cookie_name %q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~ only)", name, cfg.CookieName)
		}
		if cfg.MatchAcrossPools && cfg.CookieName == "" {
			return nil, fmt.Errorf("persistence profile %q: match_across_pools with cookie_insert needs an explicit cookie_name (the default name differs per pool, so another pool would never see the cookie)", name)
		}
		if !validAttr(cfg.CookiePath) {
			return nil, fmt.Errorf("persistence profile %q: cookie_path %q contains ';' or a control character", name, cfg.CookiePath)
		}
		if !validAttr(cfg.CookieDomain) {
			return nil, fmt.Errorf("persistence profile %q: cookie_domain %q contains ';' or a control character", name, cfg.CookieDomain)
		}
		p.cookie = newCookieCodec(cfg.Secret)
		p.attrs = p.cookieAttrs()
	case TypeCookiePassive:
		if cfg.CookieName == "" {
			return nil, fmt.Errorf("persistence profile %q: cookie_passive needs cookie_name (the application's session cookie, e.g. JSESSIONID)", name)
		}
		if !validToken(cfg.CookieName) {
			return nil, fmt.Errorf("persistence profile %q: cookie_name %q is not a valid cookie name", name, cfg.CookieName)
		}
	case TypeUniversal:
		k, err := ParseUniversalKey(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("persistence profile %q: %w", name, err)
		}
		p.uniKey = k
	case TypeHash:
		k, err := ParseKey(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("persistence profile %q: %w", name, err)
		}
		if k.Kind == KeySourceAddr && (cfg.PrefixV4 < 0 || cfg.PrefixV4 > 32 || cfg.PrefixV6 < 0 || cfg.PrefixV6 > 128) {
			return nil, fmt.Errorf("persistence profile %q: prefix_v4/prefix_v6 out of range 0..32/0..128", name)
		}
		p.uniKey = k
	case TypeSIP, TypeSSL, TypeLBSP:
	case "":
		return nil, fmt.Errorf("persistence profile %q: type is required (%s)", name, strings.Join(Types(), ", "))
	default:
		return nil, fmt.Errorf("persistence profile %q: unknown type %q (valid: %s)", name, cfg.Type, strings.Join(Types(), ", "))
	}
	if cfg.Type != TypeCookieInsert && cfg.Type != TypeHash && cfg.Timeout == 0 {
		return nil, fmt.Errorf("persistence profile %q: %s needs a timeout > 0 (records would never expire; F5's default is 180s)", name, cfg.Type)
	}
	return p, nil
}

// validToken reports whether s is an RFC 7230 token (valid as a header or
// cookie name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validAttr reports whether s can be put in a Set-Cookie attribute value.
func validAttr(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == ';' {
			return false
		}
	}
	return true
}

// Name is the profile's name.
func (p *Profile) Name() string { return p.cfg.Name }

// Type is the profile's type (one of the Type* constants).
func (p *Profile) Type() string { return p.cfg.Type }

// Config returns a copy of the configuration the profile was built from.
func (p *Profile) Config() ProfileConfig {
	c := p.cfg
	c.Secret = append([]byte(nil), p.cfg.Secret...)
	return c
}

// NeedsHTTP reports whether the profile reads HTTP requests: the cookie
// types, universal, and hash with a key other than source_addr.
func (p *Profile) NeedsHTTP() bool {
	switch p.cfg.Type {
	case TypeCookieInsert, TypeCookiePassive, TypeUniversal:
		return true
	case TypeHash:
		return p.uniKey.HTTP()
	}
	return false
}

// Target is where a persisted client should go.
type Target struct {
	Pool   string
	Member netip.AddrPort
}

// CookieName is the cookie this profile reads and (for cookie_insert) sets
// for requests to pool.
func (p *Profile) CookieName(pool string) string {
	if p.cfg.CookieName != "" {
		return p.cfg.CookieName
	}
	if p.cfg.Type == TypeCookieInsert {
		return DefaultCookiePrefix + pool
	}
	return ""
}

// identity returns the human-readable identity the request carries for this
// profile, or ok=false when it carries none.
func (p *Profile) identity(req *Request) (string, bool) {
	if req == nil {
		return "", false
	}
	switch p.cfg.Type {
	case TypeSourceAddr:
		return p.maskAddr(req.Client)
	case TypeDestAddr:
		return p.maskAddr(req.Local)
	case TypeMSRDP:
		if v, s := parseRDPCookie(p.peeked(req.Payload)); s == found {
			return v, true
		}
		return p.maskAddr(req.Client) // F5 msrdp without a cookie: source address
	case TypeSIP:
		v, s := parseSIPCallID(p.peeked(req.Payload))
		return v, s == found
	case TypeSSL:
		v, s := parseTLSSessionID(p.peeked(req.Payload))
		return v, s == found
	case TypeHash:
		if p.uniKey.Kind == KeySourceAddr {
			return p.maskAddr(req.Client)
		}
		return p.httpIdentity(req)
	case TypeCookiePassive:
		if req.HTTP == nil {
			return "", false
		}
		v, ok := req.HTTP.Cookie(p.cfg.CookieName)
		return v, ok && v != ""
	case TypeCookieInsert:
		if req.HTTP == nil {
			return "", false
		}
		v, ok := req.HTTP.Cookie(p.CookieName(req.Pool))
		return v, ok && v != ""
	case TypeUniversal:
		return p.httpIdentity(req)
	case TypeLBSP:
		if len(req.LBSP) != 16 {
			return "", false
		}
		return hex.EncodeToString(req.LBSP), true
	}
	return "", false
}

// httpIdentity is what the universal (or hash) key reads from the request.
func (p *Profile) httpIdentity(req *Request) (string, bool) {
	if req.HTTP == nil {
		return "", false
	}
	var v string
	var ok bool
	switch p.uniKey.Kind {
	case KeyHeader:
		v, ok = req.HTTP.Header(p.uniKey.Name)
	case KeyQuery:
		v, ok = req.HTTP.Query(p.uniKey.Name)
	case KeyCookie:
		v, ok = req.HTTP.Cookie(p.uniKey.Name)
	case KeyURI:
		v = req.HTTP.Path()
		ok = true
	}
	return v, ok && v != ""
}

// peeked is b cut to the profile's peek bound: a udp datagram or a tcp peek
// is never scanned further than peek_max_bytes.
func (p *Profile) peeked(b []byte) []byte {
	if len(b) > p.cfg.PeekMaxBytes {
		return b[:p.cfg.PeekMaxBytes]
	}
	return b
}

// LearnsFromServer reports whether the profile learns from the member's
// first bytes (ssl: the session ID the ServerHello assigns), so the proxy
// should read them with Peek's bounds and give them to LearnServer.
func (p *Profile) LearnsFromServer() bool { return p.cfg.Type == TypeSSL }

// InspectServer is Inspect for the member's first bytes (ssl: a
// ServerHello up to its session ID).
func (p *Profile) InspectServer(b []byte) (done, hasID bool) {
	if p.cfg.Type != TypeSSL {
		return true, false
	}
	_, s := parseServerSessionID(p.peeked(b))
	return s != needMore || len(b) >= p.cfg.PeekMaxBytes, s == found
}

// LearnServer is for ssl: the member tgt answered req with first (its first
// bytes); when they hold a ServerHello with a session ID, that ID now leads
// to tgt, so the client's next ClientHello, resuming the session with that
// ID, goes back to the member that holds the session (F5 SSL persistence
// reads both hellos the same way). A TLS 1.3 ServerHello only echoes the
// client's random ID, already recorded. No-op for other types.
func (p *Profile) LearnServer(t *Table, req *Request, first []byte, tgt Target, now time.Time) {
	if p.cfg.Type != TypeSSL || t == nil || req == nil || !tgt.Member.IsValid() {
		return
	}
	if tgt.Pool == "" {
		tgt.Pool = req.Pool
	}
	if v, s := parseServerSessionID(p.peeked(first)); s == found {
		p.store(t, req, v, tgt, now)
	}
}

// Peek reports whether the profile keys on the first bytes the client sends
// (msrdp, sip, ssl) and, if so, how many bytes and how long the proxy may
// wait for them before choosing a member.
func (p *Profile) Peek() (maxBytes int, timeout time.Duration, ok bool) {
	switch p.cfg.Type {
	case TypeMSRDP, TypeSIP, TypeSSL:
		return p.cfg.PeekMaxBytes, p.cfg.PeekTimeout, true
	}
	return 0, 0, false
}

// Inspect looks at b, the first bytes a client sent so far: done reports
// that more bytes cannot change the outcome (the identity is complete, or
// the bytes are not this protocol or carry none), hasID that they hold the
// identity this profile keys on (an RDP cookie, a Call-ID, a non-empty TLS
// session ID). b beyond PeekMaxBytes is not looked at, and reaching that
// bound is done. Types that do not peek return done, !found.
func (p *Profile) Inspect(b []byte) (done, hasID bool) {
	var s scan
	switch p.cfg.Type {
	case TypeMSRDP:
		_, s = parseRDPCookie(p.peeked(b))
	case TypeSIP:
		_, s = parseSIPCallID(p.peeked(b))
	case TypeSSL:
		_, s = parseTLSSessionID(p.peeked(b))
	default:
		return true, false
	}
	return s != needMore || len(b) >= p.cfg.PeekMaxBytes, s == found
}

// HasIdentity reports whether req carries what this profile keys on: always
// for source_addr with a valid client address, otherwise the cookie, header,
// query parameter or (non-empty) path. For cookie_insert, a present but
// forged cookie still counts as identity.
func (p *Profile) HasIdentity(req *Request) bool {
	_, ok := p.identity(req)
	return ok
}

// maskAddr masks an address (the client's, or the virtual-side one for
// dest_addr) to the configured prefix. IPv4-mapped IPv6 addresses (a
// dual-stack listener's view of an IPv4 client) are treated as IPv4 so both
// listeners produce the same identity.
func (p *Profile) maskAddr(a netip.Addr) (string, bool) {
	if !a.IsValid() {
		return "", false
	}
	a = a.Unmap().WithZone("")
	bits := p.cfg.PrefixV6
	if a.Is4() {
		bits = p.cfg.PrefixV4
	}
	pfx, err := a.Prefix(bits)
	if err != nil {
		return "", false
	}
	return pfx.Addr().String(), true
}

// key builds the table key "<profile>|<virtual or *>|<pool or *>|<type>|<value>".
func (p *Profile) key(req *Request, value string) string {
	v, pool := req.Virtual, req.Pool
	if p.cfg.MatchAcrossVirtuals {
		v = "*"
	}
	if p.cfg.MatchAcrossPools {
		pool = "*"
	}
	return p.cfg.Name + "|" + v + "|" + pool + "|" + p.cfg.Type + "|" + keyValue(value)
}

// keyValue is value as it appears in a key: itself when short, otherwise its
// SHA-256 so that long identities cost a fixed amount of memory.
func keyValue(v string) string {
	if len(v) <= maxValueLen {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// displayValue is value as it appears in Record.Value.
func displayValue(v string) string {
	if len(v) <= maxValueLen {
		return v
	}
	// Cut on a rune boundary so the JSON view stays valid UTF-8 text.
	cut := maxValueLen
	for cut > 0 && cut < len(v) && v[cut]&0xC0 == 0x80 {
		cut--
	}
	return v[:cut] + "..."
}

// Lookup finds the persisted target for req. ok=false when the request has no
// identity for this profile, when there is no (unexpired) record, or, for
// cookie_insert, when the cookie is not authentic or belongs to another pool
// and match_across_pools is off. The proxy calls the primary profile's
// Lookup and, when it returns ok=false, the fallback profile's.
//
// Without match_across_pools the returned Pool is always req.Pool; with it,
// the target may be in another pool and the proxy decides whether to honour
// it (F5 match-across-pools).
func (p *Profile) Lookup(t *Table, req *Request, now time.Time) (tgt Target, ok bool) {
	if p.cfg.Type == TypeHash {
		return Target{}, false // no table: the proxy ranks members with HashRank
	}
	value, ok := p.identity(req)
	if !ok {
		return Target{}, false
	}
	if p.cfg.Type == TypeCookieInsert {
		pool, member, ok := p.cookie.decode(p.CookieName(req.Pool), value)
		if !ok || (pool != req.Pool && !p.cfg.MatchAcrossPools) {
			return Target{}, false
		}
		return Target{Pool: pool, Member: member}, true
	}
	if t == nil {
		return Target{}, false
	}
	rec, ok := t.Lookup(p.key(req, value), now)
	if !ok || !rec.Member.IsValid() {
		return Target{}, false
	}
	return Target{Pool: rec.Pool, Member: rec.Member}, true
}

// Record is called after the proxy picked (or re-confirmed) a member for req,
// including after a persisted member turned out to be unusable and another
// was chosen: the record or cookie then points at the new member.
//
// The table-based types (source_addr, dest_addr, universal, msrdp, sip,
// ssl) store or refresh a record keyed on the request's identity (nothing
// when it has none); hash stores nothing. cookie_passive does the same when the
// request already carries the application's cookie (the first response's
// Set-Cookie is handled by Learn). cookie_insert stores nothing and returns
// the Set-Cookie header value to add to the response; every other type
// returns "".
func (p *Profile) Record(t *Table, req *Request, tgt Target, now time.Time) (setCookie string) {
	if req == nil || !tgt.Member.IsValid() {
		return ""
	}
	if tgt.Pool == "" {
		tgt.Pool = req.Pool
	}
	if p.cfg.Type == TypeCookieInsert {
		name := p.CookieName(req.Pool)
		return name + "=" + p.cookie.encode(name, tgt.Pool, tgt.Member) + p.attrs
	}
	value, ok := p.identity(req)
	if !ok || t == nil || p.cfg.Type == TypeHash {
		return ""
	}
	p.store(t, req, value, tgt, now)
	return ""
}

func (p *Profile) store(t *Table, req *Request, value string, tgt Target, now time.Time) {
	t.upsert(Record{
		Key:     p.key(req, value),
		Type:    p.cfg.Type,
		Value:   displayValue(value),
		Profile: p.cfg.Name,
		Virtual: req.Virtual,
		Pool:    tgt.Pool,
		Member:  tgt.Member,
		Timeout: p.cfg.Timeout,
	}, now)
}

// cookieAttrs is the fixed tail of the Set-Cookie value:
// "; Path=/; HttpOnly[; Secure][; Domain=..][; Max-Age=N]".
func (p *Profile) cookieAttrs() string {
	var b strings.Builder
	path := p.cfg.CookiePath
	if path == "" {
		path = "/"
	}
	b.WriteString("; Path=")
	b.WriteString(path)
	if p.cfg.HTTPOnly {
		b.WriteString("; HttpOnly")
	}
	if p.cfg.Secure {
		b.WriteString("; Secure")
	}
	if p.cfg.CookieDomain != "" {
		b.WriteString("; Domain=")
		b.WriteString(p.cfg.CookieDomain)
	}
	if p.cfg.Timeout > 0 {
		// Round up: a 1.5s timeout must not become a 1s cookie, and a
		// sub-second one must not become Max-Age=0 (which deletes it).
		secs := int64((p.cfg.Timeout + time.Second - 1) / time.Second)
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(secs, 10))
	}
	return b.String()
}

// Learn is for cookie_passive: given the response's Set-Cookie header values,
// if the application sets its cookie, store value -> tgt. If the application
// deletes its cookie (Max-Age <= 0), the record for that value is removed.
// No-op for other types.
func (p *Profile) Learn(t *Table, req *Request, setCookies []string, tgt Target, now time.Time) {
	if p.cfg.Type != TypeCookiePassive || t == nil || req == nil || !tgt.Member.IsValid() {
		return
	}
	if tgt.Pool == "" {
		tgt.Pool = req.Pool
	}
	for _, sc := range setCookies {
		value, del, ok := parseSetCookie(sc, p.cfg.CookieName)
		if !ok {
			continue
		}
		if del {
			t.Delete(p.key(req, value))
			continue
		}
		p.store(t, req, value, tgt, now)
	}
}

// parseSetCookie extracts the value of cookie name from one Set-Cookie header
// value the way a browser stores it (RFC 6265bis §5.6), so that what is
// learned is exactly what comes back in the Cookie header: a line holding a
// control character is ignored (browsers drop it), name and value are
// trimmed of spaces and tabs only, and the value loses one pair of
// surrounding double quotes (as the request side's cookie parser does).
// del reports a deletion: the last valid Max-Age is <= 0 (a Max-Age that is
// not delta-seconds, like "+0" or "5s", is ignored). An empty value is not
// an identity and yields ok=false. Expires is not parsed: applications
// deleting a session cookie almost always also send Max-Age or an empty
// value, and a stale record simply times out.
func parseSetCookie(sc, name string) (value string, del, ok bool) {
	if strings.ContainsFunc(sc, isCTL) {
		return "", false, false
	}
	pair, attrs, _ := strings.Cut(sc, ";")
	n, v, found := strings.Cut(pair, "=")
	if !found || trimWSP(n) != name {
		return "", false, false
	}
	v = trimWSP(v)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" {
		return "", false, false
	}
	for attrs != "" {
		var a string
		a, attrs, _ = strings.Cut(attrs, ";")
		k, val, _ := strings.Cut(a, "=")
		if !strings.EqualFold(trimWSP(k), "max-age") {
			continue
		}
		if secs, valid := deltaSeconds(trimWSP(val)); valid {
			del = secs <= 0 // the last valid Max-Age wins
		}
	}
	return v, del, true
}

// deltaSeconds parses a Max-Age value: an optional '-' and at least one
// digit; the sign of an overlong value is kept.
func deltaSeconds(s string) (int64, bool) {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil { // out of range: only the sign matters
		if s[0] == '-' {
			return -1, true
		}
		return 1, true
	}
	return n, true
}

// isCTL reports the control characters a browser refuses in a cookie line
// (everything below 0x20 but tab, and DEL).
func isCTL(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// trimWSP trims spaces and tabs (RFC 6265 WSP), not other Unicode space:
// a browser keeps a no-break space as part of the value.
func trimWSP(s string) string { return strings.Trim(s, " \t") }
