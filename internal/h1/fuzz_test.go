package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ and include the smuggling
// classics (CL.TE, TE.CL, TE.TE obfuscations, obs-fold, bare CR/LF, funky
// chunks, size overflow).

// checkFraming asserts that a Framing describes exactly one kind of body.
func checkFraming(t *testing.T, f Framing) {
	t.Helper()
	kinds := 0
	for _, b := range []bool{f.Chunked, f.UntilClose, f.NoBody, f.ContentLength >= 0} {
		if b {
			kinds++
		}
	}
	if kinds != 1 {
		t.Fatalf("framing %+v describes %d kinds of body", f, kinds)
	}
}

// checkClean asserts that nothing accepted can smuggle a line break.
func checkClean(t *testing.T, h Header) {
	t.Helper()
	for _, f := range h {
		if !isToken(f.Name) || !validFieldValue(f.Value) || f.Value != trimOWS(f.Value) {
			t.Fatalf("accepted field %q: %q", f.Name, f.Value)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		r1, err := ReadRequest(br, Limits{MaxHeaderBytes: 4096, MaxHeaders: 32})
		if err != nil {
			if err != io.EOF && StatusOf(err) == 0 {
				t.Fatalf("parse error without a status: %v", err)
			}
			return
		}
		checkFraming(t, r1.Body)
		checkClean(t, r1.Header)
		if r1.Body.UntilClose {
			t.Fatal("request body delimited by close")
		}
		if strings.ContainsAny(r1.Method+r1.Target+r1.Proto, " \t\r\n\x00") {
			t.Fatalf("request line parts %q %q %q", r1.Method, r1.Target, r1.Proto)
		}

		// Re-serialised, it must parse to the same message.
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if err := r1.WriteHead(bw); err != nil {
			t.Fatalf("WriteHead of an accepted request: %v", err)
		}
		bw.Flush()
		r2, err := ReadRequest(bufio.NewReader(bytes.NewReader(b.Bytes())), Limits{MaxHeaderBytes: 1 << 20})
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.Bytes(), err)
		}
		if r1.Method != r2.Method || r1.Target != r2.Target || r1.Proto != r2.Proto || r1.Host != r2.Host ||
			!slices.Equal(r1.Header, r2.Header) || r1.Body != r2.Body ||
			r1.Close != r2.Close || r1.Expect100 != r2.Expect100 || r1.Upgrade != r2.Upgrade {
			t.Fatalf("round trip differs:\n%+v\n%+v", r1, r2)
		}

		// Differential: where net/http also accepts the head, both must
		// agree on where the body ends. A disagreement here is exactly
		// what request smuggling exploits.
		hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		switch {
		case r1.Body.Chunked:
			if !slices.Equal(hr.TransferEncoding, []string{"chunked"}) {
				t.Fatalf("we see chunked, net/http sees TE %q CL %d", hr.TransferEncoding, hr.ContentLength)
			}
		case r1.Body.NoBody:
			if hr.ContentLength != 0 || len(hr.TransferEncoding) != 0 {
				t.Fatalf("we see no body, net/http sees TE %q CL %d", hr.TransferEncoding, hr.ContentLength)
			}
		default:
			if hr.ContentLength != r1.Body.ContentLength || len(hr.TransferEncoding) != 0 {
				t.Fatalf("we see CL %d, net/http sees TE %q CL %d", r1.Body.ContentLength, hr.TransferEncoding, hr.ContentLength)
			}
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		r1, err := ReadResponse(br, Limits{MaxHeaderBytes: 4096, MaxHeaders: 32}, method)
		if err != nil {
			if err != io.EOF && StatusOf(err) == 0 {
				t.Fatalf("parse error without a status: %v", err)
			}
			return
		}
		checkFraming(t, r1.Body)
		checkClean(t, r1.Header)
		if r1.Body.UntilClose && !r1.Close {
			t.Fatal("body delimited by close on a reusable connection")
		}
		if head && !r1.Body.NoBody {
			t.Fatal("HEAD response with a body")
		}
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if err := r1.WriteHead(bw); err != nil {
			t.Fatalf("WriteHead of an accepted response: %v", err)
		}
		bw.Flush()
		r2, err := ReadResponse(bufio.NewReader(bytes.NewReader(b.Bytes())), Limits{MaxHeaderBytes: 1 << 20}, method)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.Bytes(), err)
		}
		// Close may only be stickier the first time (repaired framing).
		if r1.Proto != r2.Proto || r1.Status != r2.Status || r1.Reason != r2.Reason ||
			!slices.Equal(r1.Header, r2.Header) || r1.Body != r2.Body || (r2.Close && !r1.Close) {
			t.Fatalf("round trip differs:\n%+v\n%+v", r1, r2)
		}
		// The rest of the stream must still be readable as a body.
		var sink bytes.Buffer
		CopyBody(bufio.NewWriter(&sink), br, r1.Body)
	})
}

func FuzzChunked(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		out1, n1, err := reframe(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// Our output is canonical: re-framing it is the identity.
		out2, n2, err := reframe(out1)
		if err != nil || n2 != n1 || !bytes.Equal(out1, out2) {
			t.Fatalf("re-frame of %q: %q, %d, %v (first pass %d bytes)", out1, out2, n2, err, n1)
		}
		// Differential: the payload we forwarded is what Go's independent
		// decoder reads from our output, and from the input when it
		// accepts it.
		p1, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(out1)))
		if err != nil || int64(len(p1)) != n1 {
			t.Fatalf("net/http cannot read our output %q: %d bytes, %v", out1, len(p1), err)
		}
		p0, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data)))
		if err == nil && !bytes.Equal(p0, p1) {
			t.Fatalf("payload differs from net/http's reading of %q:\n ours %q\n theirs %q", data, p1, p0)
		}
	})
}

func reframe(data []byte) ([]byte, int64, error) {
	br := bufio.NewReaderSize(bytes.NewReader(data), 16)
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	n, err := CopyBody(bw, br, Framing{Chunked: true, ContentLength: -1})
	bw.Flush()
	return b.Bytes(), n, err
}
