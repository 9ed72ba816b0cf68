package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// copyBody runs CopyBody over in with a bufio.Reader of size bufSize and
// returns what was written, the count, what is left unread and the error.
func copyBody(in string, f Framing, bufSize int) (out string, n int64, rest string, err error) {
	br := bufio.NewReaderSize(strings.NewReader(in), bufSize)
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	n, err = CopyBody(bw, br, f)
	bw.Flush()
	left, _ := io.ReadAll(br)
	return b.String(), n, string(left), err
}

func TestCopyBodyFramings(t *testing.T) {
	t.Parallel()
	chunked := Framing{Chunked: true, ContentLength: -1}
	tests := []struct {
		name string
		in   string
		f    Framing
		out  string
		n    int64
		rest string
	}{
		{"no body", "GET / HTTP/1.1\r\n", noBody, "", 0, "GET / HTTP/1.1\r\n"},
		{"zero framing is no body", "xyz", Framing{ContentLength: -1}, "", 0, "xyz"},
		{"content-length stops at length", "helloNEXT", Framing{ContentLength: 5}, "hello", 5, "NEXT"},
		{"content-length zero", "NEXT", Framing{ContentLength: 0}, "", 0, "NEXT"},
		{"until close", "all of it\r\n0\r\n", Framing{UntilClose: true, ContentLength: -1}, "all of it\r\n0\r\n", 14, ""},
		{"chunked simple", "5\r\nhello\r\n0\r\n\r\nNEXT", chunked, "5\r\nhello\r\n0\r\n\r\n", 5, "NEXT"},
		{"chunked several, uppercase hex, leading zeros",
			"000A\r\n0123456789\r\n1\r\nx\r\n0000\r\n\r\n", chunked, "a\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n", 11, ""},
		{"extensions dropped",
			"3;name=value;q=\"a;b\\\"c\" ; flag\r\nabc\r\n0;last\r\n\r\n", chunked, "3\r\nabc\r\n0\r\n\r\n", 3, ""},
		{"whitespace after size tolerated", "3 \t\r\nabc\r\n0\r\n\r\n", chunked, "3\r\nabc\r\n0\r\n\r\n", 3, ""},
		{"trailers forwarded and normalised",
			"2\r\nhi\r\n0\r\nGrpc-Status:  0 \r\nx-checksum:abc\r\n\r\nNEXT", chunked,
			"2\r\nhi\r\n0\r\nGrpc-Status: 0\r\nx-checksum: abc\r\n\r\n", 2, "NEXT"},
		{"empty chunked body", "0\r\n\r\n", chunked, "0\r\n\r\n", 0, ""},
		{"NoBody wins over chunked", "5\r\n", Framing{NoBody: true, Chunked: true}, "", 0, "5\r\n"},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} { // 16: lines span several ReadSlice calls
			out, n, rest, err := copyBody(tt.in, tt.f, size)
			if err != nil {
				t.Errorf("%s (buf %d): %v", tt.name, size, err)
				continue
			}
			if out != tt.out || n != tt.n || rest != tt.rest {
				t.Errorf("%s (buf %d): out %q n %d rest %q; want %q %d %q", tt.name, size, out, n, rest, tt.out, tt.n, tt.rest)
			}
		}
	}
}

func TestCopyBodyLargeChunk(t *testing.T) {
	t.Parallel()
	payload := strings.Repeat("0123456789abcdef", 1<<12) // 64 KiB, larger than any buffer
	in := "10000\r\n" + payload + "\r\n0\r\n\r\n"
	out, n, _, err := copyBody(in, Framing{Chunked: true}, 4096)
	if err != nil || n != int64(len(payload)) || out != in {
		t.Fatalf("n %d err %v, out matches: %v", n, err, out == in)
	}
	// Byte-at-a-time source exercises every partial-read path.
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader("3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n")), 16)
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if _, err := CopyBody(bw, br, Framing{Chunked: true}); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	if b.String() != "3\r\nabc\r\n0\r\nT: 1\r\n\r\n" {
		t.Fatalf("got %q", b.String())
	}
}

