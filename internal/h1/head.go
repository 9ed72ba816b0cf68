package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Defaults used when a Limits field is zero or negative. 64 KiB and 100
// fields sit between HAProxy (tune.bufsize 16 KiB, tune.http.maxhdr 101) and
// nginx (large_client_header_buffers 4×8 KiB); BIG-IP's http profile default
// is 32 KiB and 64 headers.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxHeaders     = 100
)

// maxLeadingEmptyLines bounds the empty lines skipped before a start line.
// RFC 9112 §2.2 asks servers to ignore "at least one"; old clients send one
// CRLF after a POST body. More than a few is not a client, it is noise.
const maxLeadingEmptyLines = 8

// Limits bounds what a head may cost. The zero value means the defaults.
type Limits struct {
	MaxHeaderBytes int // whole head (request/status line + headers); over => ErrHeaderTooLarge (431 for requests)
	MaxHeaders     int // header field count; over => ErrTooManyHeaders (431)
}

func (l Limits) norm() (maxBytes, maxFields int) {
	maxBytes, maxFields = l.MaxHeaderBytes, l.MaxHeaders
	if maxBytes <= 0 {
		maxBytes = DefaultMaxHeaderBytes
	}
	if maxFields <= 0 {
		maxFields = DefaultMaxHeaders
	}
	return maxBytes, maxFields
}

// readHead consumes one head from br, up to and including its empty line, and
// returns it as a single string in which every line ends in a lone '\n': the
// CR of a CRLF is removed, any other CR is left in place for the line parsers
// to refuse. fields is the number of lines after the start line, so the
// caller can size its Header exactly. Empty lines before the start line are
// skipped and not returned.
//
// io.EOF is returned unwrapped only when the peer closed before sending
// anything but (at most a few) empty lines: that is a clean end of a
// keep-alive connection, not an error.
func readHead(br *bufio.Reader, lim Limits, what string) (head string, fields int, err error) {
	maxBytes, maxFields := lim.norm()
	var stack [2048]byte // most heads fit; the string copy is the one allocation
	buf := stack[:0]
	total := 0     // bytes consumed from br, leading empty lines included
	lineStart := 0 // offset in buf of the line being read
	lines := 0     // complete non-empty lines so far
	empties := 0
	for {
		frag, err := br.ReadSlice('\n')
		total += len(frag)
		if total > maxBytes {
			return "", 0, &Error{Status: 431, Reason: what + " head larger than " + strconv.Itoa(maxBytes) + " bytes", Err: ErrHeaderTooLarge}
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue // the line is longer than br's buffer; keep collecting
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(buf) == 0 {
					return "", 0, io.EOF
				}
				return "", 0, &Error{Status: 400, Reason: "connection closed inside the " + what + " head",
					Err: fmt.Errorf("%w: %w", ErrMalformed, io.ErrUnexpectedEOF)}
			}
			return "", 0, fmt.Errorf("h1: reading %s head: %w", what, err)
		}
		// buf[lineStart:] is one whole line ending in '\n'.
		end := len(buf) - 1
		if end > lineStart && buf[end-1] == '\r' {
			buf[end-1] = '\n'
			buf = buf[:end]
			end--
		}
		if end == lineStart { // empty line
			if lines == 0 {
				empties++
				if empties > maxLeadingEmptyLines {
					return "", 0, malformed("too many empty lines before the " + what + " line")
				}
				buf = buf[:0]
				continue
			}
			return string(buf), lines - 1, nil
		}
		lines++
		if lines-1 > maxFields {
			return "", 0, &Error{Status: 431, Reason: "more than " + strconv.Itoa(maxFields) + " header fields", Err: ErrTooManyHeaders}
		}
		lineStart = len(buf)
	}
}

// cutLine splits s at its first '\n'. readHead guarantees every line ends in
// one, so a missing '\n' only happens on the empty remainder.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// parseFields parses the field lines of a head (after the start line, ending
// with the empty line) into a Header of capacity n.
func parseFields(s string, n int) (Header, *Error) {
	h := make(Header, 0, n)
	for s != "" {
		var line string
		line, s = cutLine(s)
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold (RFC 9112 §5.2) or whitespace before the first field
			// (§2.2): both let two parsers disagree on field boundaries.
			return nil, malformed("obs-fold or leading whitespace in header line")
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil, malformed("header line without a colon: " + quoteCap(line))
		}
		name := line[:colon]
		if !isToken(name) {
			if name != "" && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
				// RFC 9112 §5.1: MUST reject; "Transfer-Encoding : chunked" is
				// a classic smuggling vector.
				return nil, malformed("whitespace between header name and colon: " + quoteCap(name))
			}
			return nil, malformed("invalid header name: " + quoteCap(name))
		}
		value := trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return nil, malformed("control character in value of header " + quoteCap(name))
		}
		h = append(h, Field{Name: name, Value: value})
	}
	return h, nil
}

