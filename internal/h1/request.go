package h1

import (
	"bufio"
	"net/url"
	"strings"
)

// Framing says how the body after a head is delimited. Exactly one of
// Chunked, ContentLength >= 0, UntilClose and NoBody describes the body; a
// zero-length Content-Length body has ContentLength 0 and NoBody false.
type Framing struct {
	Chunked       bool
	ContentLength int64 // -1 when not given
	UntilClose    bool  // responses only: body delimited by connection close
	NoBody        bool  // HEAD response, 1xx/204/304, or request without body
}

// Request is a parsed request head. All strings are slices of one string
// holding the head, so keeping any of them keeps the whole head alive.
type Request struct {
	Method, Target, Proto string // Proto "HTTP/1.1" or "HTTP/1.0"
	Header                Header
	Body                  Framing
	Close                 bool // connection must close after this exchange (Connection: close, or HTTP/1.0 without keep-alive)
	Expect100             bool // Expect: 100-continue (HTTP/1.1 only, RFC 9110 §10.1.1)
	Upgrade               bool // Connection: upgrade with an Upgrade header (e.g. websocket); HTTP/1.1 only
	// Host is the authority the request is for: the target's authority for
	// absolute-form and CONNECT requests (RFC 9112 §3.2.2 says the Host field
	// is then ignored), otherwise the Host field ("" if HTTP/1.0 sent none).
	Host string
}

// ReadRequest reads one request head. io.EOF (clean, before any byte) is returned as io.EOF.
//
// A clean close after only empty lines is also io.EOF (a stray CRLF after a
// body is not a request). On success br is positioned at the first body byte.
// Content-Length and Transfer-Encoding fields that were valid but not in
// canonical form (duplicates, lists, leading zeros, "Chunked") are rewritten
// in Header to a single canonical field, so what is forwarded says exactly
// what this parser understood.
func ReadRequest(br *bufio.Reader, lim Limits) (*Request, error) {
	head, nfields, err := readHead(br, lim, "request")
	if err != nil {
		return nil, err
	}
	line, rest := cutLine(head)
	req := &Request{}
	if e := req.parseRequestLine(line); e != nil {
		return nil, e
	}
	h, e := parseFields(rest, nfields)
	if e != nil {
		return nil, e
	}
	req.Header = h
	if e := req.finish(); e != nil {
		return nil, e
	}
	return req, nil
}

// parseRequestLine parses "method SP request-target SP HTTP-version" with
// single spaces only (RFC 9112 §3): lenient whitespace splitting is how a
// front end and a back end come to see different targets.
func (r *Request) parseRequestLine(line string) *Error {
	if strings.IndexByte(line, '\r') >= 0 {
		return malformed("bare CR in request line")
	}
	sp1 := strings.IndexByte(line, ' ')
	if sp1 < 0 {
		return malformed("request line has no spaces: " + quoteCap(line))
	}
	sp2 := strings.IndexByte(line[sp1+1:], ' ')
	if sp2 < 0 {
		return malformed("request line has no HTTP version (HTTP/0.9 is not supported)")
	}
	sp2 += sp1 + 1
	r.Method, r.Target, r.Proto = line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	if !isToken(r.Method) {
		return malformed("invalid method: " + quoteCap(r.Method))
	}
	if strings.IndexByte(r.Proto, ' ') >= 0 {
		return malformed("extra space in request line")
	}
	if e := checkVersion(r.Proto); e != nil {
		return e
	}
	return r.checkTarget()
}

// checkTarget validates the request-target and its form against the method
// (RFC 9112 §3.2): origin-form "/path?query" for most requests, absolute-form
// "scheme://authority/path" as sent to proxies, authority-form "host:port"
// for CONNECT only, asterisk-form "*" for OPTIONS only. Whitespace, controls,
// DEL and '#' (fragments are never sent, RFC 9112 §3.2) are refused in all.
// Bytes >= 0x80 are allowed: RFC 3986 forbids them but browsers and apps send
// raw UTF-8 and forwarding them unchanged cannot be misread.
func (r *Request) checkTarget() *Error {
	t := r.Target
	if t == "" {
		return malformed("empty request target")
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f || c == '#' {
			return malformed("invalid character in request target: " + quoteCap(t))
		}
	}
	if r.Method == "CONNECT" {
		if !validAuthority(t, true) {
			return malformed("CONNECT target is not host:port: " + quoteCap(t))
		}
		return nil
	}
	switch {
	case t[0] == '/':
		return nil
	case t == "*":
		if r.Method != "OPTIONS" {
			return malformed("asterisk-form target with method " + quoteCap(r.Method))
		}
		return nil
	}
	if _, ok := absoluteAuthority(t); !ok {
		return malformed("invalid request target: " + quoteCap(t))
	}
	return nil
}