func TestCopyBodyMalformedChunked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
	}{
		{"empty size", "\r\nabc\r\n0\r\n\r\n"},
		{"non-hex size", "g\r\n"},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"signed size", "+5\r\nhello\r\n0\r\n\r\n"},
		{"negative size", "-1\r\n"},
		{"leading space", " 5\r\nhello\r\n0\r\n\r\n"},
		{"overflow 2^64", "10000000000000000\r\n"},
		{"over 2^62", "4000000000000001\r\n"},
		{"many digits", "ffffffffffffffffffffffffff\r\n"},
		{"bare LF after size", "5\nhello\r\n0\r\n\r\n"},
		{"bare CR in size line", "5\r;a\r\nhello\r\n0\r\n\r\n"},
		{"bare LF after data", "5\r\nhello\n0\r\n\r\n"},
		{"data longer than size", "5\r\nhello!\r\n0\r\n\r\n"},
		{"data shorter than size", "5\r\nhell\r\n0\r\n\r\n"},
		{"extension without semicolon", "5 x\r\nhello\r\n0\r\n\r\n"},
		{"extension empty name", "5;\r\nhello\r\n0\r\n\r\n"},
		{"extension empty value", "5;a=\r\nhello\r\n0\r\n\r\n"},
		{"extension bad quoted", "5;a=\"x\r\nhello\r\n0\r\n\r\n"},
		{"extension with LF (funky chunk)", "5;a\nb\r\nhello\r\n0\r\n\r\n"},
		{"extension control char", "5;a=\x01\r\nhello\r\n0\r\n\r\n"},
		{"size line too long", "5;" + strings.Repeat("a", maxChunkLineBytes) + "\r\nhello\r\n0\r\n\r\n"},
		{"last chunk bare LF", "0\n\r\n"},
		{"trailer bare LF end", "0\r\n\n"},
		{"trailer obs-fold", "0\r\nA: 1\r\n 2\r\n\r\n"},
		{"trailer no colon", "0\r\nnocolon\r\n\r\n"},
		{"trailer space before colon", "0\r\nA : 1\r\n\r\n"},
		{"trailer NUL", "0\r\nA: \x00\r\n\r\n"},
		{"trailers too large", "0\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 17) + "\r\n"},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} {
			_, _, _, err := copyBody(tt.in, Framing{Chunked: true}, size)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s (buf %d): err = %v, want ErrMalformed", tt.name, size, err)
			}
		}
	}
}

func TestCopyBodyTruncated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		f    Framing
		n    int64
	}{
		{"content-length short", "abc", Framing{ContentLength: 10}, 3},
		{"chunk data short", "5\r\nab", Framing{Chunked: true}, 2},
		{"no CRLF after data", "2\r\nab", Framing{Chunked: true}, 2},
		{"half CRLF after data", "2\r\nab\r", Framing{Chunked: true}, 2},
		{"mid size line", "2\r\nab\r\n1", Framing{Chunked: true}, 2},
		{"no last chunk", "2\r\nab\r\n", Framing{Chunked: true}, 2},
		{"no end of trailers", "0\r\nA: 1\r\n", Framing{Chunked: true}, 0},
		{"no final CRLF", "0\r\n", Framing{Chunked: true}, 0},
	}
	for _, tt := range tests {
		_, n, _, err := copyBody(tt.in, tt.f, 4096)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: err = %v, want io.ErrUnexpectedEOF", tt.name, err)
		}
		if errors.Is(err, ErrMalformed) {
			t.Errorf("%s: truncation reported as malformed: %v", tt.name, err)
		}
		if n != tt.n {
			t.Errorf("%s: n = %d, want %d", tt.name, n, tt.n)
		}
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestCopyBodyWriteError(t *testing.T) {
	t.Parallel()
	boom := errors.New("peer gone")
	big := strings.Repeat("x", 10000)
	for _, tt := range []struct {
		in string
		f  Framing
	}{
		{big, Framing{ContentLength: int64(len(big))}},
		{big, Framing{UntilClose: true}},
		{"2710\r\n" + big + "\r\n0\r\n\r\n", Framing{Chunked: true}},
	} {
		br := bufio.NewReader(strings.NewReader(tt.in))
		bw := bufio.NewWriterSize(failWriter{boom}, 512)
		if _, err := CopyBody(bw, br, tt.f); !errors.Is(err, boom) {
			t.Errorf("%+v: err = %v, want the write error", tt.f, err)
		}
	}
}

func TestWriteHex(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, 1, 9, 10, 15, 16, 255, 4096, 0x1234abcd, 1 << 62} {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		writeHex(bw, n)
		bw.Flush()
		v, err := parseChunkSize(b.Bytes())
		if err != nil || v != n || (n > 0 && b.Bytes()[0] == '0') {
			t.Errorf("writeHex(%d) = %q (parsed %d, %v)", n, b.String(), v, err)
		}
	}
}
