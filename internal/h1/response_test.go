package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func readResp(s, method string) (*Response, *bufio.Reader, error) {
	br := bufio.NewReader(strings.NewReader(s))
	r, err := ReadResponse(br, Limits{}, method)
	return r, br, err
}

func TestReadResponseValid(t *testing.T) {
	t.Parallel()
	chunked := Framing{Chunked: true, ContentLength: -1}
	untilClose := Framing{UntilClose: true, ContentLength: -1}
	tests := []struct {
		name   string
		in     string
		method string
		status int
		reason string
		header Header
		body   Framing
		close  bool
	}{
		{name: "200 with length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: Framing{ContentLength: 5}},
		{name: "reason with spaces", in: "HTTP/1.1 404 Not  Found here\r\nContent-Length: 0\r\n\r\n", method: "GET",
			status: 404, reason: "Not  Found here", body: Framing{ContentLength: 0}},
		{name: "no reason, no space", in: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", method: "GET",
			status: 200, body: Framing{ContentLength: 0}},
		{name: "empty reason", in: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", method: "GET",
			status: 200, body: Framing{ContentLength: 0}},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: chunked},
		{name: "chunked after gzip", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: chunked},
		{name: "TE without chunked reads to close", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: untilClose, close: true},
		{name: "TE wins over CL, CL dropped, no reuse",
			in:     "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n",
			method: "GET", status: 200, reason: "OK", body: chunked, close: true,
			header: Header{{"X", "y"}, {"Transfer-Encoding", "chunked"}}},
		{name: "no framing reads to close", in: "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: untilClose, close: true},
		{name: "HEAD with length has no body", in: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", method: "HEAD",
			status: 200, reason: "OK", body: noBody, header: Header{{"Content-Length", "1234"}}},
		{name: "HEAD chunked has no body", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", method: "HEAD",
			status: 200, reason: "OK", body: noBody},
		{name: "204", in: "HTTP/1.1 204 No Content\r\n\r\n", method: "DELETE", status: 204, reason: "No Content", body: noBody},
		{name: "304 with length", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", method: "GET",
			status: 304, reason: "Not Modified", body: noBody},
		{name: "100 continue", in: "HTTP/1.1 100 Continue\r\n\r\n", method: "PUT", status: 100, reason: "Continue", body: noBody},
		{name: "103 early hints", in: "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", method: "GET",
			status: 103, reason: "Early Hints", body: noBody},
		{name: "101 switching", in: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			method: "GET", status: 101, reason: "Switching Protocols", body: noBody},
		{name: "CONNECT 200 is a tunnel", in: "HTTP/1.1 200 Connection established\r\n\r\n", method: "CONNECT",
			status: 200, reason: "Connection established", body: noBody},
		{name: "CONNECT 407 has a body", in: "HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", method: "CONNECT",
			status: 407, reason: "Auth", body: Framing{ContentLength: 3}},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: Framing{ContentLength: 1}, close: true},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: Framing{ContentLength: 1}},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: Framing{ContentLength: 1}, close: true},
		{name: "duplicate CL collapsed", in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: Framing{ContentLength: 3}, header: Header{{"Content-Length", "3"}}},
		{name: "status 599", in: "HTTP/1.1 599 Custom\r\nContent-Length: 0\r\n\r\n", method: "GET",
			status: 599, reason: "Custom", body: Framing{ContentLength: 0}},
		{name: "leading CRLF tolerated", in: "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", method: "GET",
			status: 200, reason: "OK", body: Framing{ContentLength: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, _, err := readResp(tt.in, tt.method)
			if err != nil {
				t.Fatalf("ReadResponse: %v", err)
			}
			if r.Status != tt.status || r.Reason != tt.reason {
				t.Errorf("status %d %q, want %d %q", r.Status, r.Reason, tt.status, tt.reason)
			}
			if r.Body != tt.body {
				t.Errorf("body %+v, want %+v", r.Body, tt.body)
			}
			if r.Close != tt.close {
				t.Errorf("close %v, want %v", r.Close, tt.close)
			}
			if tt.header != nil && !slices.Equal(r.Header, tt.header) {
				t.Errorf("header %q, want %q", r.Header, tt.header)
			}
		})
	}
}

func TestReadResponseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		status int
		is     error
	}{
		{"no code", "HTTP/1.1\r\n\r\n", 400, ErrMalformed},
		{"short code", "HTTP/1.1 20 OK\r\n\r\n", 400, ErrMalformed},
		{"long code", "HTTP/1.1 2000 OK\r\n\r\n", 400, ErrMalformed},
		{"code below 100", "HTTP/1.1 099 X\r\n\r\n", 400, ErrMalformed},
		{"letters in code", "HTTP/1.1 2x0 OK\r\n\r\n", 400, ErrMalformed},
		{"tab after code", "HTTP/1.1 200\tOK\r\n\r\n", 400, ErrMalformed},
		{"control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 400, ErrMalformed},
		{"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", 505, ErrVersion},
		{"not HTTP", "ICY 200 OK\r\n\r\n", 400, ErrMalformed},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", 400, ErrMalformed},
		{"differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, ErrMalformed},
		{"bad CL", "HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n", 400, ErrMalformed},
		{"TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ErrMalformed},
		{"chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, ErrMalformed},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", 400, ErrMalformed},
		{"truncated", "HTTP/1.1 200 OK\r\nContent-Len", 400, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, _, err := readResp(tt.in, "GET")
			if err == nil {
				t.Fatalf("accepted %q as %+v", tt.in, r)
			}
			if got := StatusOf(err); got != tt.status {
				t.Errorf("StatusOf(%v) = %d, want %d", err, got, tt.status)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
	if _, _, err := readResp("", "GET"); err != io.EOF {
		t.Errorf("empty input: %v, want io.EOF", err)
	}
}

// TestResponseInterim reads a 100 and a 103 then the final response from one
// stream, as the proxy loop does.
func TestResponseInterim(t *testing.T) {
	t.Parallel()
	in := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
	br := bufio.NewReader(strings.NewReader(in))
	var codes []int
	for {
		r, err := ReadResponse(br, Limits{}, "PUT")
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, r.Status)
		if r.Status >= 200 {
			break
		}
	}
	if !slices.Equal(codes, []int{100, 103, 201}) {
		t.Fatalf("codes %v", codes)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "ok" {
		t.Fatalf("left %q", rest)
	}
}

func TestResponseWriteHeadRoundTrip(t *testing.T) {
	t.Parallel()
	ins := []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\ncontent-length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\n\r\n",
		"HTTP/1.1 204 \r\nX: y\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: /x\r\nTransfer-Encoding: chunked\r\n\r\n",
	}
	for _, in := range ins {
		r1, _, err := readResp(in, "GET")
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if err := r1.WriteHead(bw); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if b.String() != in {
			t.Errorf("WriteHead changed the head:\n got %q\nwant %q", b.String(), in)
		}
		r2, _, err := readResp(b.String(), "GET")
		if err != nil {
			t.Fatal(err)
		}
		if r1.Status != r2.Status || r1.Reason != r2.Reason || !slices.Equal(r1.Header, r2.Header) || r1.Body != r2.Body || r1.Close != r2.Close {
			t.Errorf("round trip differs:\n%+v\n%+v", r1, r2)
		}
	}
	// A response without a reason gets "SP" per the status-line grammar.
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if err := (&Response{Status: 200}).WriteHead(bw); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	if b.String() != "HTTP/1.1 200 \r\n\r\n" {
		t.Fatalf("got %q", b.String())
	}
	for _, bad := range []*Response{
		{Status: 99},
		{Status: 1000},
		{Status: 200, Reason: "OK\r\nX: y"},
		{Status: 200, Header: Header{{"X", "a\nb"}}},
		{Status: 200, Proto: "HTTP/3"},
	} {
		b.Reset()
		bw.Reset(&b)
		if err := bad.WriteHead(bw); err == nil {
			t.Errorf("WriteHead(%+v) succeeded", bad)
		}
		bw.Flush()
		if b.Len() != 0 {
			t.Errorf("WriteHead(%+v) wrote %q", bad, b.String())
		}
	}
}