// absoluteAuthority returns the authority of an absolute-form target
// "scheme://authority[/path][?query]", refusing empty authorities and
// userinfo (RFC 9110 §4.2.4 says to treat "user@" as an error).
func absoluteAuthority(t string) (string, bool) {
	i := strings.Index(t, "://")
	if i <= 0 || !isAlpha(t[0]) {
		return "", false
	}
	for j := 1; j < i; j++ {
		if c := t[j]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return "", false
		}
	}
	rest := t[i+3:]
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	if !validAuthority(auth, false) {
		return "", false
	}
	return auth, true
}

// validAuthority checks host[:port] with a conservative character set:
// letters, digits, "-._~!$&'()*+;=%" for reg-names, brackets for IP
// literals, and a numeric port. Comma, '@', '/', '\\' and non-ASCII bytes are
// refused: they have no place in a host name and are the material of Host
// header injection and routing confusion. needPort is set for CONNECT.
func validAuthority(a string, needPort bool) bool {
	host, port := a, ""
	if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.IndexByte(a[i:], ']') < 0 {
		host, port = a[:i], a[i+1:]
		if port == "" && needPort {
			return false
		}
		if len(port) > 5 {
			return false
		}
		for j := 0; j < len(port); j++ {
			if !isDigit(port[j]) {
				return false
			}
		}
	} else if needPort {
		return false
	}
	if host == "" {
		return false
	}
	if host[0] == '[' {
		// IP-literal: hex digits, ':' and '.' (IPv4-mapped) inside brackets.
		if len(host) < 3 || host[len(host)-1] != ']' {
			return false
		}
		for j := 1; j < len(host)-1; j++ {
			c := host[j]
			if !isDigit(c) && !isHexLetter(c) && c != ':' && c != '.' {
				return false
			}
		}
		return true
	}
	for j := 0; j < len(host); j++ {
		c := host[j]
		if isAlpha(c) || isDigit(c) {
			continue
		}
		switch c {
		case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ';', '=', '%':
			continue
		}
		return false
	}
	return true
}