// semantics is what one pass over the fields learns about framing and
// connection management.
type semantics struct {
	clFields   int   // Content-Length fields
	cl         int64 // the agreed Content-Length value
	clRewrite  bool  // duplicates, a list or leading zeros: rewrite canonically
	teFields   int   // Transfer-Encoding fields
	teChunked  bool  // chunked is the final coding
	teRewrite  bool  // TE value is not already in canonical form
	hostFields int
	host       string
	close      bool
	keepAlive  bool
	connUpg    bool
	upgrade    bool // an Upgrade field is present
	expect100  bool
}

// scan walks the fields once. It refuses what is wrong on its own (a bad
// Content-Length, a bad Transfer-Encoding list); combinations that depend on
// the message kind are judged by the caller.
func (sm *semantics) scan(h Header) *Error {
	sm.cl = -1
	for i := range h {
		name, value := h[i].Name, h[i].Value
		switch len(name) {
		case 4:
			if equalFold(name, "host") {
				sm.hostFields++
				sm.host = value
			}
		case 6:
			if equalFold(name, "expect") {
				forEachListElem(value, func(e string) bool {
					if equalFold(e, "100-continue") {
						sm.expect100 = true
					}
					return true
				})
			}
		case 7:
			if equalFold(name, "upgrade") && value != "" {
				sm.upgrade = true
			}
		case 10:
			if equalFold(name, "connection") {
				forEachListElem(value, func(e string) bool {
					switch {
					case equalFold(e, "close"):
						sm.close = true
					case equalFold(e, "keep-alive"):
						sm.keepAlive = true
					case equalFold(e, "upgrade"):
						sm.connUpg = true
					}
					return true
				})
			}
		case 14:
			if equalFold(name, "content-length") {
				if err := sm.contentLength(value); err != nil {
					return err
				}
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
				if err := sm.transferEncoding(value); err != nil {
					return err
				}
			}
		}
	}
	if sm.clFields > 1 {
		sm.clRewrite = true
	}
	if sm.teFields > 1 {
		sm.teRewrite = true
	}
	return nil
}

// contentLength parses one Content-Length value: 1*DIGIT, or a list of
// identical ones (RFC 9110 §8.6 lets a recipient accept "42, 42"). Anything
// else, including signs, spaces inside, hex, empty list elements and values
// beyond int64, is refused: a proxy and its backend must not be able to
// read different lengths from the same bytes.
func (sm *semantics) contentLength(v string) *Error {
	sm.clFields++
	if v == "" {
		return malformed("empty Content-Length")
	}
	for {
		var elem string
		i := strings.IndexByte(v, ',')
		if i >= 0 {
			elem, v = trimOWS(v[:i]), v[i+1:]
			sm.clRewrite = true
		} else {
			elem, v = trimOWS(v), ""
		}
		n, ok := parseDecimal(elem)
		if !ok {
			return malformed("invalid Content-Length: " + quoteCap(elem))
		}
		if elem[0] == '0' && len(elem) > 1 {
			sm.clRewrite = true
		}
		if sm.cl >= 0 && sm.cl != n {
			return malformed("conflicting Content-Length values")
		}
		sm.cl = n
		if i < 0 {
			return nil
		}
	}
}

