package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func readReq(s string, lim Limits) (*Request, *bufio.Reader, error) {
	br := bufio.NewReader(strings.NewReader(s))
	r, err := ReadRequest(br, lim)
	return r, br, err
}

var noBody = Framing{NoBody: true, ContentLength: -1}

func TestReadRequestValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		method string
		target string
		proto  string
		header Header // nil: not checked
		body   Framing
		close  bool
		exp100 bool
		upg    bool
		host   string
		rest   string // bytes left in the reader after the head
	}{
		{
			name: "simple GET", in: "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
			method: "GET", target: "/index.html", proto: "HTTP/1.1",
			header: Header{{"Host", "example.com"}}, body: noBody, host: "example.com",
		},
		{
			name:   "case and order kept, OWS trimmed, empty value",
			in:     "GET / HTTP/1.1\r\nhOsT:\t example.com \t\r\nX-B: 2\r\nx-a:1\r\nX-Empty:\r\nX-B: 3\r\n\r\n",
			header: Header{{"hOsT", "example.com"}, {"X-B", "2"}, {"x-a", "1"}, {"X-Empty", ""}, {"X-B", "3"}},
			method: "GET", target: "/", proto: "HTTP/1.1", body: noBody, host: "example.com",
		},
		{
			name: "bare LF line ends", in: "GET / HTTP/1.1\nHost: h\n\n",
			method: "GET", target: "/", proto: "HTTP/1.1", header: Header{{"Host", "h"}}, body: noBody, host: "h",
		},
		{
			name: "leading empty lines skipped", in: "\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
			method: "GET", target: "/", proto: "HTTP/1.1", body: noBody, host: "h",
		},
		{
			name: "content-length body, reader at body", in: "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET",
			method: "POST", target: "/p", proto: "HTTP/1.1", body: Framing{ContentLength: 5}, host: "h", rest: "helloGET",
		},
		{
			name: "content-length zero", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.1", body: Framing{ContentLength: 0}, host: "h",
		},
		{
			name:   "identical content-lengths collapsed",
			in:     "POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 7\r\nX: y\r\nContent-Length: 7, 007\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.1", body: Framing{ContentLength: 7}, host: "h",
			header: Header{{"Host", "h"}, {"content-length", "7"}, {"X", "y"}},
		},
		{
			name: "leading zeros canonicalised", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0042\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.1", body: Framing{ContentLength: 42}, host: "h",
			header: Header{{"Host", "h"}, {"Content-Length", "42"}},
		},
		{
			name: "chunked", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.1", body: Framing{Chunked: true, ContentLength: -1}, host: "h",
			header: Header{{"Host", "h"}, {"Transfer-Encoding", "chunked"}}, rest: "0\r\n\r\n",
		},
		{
			name: "chunked canonicalised", in: "POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: gzip,CHUNKED\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.1", body: Framing{Chunked: true, ContentLength: -1}, host: "h",
			header: Header{{"Host", "h"}, {"transfer-encoding", "gzip, chunked"}},
		},
		{
			name: "TE parameters on other codings kept", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: foo;a=1;b=\"x y\", chunked\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.1", body: Framing{Chunked: true, ContentLength: -1}, host: "h",
			header: Header{{"Host", "h"}, {"Transfer-Encoding", "foo;a=1;b=\"x y\", chunked"}},
		},
		{
			name:   "TE split across fields canonicalised",
			in:     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nX: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.1", body: Framing{Chunked: true, ContentLength: -1}, host: "h",
			header: Header{{"Host", "h"}, {"Transfer-Encoding", "gzip, chunked"}, {"X", "1"}},
		},
		{
			name: "connection close", in: "GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
			method: "GET", target: "/", proto: "HTTP/1.1", body: noBody, host: "h", close: true,
		},
		{
			name: "HTTP/1.0 closes by default, no Host needed", in: "GET / HTTP/1.0\r\n\r\n",
			method: "GET", target: "/", proto: "HTTP/1.0", body: noBody, close: true,
		},
		{
			name: "HTTP/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n",
			method: "GET", target: "/", proto: "HTTP/1.0", body: noBody, host: "h",
		},
		{
			name:   "HTTP/1.0 ignores Upgrade and Expect",
			in:     "POST / HTTP/1.0\r\nConnection: upgrade, keep-alive\r\nUpgrade: websocket\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
			method: "POST", target: "/", proto: "HTTP/1.0", body: Framing{ContentLength: 1},
		},
		{
			name: "expect 100-continue", in: "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n",
			method: "PUT", target: "/f", proto: "HTTP/1.1", body: Framing{ContentLength: 10}, host: "h", exp100: true,
		},
		{
			name:   "websocket upgrade",
			in:     "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n",
			method: "GET", target: "/ws", proto: "HTTP/1.1", body: noBody, host: "h", upg: true,
		},
		{
			name: "Upgrade header without connection token is not an upgrade", in: "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
			method: "GET", target: "/", proto: "HTTP/1.1", body: noBody, host: "h",
		},
		{
			name: "absolute-form takes host from target", in: "GET http://Example.com:8080/a?b=c HTTP/1.1\r\nHost: other\r\n\r\n",
			method: "GET", target: "http://Example.com:8080/a?b=c", proto: "HTTP/1.1", body: noBody, host: "Example.com:8080",
		},
		{
			name: "CONNECT authority-form", in: "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n",
			method: "CONNECT", target: "[2001:db8::1]:443", proto: "HTTP/1.1", body: noBody, host: "[2001:db8::1]:443",
		},
		{
			name: "OPTIONS asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			method: "OPTIONS", target: "*", proto: "HTTP/1.1", body: noBody, host: "h",
		},
		{
			name: "empty Host allowed", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			method: "GET", target: "/", proto: "HTTP/1.1", body: noBody, host: "",
		},
		{
			name: "obs-text in value and raw UTF-8 in target", in: "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\tok\r\n\r\n",
			method: "GET", target: "/caf\xc3\xa9", proto: "HTTP/1.1", body: noBody, host: "h",
			header: Header{{"Host", "h"}, {"X", "caf\xc3\xa9\tok"}},
		},
		{
			name: "extension method", in: "PROPFIND /d HTTP/1.1\r\nHost: h\r\n\r\n",
			method: "PROPFIND", target: "/d", proto: "HTTP/1.1", body: noBody, host: "h",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, br, err := readReq(tt.in, Limits{})
			if err != nil {
				t.Fatalf("ReadRequest: %v", err)
			}
			if r.Method != tt.method || r.Target != tt.target || r.Proto != tt.proto {
				t.Errorf("line = %q %q %q, want %q %q %q", r.Method, r.Target, r.Proto, tt.method, tt.target, tt.proto)
			}
			if tt.header != nil && !slices.Equal(r.Header, tt.header) {
				t.Errorf("header = %q, want %q", r.Header, tt.header)
			}
			if r.Body != tt.body {
				t.Errorf("body = %+v, want %+v", r.Body, tt.body)
			}
			if r.Close != tt.close || r.Expect100 != tt.exp100 || r.Upgrade != tt.upg {
				t.Errorf("close/expect100/upgrade = %v/%v/%v, want %v/%v/%v", r.Close, r.Expect100, r.Upgrade, tt.close, tt.exp100, tt.upg)
			}
			if r.Host != tt.host {
				t.Errorf("host = %q, want %q", r.Host, tt.host)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("left in reader %q, want %q", rest, tt.rest)
			}
		})
	}
}