func isAlpha(c byte) bool     { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isHexLetter(c byte) bool { return 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// finish applies the cross-field rules: Host, body framing, connection
// management.
func (r *Request) finish() *Error {
	var sm semantics
	if e := sm.scan(r.Header); e != nil {
		return e
	}
	http11 := r.Proto == "HTTP/1.1"

	// Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in 1.0.
	if sm.hostFields > 1 {
		return malformed("more than one Host header")
	}
	if sm.hostFields == 0 && http11 {
		return malformed("HTTP/1.1 request without Host")
	}
	if sm.hostFields == 1 && sm.host != "" && !validAuthority(sm.host, false) {
		return malformed("invalid Host header: " + quoteCap(sm.host))
	}
	r.Host = sm.host
	if r.Method == "CONNECT" {
		r.Host = r.Target
	} else if r.Target[0] != '/' && r.Target != "*" {
		r.Host, _ = absoluteAuthority(r.Target)
	}

	// Framing (RFC 9112 §6.3), refusing every ambiguity outright.
	r.Body.ContentLength = -1
	switch {
	case sm.teFields > 0:
		if !http11 {
			return malformed("Transfer-Encoding in an HTTP/1.0 request")
		}
		if sm.clFields > 0 {
			return malformed("both Transfer-Encoding and Content-Length")
		}
		if !sm.teChunked {
			return &Error{Status: 501, Reason: "transfer coding not implemented: " + quoteCap(canonicalTE(r.Header)), Err: ErrMalformed}
		}
		r.Body.Chunked = true
	case sm.clFields > 0:
		r.Body.ContentLength = sm.cl
	default:
		r.Body.NoBody = true
	}
	sm.applyRewrites(&r.Header)

	// Connection management. HTTP/1.0 peers must ignore Upgrade and Expect
	// (RFC 9110 §7.8, §10.1.1).
	r.Close = sm.close || !http11 && !sm.keepAlive
	r.Upgrade = http11 && sm.connUpg && sm.upgrade
	r.Expect100 = http11 && sm.expect100
	return nil
}

// Cookie returns the value of the first cookie called name across all Cookie
// headers (RFC 6265 §5.4: "a=1; b=2"). Names are case-sensitive; a value in
// double quotes is returned without them.
func (r *Request) Cookie(name string) (string, bool) {
	for i := range r.Header {
		if !equalFold(r.Header[i].Name, "cookie") {
			continue
		}
		v := r.Header[i].Value
		for v != "" {
			var pair string
			if j := strings.IndexByte(v, ';'); j >= 0 {
				pair, v = v[:j], v[j+1:]
			} else {
				pair, v = v, ""
			}
			pair = trimOWS(pair)
			eq := strings.IndexByte(pair, '=')
			if eq < 0 || trimOWS(pair[:eq]) != name {
				continue
			}
			val := trimOWS(pair[eq+1:])
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return val, true
		}
	}
	return "", false
}

// Path returns the target's path without the query, as received (not
// unescaped): "/a/b" for "/a/b?x=1" and for "http://h/a/b?x=1", "/" for
// "http://h", "*" for asterisk-form and "" for authority-form (CONNECT).
func (r *Request) Path() string {
	t := r.Target
	if r.Method == "CONNECT" || t == "" {
		return ""
	}
	if t[0] != '/' && t != "*" {
		// absolute-form: skip "scheme://authority".
		i := strings.Index(t, "://")
		if i < 0 {
			return ""
		}
		t = t[i+3:]
		j := strings.IndexAny(t, "/?")
		if j < 0 || t[j] == '?' {
			return "/"
		}
		t = t[j:]
	}
	if q := strings.IndexByte(t, '?'); q >= 0 {
		return t[:q]
	}
	return t
}

// Query returns the first value of the query parameter name, unescaped
// (application/x-www-form-urlencoded: '+' is a space). Pairs whose escapes
// are invalid are skipped, as net/url does.
func (r *Request) Query(name string) (string, bool) {
	q := strings.IndexByte(r.Target, '?')
	if q < 0 || r.Method == "CONNECT" {
		return "", false
	}
	s := r.Target[q+1:]
	for s != "" {
		var pair string
		if j := strings.IndexByte(s, '&'); j >= 0 {
			pair, s = s[:j], s[j+1:]
		} else {
			pair, s = s, ""
		}
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil || k != name {
			continue
		}
		v, err = url.QueryUnescape(v)
		if err != nil {
			continue
		}
		return v, true
	}
	return "", false
}

// WriteHead writes the request line, the fields and the empty line to w. It
// does not flush. It refuses (with an error wrapping ErrMalformed, writing
// nothing) a head that would not parse back the same: a method that is not a
// token, a target with whitespace or controls, a field name that is not a
// token or a value with CR, LF, NUL or other controls. That is the last line
// of defence against header injection from rewrite rules.
func (r *Request) WriteHead(w *bufio.Writer) error {
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	if !isToken(r.Method) {
		return malformed("refusing to write invalid method " + quoteCap(r.Method))
	}
	if r.Target == "" {
		return malformed("refusing to write an empty request target")
	}
	for i := 0; i < len(r.Target); i++ {
		if c := r.Target[i]; c <= ' ' || c == 0x7f || c == '#' {
			return malformed("refusing to write request target " + quoteCap(r.Target))
		}
	}
	if e := checkVersion(proto); e != nil {
		return e
	}
	if e := checkWritable(r.Header); e != nil {
		return e
	}
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(r.Target)
	w.WriteByte(' ')
	w.WriteString(proto)
	w.WriteString("\r\n")
	return writeFields(w, r.Header)
}

func checkWritable(h Header) *Error {
	for i := range h {
		if !isToken(h[i].Name) {
			return malformed("refusing to write invalid header name " + quoteCap(h[i].Name))
		}
		if !validFieldValue(h[i].Value) {
			return malformed("refusing to write control character in header " + quoteCap(h[i].Name))
		}
	}
	return nil
}

// writeFields writes the fields and the final empty line. Values are written
// as they are; leading or trailing whitespace in a value set by the caller is
// kept on the wire and trimmed by the next parser, which is harmless.
func writeFields(w *bufio.Writer, h Header) error {
	for i := range h {
		w.WriteString(h[i].Name)
		w.WriteString(": ")
		w.WriteString(h[i].Value)
		w.WriteString("\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}
