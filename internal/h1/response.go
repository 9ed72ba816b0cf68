package h1

import (
	"bufio"
	"strings"
)

// Response is a parsed response head. All strings are slices of one string
// holding the head.
type Response struct {
	Proto  string
	Status int
	Reason string
	Header Header
	Body   Framing
	// Close: the server connection cannot be reused after this response
	// (Connection: close, HTTP/1.0 without keep-alive, a body delimited by
	// close, or framing that had to be repaired).
	Close bool
}

// ReadResponse reads one response head; reqMethod decides HEAD semantics. 1xx responses (other than 101) are returned too; the caller forwards them and reads again.
//
// 101 is returned like any 1xx (NoBody); after it the connection is a tunnel
// and the caller stops parsing. A 2xx answer to CONNECT is NoBody for the
// same reason. Parse errors carry the status a server would send, but a
// proxy answers its own client 502 for a response it cannot parse.
func ReadResponse(br *bufio.Reader, lim Limits, reqMethod string) (*Response, error) {
	head, nfields, err := readHead(br, lim, "response")
	if err != nil {
		return nil, err
	}
	line, rest := cutLine(head)
	resp := &Response{}
	if e := resp.parseStatusLine(line); e != nil {
		return nil, e
	}
	h, e := parseFields(rest, nfields)
	if e != nil {
		return nil, e
	}
	resp.Header = h
	if e := resp.finish(reqMethod); e != nil {
		return nil, e
	}
	return resp, nil
}

// parseStatusLine parses "HTTP-version SP 3DIGIT SP [reason]". A missing
// "SP reason" after the code is tolerated (RFC 9112 §4 makes the reason
// optional and some servers drop the space too); the code must be 100-999.
func (r *Response) parseStatusLine(line string) *Error {
	sp := strings.IndexByte(line, ' ')
	if sp < 0 {
		return malformed("status line has no status code: " + quoteCap(line))
	}
	r.Proto = line[:sp]
	if e := checkVersion(r.Proto); e != nil {
		return e
	}
	rest := line[sp+1:]
	if len(rest) < 3 || !isDigit(rest[0]) || !isDigit(rest[1]) || !isDigit(rest[2]) || rest[0] == '0' {
		return malformed("invalid status code in " + quoteCap(line))
	}
	r.Status = int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
	if len(rest) > 3 {
		if rest[3] != ' ' {
			return malformed("invalid status code in " + quoteCap(line))
		}
		r.Reason = rest[4:]
		if !validFieldValue(r.Reason) {
			return malformed("control character in reason phrase")
		}
	}
	return nil
}

// finish decides framing (RFC 9112 §6.3) and connection reuse.
func (r *Response) finish(reqMethod string) *Error {
	var sm semantics
	if e := sm.scan(r.Header); e != nil {
		return e
	}
	http11 := r.Proto == "HTTP/1.1"
	r.Body.ContentLength = -1
	noBody := reqMethod == "HEAD" || r.Status < 200 || r.Status == 204 || r.Status == 304 ||
		reqMethod == "CONNECT" && r.Status/100 == 2
	switch {
	case noBody:
		// Content-Length here describes the representation (HEAD, 304),
		// not bytes on the wire; it is forwarded untouched.
		r.Body.NoBody = true
	case sm.teFields > 0:
		if !http11 {
			// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has
			// faulty framing whatever else it says.
			return malformed("Transfer-Encoding in an HTTP/1.0 response")
		}
		if sm.clFields > 0 {
			// RFC 9112 §6.3 rule 3: Transfer-Encoding overrides
			// Content-Length. Drop the latter so nobody downstream reads it,
			// and do not reuse a connection that sent such a thing.
			r.Header.Del("Content-Length")
			sm.clFields = 0
			r.Close = true
		}
		if sm.teChunked {
			r.Body.Chunked = true
		} else {
			// Rule 4: chunked not final in a response means read to close.
			r.Body.UntilClose = true
			r.Close = true
		}
	case sm.clFields > 0:
		r.Body.ContentLength = sm.cl
	default:
		r.Body.UntilClose = true
		r.Close = true
	}
	sm.applyRewrites(&r.Header)
	if sm.close || !http11 && !sm.keepAlive {
		r.Close = true
	}
	return nil
}

// WriteHead writes the status line, the fields and the empty line to w. It
// does not flush. Like Request.WriteHead it refuses a head that would not
// parse back the same (bad status, controls in the reason or fields).
func (r *Response) WriteHead(w *bufio.Writer) error {
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	if e := checkVersion(proto); e != nil {
		return e
	}
	if r.Status < 100 || r.Status > 999 {
		return malformed("refusing to write status code outside 100-999")
	}
	if !validFieldValue(r.Reason) {
		return malformed("refusing to write control character in reason phrase")
	}
	if e := checkWritable(r.Header); e != nil {
		return e
	}
	w.WriteString(proto)
	w.WriteByte(' ')
	w.WriteByte(byte('0' + r.Status/100))
	w.WriteByte(byte('0' + r.Status/10%10))
	w.WriteByte(byte('0' + r.Status%10))
	w.WriteByte(' ')
	w.WriteString(r.Reason)
	w.WriteString("\r\n")
	return writeFields(w, r.Header)
}