func TestReadRequestRejects(t *testing.T) {
	t.Parallel()
	const ok = "GET / HTTP/1.1\r\nHost: h\r\n"
	tests := []struct {
		name   string
		in     string
		status int
		is     error
	}{
		// Request line.
		{"no spaces", "GET\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"HTTP/0.9", "GET /\r\n\r\n", 400, ErrMalformed},
		{"double space after method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"double space before version", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"method not a token", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"garbage version", "GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505, ErrVersion},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, ErrVersion},
		{"h2 prior-knowledge preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, ErrVersion},
		{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"DEL in target", "GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"asterisk for GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"authority-form for GET", "GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"CONNECT without port", "CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"CONNECT origin-form", "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"absolute-form with userinfo", "GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"absolute-form empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"bare CR in request line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrMalformed},
		{"too many leading empty lines", strings.Repeat("\r\n", 9) + ok + "\r\n", 400, ErrMalformed},

		// Field lines.
		{"obs-fold", ok + "X: a\r\n b\r\n\r\n", 400, ErrMalformed},
		{"obs-fold tab", ok + "X: a\r\n\tb\r\n\r\n", 400, ErrMalformed},
		{"whitespace before first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, ErrMalformed},
		{"space before colon", ok + "Transfer-Encoding : chunked\r\n\r\n", 400, ErrMalformed},
		{"tab before colon", ok + "Content-Length\t: 1\r\n\r\n", 400, ErrMalformed},
		{"no colon", ok + "Nonsense\r\n\r\n", 400, ErrMalformed},
		{"empty name", ok + ": v\r\n\r\n", 400, ErrMalformed},
		{"name with slash", ok + "X/Y: v\r\n\r\n", 400, ErrMalformed},
		{"NUL in value", ok + "X: a\x00b\r\n\r\n", 400, ErrMalformed},
		{"bare CR in value", ok + "X: a\rb\r\n\r\n", 400, ErrMalformed},
		{"bare CR as line end", ok + "X: a\r\r\n\r\n", 400, ErrMalformed},
		{"bare CR in name", ok + "X\r: a\r\n\r\n", 400, ErrMalformed},
		{"vertical tab in value", ok + "X: a\x0bb\r\n\r\n", 400, ErrMalformed},
		{"DEL in value", ok + "X: a\x7f\r\n\r\n", 400, ErrMalformed},
		{"TE with control char", ok + "Transfer-Encoding: \x0bchunked\r\n\r\n", 400, ErrMalformed},

		// Host.
		{"1.1 without Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, ErrMalformed},
		{"two Host fields", ok + "host: h2\r\n\r\n", 400, ErrMalformed},
		{"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400, ErrMalformed},
		{"Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, ErrMalformed},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, ErrMalformed},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, ErrMalformed},
		{"Host bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400, ErrMalformed},
		{"two Host in 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400, ErrMalformed},

		// Framing: the smuggling vectors.
		{"TE and CL", ok + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ErrMalformed},
		{"CL and TE", ok + "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400, ErrMalformed},
		{"differing CL", ok + "Content-Length: 4\r\nContent-Length: 5\r\n\r\n", 400, ErrMalformed},
		{"differing CL list", ok + "Content-Length: 4, 5\r\n\r\n", 400, ErrMalformed},
		{"CL empty list element", ok + "Content-Length: 4,,4\r\n\r\n", 400, ErrMalformed},
		{"CL empty", ok + "Content-Length:\r\n\r\n", 400, ErrMalformed},
		{"CL sign", ok + "Content-Length: +4\r\n\r\n", 400, ErrMalformed},
		{"CL negative", ok + "Content-Length: -1\r\n\r\n", 400, ErrMalformed},
		{"CL hex", ok + "Content-Length: 0x10\r\n\r\n", 400, ErrMalformed},
		{"CL inner space", ok + "Content-Length: 1 0\r\n\r\n", 400, ErrMalformed},
		{"CL overflow", ok + "Content-Length: 9223372036854775808\r\n\r\n", 400, ErrMalformed},
		{"CL huge", ok + "Content-Length: 99999999999999999999999\r\n\r\n", 400, ErrMalformed},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ErrMalformed},
		{"TE unknown", ok + "Transfer-Encoding: gzip\r\n\r\n", 501, ErrMalformed},
		{"TE xchunked", ok + "Transfer-Encoding: xchunked\r\n\r\n", 501, ErrMalformed},
		{"TE identity", ok + "Transfer-Encoding: identity\r\n\r\n", 501, ErrMalformed},
		{"TE chunked not last", ok + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400, ErrMalformed},
		{"TE chunked twice", ok + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400, ErrMalformed},
		{"TE chunked in two fields", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ErrMalformed},
		{"TE chunked then identity field", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", 400, ErrMalformed},
		{"TE empty", ok + "Transfer-Encoding:\r\n\r\n", 400, ErrMalformed},
		{"TE only commas", ok + "Transfer-Encoding: , ,\r\n\r\n", 400, ErrMalformed},
		{"TE quoted", ok + "Transfer-Encoding: \"chunked\"\r\n\r\n", 400, ErrMalformed},
		{"TE chunked with parameter", ok + "Transfer-Encoding: chunked;q=1\r\n\r\n", 400, ErrMalformed},
		{"TE bad parameter", ok + "Transfer-Encoding: gzip;=x, chunked\r\n\r\n", 400, ErrMalformed},

		// Truncation.
		{"EOF in request line", "GET / HT", 400, io.ErrUnexpectedEOF},
		{"EOF in fields", ok + "X: y\r\n", 400, io.ErrUnexpectedEOF},
		{"EOF before final CRLF", ok, 400, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, _, err := readReq(tt.in, Limits{})
			if err == nil {
				t.Fatalf("accepted %q as %+v", tt.in, r)
			}
			if got := StatusOf(err); got != tt.status {
				t.Errorf("StatusOf(%v) = %d, want %d", err, got, tt.status)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason == "" {
				t.Errorf("error %v is not an *Error with a reason", err)
			}
		})
	}
}

func TestReadRequestLimits(t *testing.T) {
	t.Parallel()
	base := "GET / HTTP/1.1\r\nHost: h\r\n"
	head := base + "X-A: 1\r\nX-B: 2\r\n\r\n"

	// Exactly at the byte limit is fine, one byte less is 431.
	if _, _, err := readReq(head, Limits{MaxHeaderBytes: len(head)}); err != nil {
		t.Fatalf("head of exactly MaxHeaderBytes refused: %v", err)
	}
	_, _, err := readReq(head, Limits{MaxHeaderBytes: len(head) - 1})
	if !errors.Is(err, ErrHeaderTooLarge) || StatusOf(err) != 431 {
		t.Fatalf("over MaxHeaderBytes: %v (status %d)", err, StatusOf(err))
	}
	// Leading empty lines count towards the byte limit.
	if _, _, err := readReq("\r\n"+head, Limits{MaxHeaderBytes: len(head)}); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("leading CRLF not counted: %v", err)
	}

	// Field count: 3 fields allowed with MaxHeaders 3, not with 2.
	if _, _, err := readReq(head, Limits{MaxHeaders: 3}); err != nil {
		t.Fatalf("3 fields with MaxHeaders 3: %v", err)
	}
	_, _, err = readReq(head, Limits{MaxHeaders: 2})
	if !errors.Is(err, ErrTooManyHeaders) || StatusOf(err) != 431 {
		t.Fatalf("over MaxHeaders: %v (status %d)", err, StatusOf(err))
	}

	// A single line far longer than the bufio buffer, under the limit, is
	// read whole; over the default limit it is refused without reading
	// everything.
	long := base + "X-Long: " + strings.Repeat("a", 10000) + "\r\n\r\n"
	br := bufio.NewReaderSize(strings.NewReader(long), 16)
	r, err := ReadRequest(br, Limits{})
	if err != nil {
		t.Fatalf("long line with tiny buffer: %v", err)
	}
	if v, _ := r.Header.Get("x-long"); len(v) != 10000 {
		t.Fatalf("long value has %d bytes", len(v))
	}
	huge := base + "X-Huge: " + strings.Repeat("a", DefaultMaxHeaderBytes) + "\r\n\r\n"
	if _, _, err := readReq(huge, Limits{}); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("huge head with default limits: %v", err)
	}
	many := base + strings.Repeat("X: y\r\n", DefaultMaxHeaders) + "\r\n"
	if _, _, err := readReq(many, Limits{}); !errors.Is(err, ErrTooManyHeaders) {
		t.Fatalf("%d fields with default limits: %v", DefaultMaxHeaders+1, err)
	}
}

func TestReadRequestEOF(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "\r\n", "\r\n\n"} {
		if _, _, err := readReq(in, Limits{}); err != io.EOF {
			t.Errorf("ReadRequest(%q) = %v, want io.EOF itself", in, err)
		}
	}
	// An I/O error is passed through, not dressed up as a parse error.
	boom := errors.New("boom")
	br := bufio.NewReader(io.MultiReader(strings.NewReader("GET / HTTP/1.1\r\n"), iotest.ErrReader(boom)))
	_, err := ReadRequest(br, Limits{})
	if !errors.Is(err, boom) || StatusOf(err) != 0 || errors.Is(err, ErrMalformed) {
		t.Fatalf("I/O error: %v (status %d)", err, StatusOf(err))
	}
}

// TestReadRequestByteByByte feeds a head one byte per Read so every line is
// assembled from fragments.
func TestReadRequestByteByByte(t *testing.T) {
	t.Parallel()
	in := "\r\nPOST /x?y=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 16)
	r, err := ReadRequest(br, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Target != "/x?y=1" || r.Body.ContentLength != 3 {
		t.Fatalf("got %+v", r)
	}
}

func TestPipelinedRequests(t *testing.T) {
	t.Parallel()
	in := "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ndef\r\n0\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	var targets []string
	for {
		r, err := ReadRequest(br, Limits{})
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, r.Target)
		if _, err := CopyBody(bw, br, r.Body); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	if !slices.Equal(targets, []string{"/a", "/b", "/c"}) {
		t.Fatalf("targets %q", targets)
	}
	if out.String() != "abc3\r\ndef\r\n0\r\n\r\n" {
		t.Fatalf("bodies %q", out.String())
	}
}

func TestRequestWriteHeadRoundTrip(t *testing.T) {
	t.Parallel()
	ins := []string{
		"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nuser-agent: x\r\nAccept: */*\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
		"POST /upload HTTP/1.0\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n",
		"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
		"GET http://h/x HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n",
	}
	for _, in := range ins {
		r1, _, err := readReq(in, Limits{})
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if err := r1.WriteHead(bw); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if b.String() != strings.Replace(in, "X-Empty:", "X-Empty: ", 1) {
			t.Errorf("WriteHead changed the head:\n got %q\nwant %q", b.String(), in)
		}
		r2, _, err := readReq(b.String(), Limits{})
		if err != nil {
			t.Fatalf("re-read %q: %v", b.String(), err)
		}
		if r1.Method != r2.Method || r1.Target != r2.Target || r1.Proto != r2.Proto ||
			!slices.Equal(r1.Header, r2.Header) || r1.Body != r2.Body || r1.Close != r2.Close ||
			r1.Host != r2.Host || r1.Expect100 != r2.Expect100 || r1.Upgrade != r2.Upgrade {
			t.Errorf("round trip differs:\n%+v\n%+v", r1, r2)
		}
	}
}

func TestRequestWriteHeadRefusesInjection(t *testing.T) {
	t.Parallel()
	good := func() *Request {
		return &Request{Method: "GET", Target: "/", Proto: "HTTP/1.1", Header: Header{{"Host", "h"}}}
	}
	tests := []struct {
		name string
		mod  func(r *Request)
	}{
		{"CRLF in value", func(r *Request) { r.Header.Set("X", "a\r\nInjected: 1") }},
		{"LF in value", func(r *Request) { r.Header.Add("X", "a\nb") }},
		{"NUL in value", func(r *Request) { r.Header.Add("X", "a\x00") }},
		{"space in name", func(r *Request) { r.Header.Add("X Y", "a") }},
		{"empty name", func(r *Request) { r.Header.Add("", "a") }},
		{"space in target", func(r *Request) { r.Target = "/a b" }},
		{"CRLF in target", func(r *Request) { r.Target = "/\r\nX: y" }},
		{"empty target", func(r *Request) { r.Target = "" }},
		{"bad method", func(r *Request) { r.Method = "GET /" }},
		{"bad proto", func(r *Request) { r.Proto = "HTTP/1.1\r\n" }},
	}
	for _, tt := range tests {
		r := good()
		tt.mod(r)
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		err := r.WriteHead(bw)
		bw.Flush()
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
			t.Errorf("%s: WriteHead err = %v", tt.name, err)
		}
		if b.Len() != 0 {
			t.Errorf("%s: wrote %q despite the error", tt.name, b.String())
		}
	}
	// Empty Proto defaults to HTTP/1.1.
	r := good()
	r.Proto = ""
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if err := r.WriteHead(bw); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	if b.String() != "GET / HTTP/1.1\r\nHost: h\r\n\r\n" {
		t.Fatalf("got %q", b.String())
	}
}

func TestRequestHelpers(t *testing.T) {
	t.Parallel()
	r := &Request{
		Method: "GET",
		Target: "/shop/cart?id=42&q=a+b%21&empty=&flag&bad=%zz&id=43&%6Bey=v",
		Header: Header{
			{"Cookie", "a=1; session=\"xyz\"; b = 2 "},
			{"X", "y"},
			{"cookie", "c=3;d=4; a=dup"},
		},
	}
	cookies := []struct {
		name, want string
		ok         bool
	}{
		{"a", "1", true}, {"session", "xyz", true}, {"b", "2", true},
		{"c", "3", true}, {"d", "4", true}, {"A", "", false}, {"missing", "", false},
	}
	for _, c := range cookies {
		if got, ok := r.Cookie(c.name); got != c.want || ok != c.ok {
			t.Errorf("Cookie(%q) = %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	queries := []struct {
		name, want string
		ok         bool
	}{
		{"id", "42", true}, {"q", "a b!", true}, {"empty", "", true}, {"flag", "", true},
		{"key", "v", true}, {"bad", "", false}, {"nope", "", false},
	}
	for _, q := range queries {
		if got, ok := r.Query(q.name); got != q.want || ok != q.ok {
			t.Errorf("Query(%q) = %q, %v; want %q, %v", q.name, got, ok, q.want, q.ok)
		}
	}
	paths := []struct{ method, target, want string }{
		{"GET", "/a/b?x=1", "/a/b"},
		{"GET", "/a%20b", "/a%20b"},
		{"GET", "/", "/"},
		{"GET", "http://h/a/b?x", "/a/b"},
		{"GET", "http://h", "/"},
		{"GET", "http://h?x=1", "/"},
		{"OPTIONS", "*", "*"},
		{"CONNECT", "h:443", ""},
	}
	for _, p := range paths {
		r := &Request{Method: p.method, Target: p.target}
		if got := r.Path(); got != p.want {
			t.Errorf("Path(%s %s) = %q, want %q", p.method, p.target, got, p.want)
		}
	}
	if _, ok := (&Request{Method: "GET", Target: "/x"}).Query("a"); ok {
		t.Error("Query without a query string reported ok")
	}
}