// parseDecimal parses 1*DIGIT into a non-negative int64, refusing overflow.
func parseDecimal(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-int64(c-'0'))/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// transferEncoding parses one Transfer-Encoding value. Codings other than
// chunked are passed through (a proxy does not decode them) but must be
// syntactically valid; chunked must appear once and last across all fields.
// It also notes whether the value is already canonical (one field, elements
// joined by ", ", "chunked" in lower case) so that applyRewrites can hand a
// backend one unambiguous "Transfer-Encoding: ..., chunked": a backend that
// compares the value to "chunked" literally must not be given "Chunked" or
// "chunked," and be told nothing else about the body.
func (sm *semantics) transferEncoding(v string) *Error {
	sm.teFields++
	elems := 0
	pos := 0 // where the next element must start in a canonical v
	var bad *Error
	forEachListElem(v, func(e string) bool {
		if sm.teChunked {
			// chunked must be the final coding, once (RFC 9112 §6.1).
			bad = malformed("chunked is not the final transfer coding")
			return false
		}
		if elems > 0 {
			if pos+2 <= len(v) && v[pos:pos+2] == ", " {
				pos += 2
			} else {
				sm.teRewrite = true
			}
		}
		elems++
		if pos+len(e) <= len(v) && v[pos:pos+len(e)] == e {
			pos += len(e)
		} else {
			sm.teRewrite = true
		}
		name, params := e, ""
		if i := strings.IndexByte(e, ';'); i >= 0 {
			name, params = trimOWS(e[:i]), e[i:]
		}
		if !isToken(name) {
			bad = malformed("invalid transfer coding: " + quoteCap(e))
			return false
		}
		if equalFold(name, "chunked") {
			if params != "" {
				bad = malformed("parameters on the chunked transfer coding")
				return false
			}
			if e != "chunked" {
				sm.teRewrite = true
			}
			sm.teChunked = true
			return true
		}
		if params != "" && !validParams(params) {
			bad = malformed("invalid transfer coding parameters: " + quoteCap(e))
			return false
		}
		return true
	})
	if bad != nil {
		return bad
	}
	if elems == 0 {
		return malformed("empty Transfer-Encoding")
	}
	if pos != len(v) {
		sm.teRewrite = true
	}
	return nil
}

// canonicalTE joins the codings of every Transfer-Encoding field of h with
// ", ", writing chunked in lower case. Only called after scan accepted them.
func canonicalTE(h Header) string {
	var b []byte
	for i := range h {
		if !equalFold(h[i].Name, "transfer-encoding") {
			continue
		}
		forEachListElem(h[i].Value, func(e string) bool {
			if len(b) > 0 {
				b = append(b, ", "...)
			}
			if equalFold(e, "chunked") {
				e = "chunked"
			}
			b = append(b, e...)
			return true
		})
	}
	return string(b)
}

// validParams checks *( OWS ";" OWS token "=" ( token / quoted-string ) ).
// Quoted strings cannot contain a comma here because the list was already
// split on commas; such input is refused rather than guessed at.
func validParams(p string) bool {
	for p != "" {
		p = trimOWS(p)
		if p == "" {
			return true
		}
		if p[0] != ';' {
			return false
		}
		p = trimOWS(p[1:])
		eq := strings.IndexByte(p, '=')
		if eq < 0 || !isToken(p[:eq]) {
			return false
		}
		p = p[eq+1:]
		if p != "" && p[0] == '"' {
			n, ok := quotedStringLen(p)
			if !ok {
				return false
			}
			p = p[n:]
			continue
		}
		j := 0
		for j < len(p) && isTchar(p[j]) {
			j++
		}
		if j == 0 {
			return false
		}
		p = p[j:]
	}
	return true
}

// quotedStringLen returns the length of the quoted-string at the start of s
// (RFC 9110 §5.6.4), or false if it is not terminated or holds a CTL.
func quotedStringLen[T string | []byte](s T) (int, bool) {
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			i++
			if i >= len(s) || s[i] < 0x20 && s[i] != '\t' || s[i] == 0x7f {
				return 0, false
			}
		case c < 0x20 && c != '\t' || c == 0x7f:
			return 0, false
		}
	}
	return 0, false
}

// applyRewrites replaces Content-Length and Transfer-Encoding with their
// canonical single-field forms when the received ones were valid but not
// canonical. It allocates only in that uncommon case.
func (sm *semantics) applyRewrites(h *Header) {
	if sm.clFields > 0 && sm.clRewrite {
		h.Set(firstName(*h, "Content-Length"), strconv.FormatInt(sm.cl, 10))
	}
	if sm.teFields > 0 && sm.teRewrite {
		h.Set(firstName(*h, "Transfer-Encoding"), canonicalTE(*h))
	}
}

// firstName returns the received spelling of the first field called name, so
// a rewrite keeps the client's case.
func firstName(h Header, name string) string {
	for i := range h {
		if equalFold(h[i].Name, name) {
			return h[i].Name
		}
	}
	return name
}

// checkVersion accepts exactly HTTP/1.0 and HTTP/1.1 (HTTP-name is case
// sensitive, RFC 9112 §2.3). Other well-formed versions, HTTP/2.0 from a
// prior-knowledge h2 preface included, get 505.
func checkVersion(p string) *Error {
	if p == "HTTP/1.1" || p == "HTTP/1.0" {
		return nil
	}
	if len(p) == 8 && p[:5] == "HTTP/" && isDigit(p[5]) && p[6] == '.' && isDigit(p[7]) {
		return &Error{Status: 505, Reason: "unsupported version " + p, Err: ErrVersion}
	}
	return malformed("invalid HTTP version: " + quoteCap(p))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
