package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Chunked-framing bounds. A chunk-size line is the size plus extensions; a
// real client sends a few bytes, 4 KiB is generous. Trailers reuse a 16 KiB
// cap like a small head.
const (
	maxChunkLineBytes = 4 << 10
	maxTrailerBytes   = 16 << 10
	maxChunkSize      = 1 << 62
)

// CopyBody copies one message body from src to dst per f, re-emitting chunked bodies in valid chunked form
// (chunk extensions dropped, trailers forwarded) and returns the body bytes copied. For UntilClose, copies to EOF.
// Malformed chunking returns an error wrapping ErrMalformed. dst is flushed by the caller.
//
// The count is payload bytes only (chunk data, not framing). The flags are
// honoured in the order NoBody, Chunked, UntilClose, ContentLength, so a
// hand-built Framing{Chunked: true} works without setting ContentLength to
// -1; with none of them (ContentLength < 0) nothing is copied. A body cut short by EOF returns an error wrapping
// io.ErrUnexpectedEOF; errors from dst are returned as they are. After an
// error the connection is out of sync and must be closed by the caller.
func CopyBody(dst *bufio.Writer, src *bufio.Reader, f Framing) (int64, error) {
	switch {
	case f.NoBody:
		return 0, nil
	case f.Chunked:
		return copyChunked(dst, src)
	case f.UntilClose:
		n, err := copyFlushing(dst, src, -1)
		if err == io.EOF {
			err = nil
		}
		return n, err
	case f.ContentLength >= 0:
		n, err := copyFlushing(dst, src, f.ContentLength)
		if err == io.EOF {
			err = fmt.Errorf("h1: body ended after %d of %d bytes: %w", n, f.ContentLength, io.ErrUnexpectedEOF)
		}
		return n, err
	}
	return 0, nil
}

// copyFlushing copies n bytes (n < 0: until EOF, returned as io.EOF) from
// src to dst, flushing dst whenever src has nothing more buffered, just
// before it would block: a slow stream (server-sent events, a long poll, a
// trickling upload) reaches the other side as it arrives, not once 16 KiB
// have gathered, and a bulk transfer still moves a buffer per system call.
func copyFlushing(dst *bufio.Writer, src *bufio.Reader, n int64) (int64, error) {
	var total int64
	for n < 0 || total < n {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
			if _, err := src.Peek(1); err != nil {
				return total, err
			}
		}
		b, _ := src.Peek(src.Buffered())
		if n >= 0 && int64(len(b)) > n-total {
			b = b[:n-total]
		}
		w, err := dst.Write(b)
		src.Discard(w)
		total += int64(w)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// chunkErr is a malformed-chunking error. Chunked errors are found after the
// head was forwarded, so there is no status to answer; the proxy resets.
func chunkErr(reason string) error {
	return &Error{Status: 400, Reason: "chunked body: " + reason, Err: ErrMalformed}
}

// copyChunked decodes chunked framing from src (RFC 9112 §7.1) and writes the
// same payload and trailers to dst in canonical framing: lowercase hex sizes,
// no extensions, CRLF everywhere. Because what goes out is re-framed from
// what this parser understood, a peer behind us can never read different
// chunk boundaries from ours, whatever oddities the sender tried.
func copyChunked(dst *bufio.Writer, src *bufio.Reader) (int64, error) {
	var total int64
	var line [maxChunkLineBytes]byte
	for {
		if src.Buffered() == 0 {
			// The next read may block: what we have goes out first.
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
		l, err := readCRLFLine(src, line[:0], maxChunkLineBytes, "chunk-size line")
		if err != nil {
			return total, err
		}
		size, err := parseChunkSize(l)
		if err != nil {
			return total, err
		}
		if size == 0 {
			break
		}
		writeHex(dst, size)
		dst.WriteString("\r\n")
		n, err := copyFlushing(dst, src, size)
		total += n
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("h1: chunked body: connection closed inside a chunk: %w", io.ErrUnexpectedEOF)
			}
			return total, err
		}
		if err := expectCRLF(src); err != nil {
			return total, err
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return total, err
		}
	}
	dst.WriteString("0\r\n")
	if err := copyTrailers(dst, src); err != nil {
		return total, err
	}
	_, err := dst.WriteString("\r\n")
	return total, err
}

// writeHex writes n in lower-case hex without allocating (a [N]byte passed
// to bufio.Writer.Write escapes, since Write may hand it to the conn).
func writeHex(w *bufio.Writer, n int64) {
	shift := 60
	for shift > 0 && n>>shift == 0 {
		shift -= 4
	}
	for ; shift >= 0; shift -= 4 {
		w.WriteByte("0123456789abcdef"[n>>shift&0xf])
	}
}

// readCRLFLine reads one line that must end in CRLF and returns it without
// the CRLF, appended to buf. Inside a body a bare LF is not a line end (RFC
// 9112 §2.2 allows that leniency only for the head), and treating it as one
// is the "funky chunks" class of smuggling; a bare CR anywhere is refused too.
func readCRLFLine(src *bufio.Reader, buf []byte, max int, what string) ([]byte, error) {
	for {
		frag, err := src.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			return nil, chunkErr(what + " too long")
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("h1: chunked body: connection closed inside a %s: %w", what, io.ErrUnexpectedEOF)
			}
			return nil, err
		}
		break
	}
	n := len(buf)
	if n < 2 || buf[n-2] != '\r' {
		return nil, chunkErr(what + " not terminated by CRLF")
	}
	buf = buf[:n-2]
	for _, c := range buf {
		if c == '\r' {
			return nil, chunkErr("bare CR in " + what)
		}
	}
	return buf, nil
}

// parseChunkSize parses chunk-size [ chunk-ext ]: 1*HEXDIG, then any number
// of BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ]. Trailing
// whitespace after the size is tolerated (it cannot change the size); a
// sign, "0x", an empty size or anything else after it is refused.
func parseChunkSize(l []byte) (int64, error) {
	var n uint64
	i := 0
	for ; i < len(l); i++ {
		d, ok := hexVal(l[i])
		if !ok {
			break
		}
		if n >= 1<<59 {
			return 0, chunkErr("chunk size overflow")
		}
		n = n<<4 | uint64(d)
	}
	if i == 0 {
		return 0, chunkErr("missing chunk size")
	}
	if n > maxChunkSize {
		return 0, chunkErr("chunk size overflow")
	}
	if !validChunkExt(l[i:]) {
		return 0, chunkErr("invalid chunk extension")
	}
	return int64(n), nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// validChunkExt checks the grammar of what follows the chunk size.
func validChunkExt(b []byte) bool {
	i := 0
	skipBWS := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
	}
	token := func() bool {
		s := i
		for i < len(b) && isTchar(b[i]) {
			i++
		}
		return i > s
	}
	for {
		skipBWS()
		if i == len(b) {
			return true
		}
		if b[i] != ';' {
			return false
		}
		i++
		skipBWS()
		if !token() {
			return false
		}
		skipBWS()
		if i == len(b) || b[i] != '=' {
			continue
		}
		i++
		skipBWS()
		if i < len(b) && b[i] == '"' {
			n, ok := quotedStringLen(b[i:])
			if !ok {
				return false
			}
			i += n
			continue
		}
		if !token() {
			return false
		}
	}
}

// expectCRLF consumes the CRLF that must follow chunk data.
func expectCRLF(src *bufio.Reader) error {
	b, err := src.Peek(2)
	if err != nil {
		if errors.Is(err, io.EOF) {
			if len(b) == 1 && b[0] != '\r' {
				return chunkErr("chunk data not followed by CRLF")
			}
			return fmt.Errorf("h1: chunked body: connection closed after chunk data: %w", io.ErrUnexpectedEOF)
		}
		return err
	}
	if b[0] != '\r' || b[1] != '\n' {
		return chunkErr("chunk data not followed by CRLF")
	}
	src.Discard(2)
	return nil
}

// copyTrailers reads the trailer section after the last chunk, up to and
// including its empty line, validates each field like a header field and
// writes the valid fields to dst (without the empty line). Trailers are
// forwarded because some protocols (gRPC-Web over HTTP/1.1) need them.
func copyTrailers(dst *bufio.Writer, src *bufio.Reader) error {
	var buf [512]byte
	used := 0
	for {
		l, err := readCRLFLine(src, buf[:0], maxTrailerBytes-used, "trailer line")
		if err != nil {
			return err
		}
		used += len(l) + 2
		if len(l) == 0 {
			return nil
		}
		if l[0] == ' ' || l[0] == '\t' {
			return chunkErr("obs-fold in trailer")
		}
		colon := -1
		for j, c := range l {
			if c == ':' {
				colon = j
				break
			}
		}
		if colon < 0 {
			return chunkErr("trailer line without a colon")
		}
		name := string(l[:colon]) // small; trailers are rare
		if !isToken(name) {
			return chunkErr("invalid trailer name " + quoteCap(name))
		}
		value := trimOWS(string(l[colon+1:]))
		if !validFieldValue(value) {
			return chunkErr("control character in trailer " + quoteCap(name))
		}
		dst.WriteString(name)
		dst.WriteString(": ")
		dst.WriteString(value)
		if _, err := dst.WriteString("\r\n"); err != nil {
			return err
		}
	}
}
