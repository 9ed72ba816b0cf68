package persist

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rdpConnectionRequest builds the TPKT + X.224 Connection Request an RDP
// client sends first (MS-RDPBCGR 2.2.1.1), with the optional cookie line
// and an RDP_NEG_REQ asking for TLS and CredSSP.
func rdpConnectionRequest(cookie string) []byte {
	var data []byte
	if cookie != "" {
		data = append(data, "Cookie: "+cookie+"\r\n"...)
	}
	data = append(data, 0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00) // RDP_NEG_REQ
	total := tpktHeaderLen + x224CRFixed + len(data)
	b := []byte{0x03, 0x00, 0, 0, byte(total - tpktHeaderLen - 1), 0xE0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	return append(b, data...)
}

const sipInvite = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: Bob <sip:bob@biloxi.example.com>\r\n" +
	"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@pc33.atlanta.example.com>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 4\r\n" +
	"\r\n" +
	"v=0\n"

func TestParseRDPCookie(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want string
		s    scan
	}{
		{"mstshash", rdpConnectionRequest("mstshash=alice"), "mstshash=alice", found},
		{"routing token", rdpConnectionRequest("msts=3640205228.15629.0000"), "msts=3640205228.15629.0000", found},
		{"no cookie", rdpConnectionRequest(""), "", absent},
		{"empty mstshash", rdpConnectionRequest("mstshash="), "", absent},
		{"other cookie", rdpConnectionRequest("session=1"), "", invalid},
		{"control char", rdpConnectionRequest("mstshash=a\x01b"), "", invalid},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), "", invalid},
		{"tls", []byte{0x16, 0x03, 0x01, 0x00, 0x10}, "", invalid},
		{"empty", nil, "", needMore},
		{"bad LI", func() []byte { b := rdpConnectionRequest("mstshash=a"); b[4]++; return b }(), "", invalid},
		{"not CR", func() []byte { b := rdpConnectionRequest("mstshash=a"); b[5] = 0xD0; return b }(), "", invalid},
		{"short total", []byte{3, 0, 0, 5, 0, 0xE0}, "", invalid},
		{"next packet ignored", append(rdpConnectionRequest(""), "Cookie: mstshash=x\r\n"...), "", absent},
		{"no CRLF", func() []byte {
			b := rdpConnectionRequest("")
			b = append(b[:rdpDataOff], "Cookie: mstshash=bob"...)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			b[4] = byte(len(b) - 5)
			return b
		}(), "", invalid},
	}
	for _, tc := range tests {
		got, s := parseRDPCookie(tc.in)
		if got != tc.want || s != tc.s {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, s, tc.want, tc.s)
		}
	}
	// Every prefix of a request waits for more until the cookie line is
	// complete, then finds it.
	full := rdpConnectionRequest("mstshash=alice")
	lineEnd := bytes.Index(full, []byte("\r\n")) + 2
	for i := range len(full) + 1 {
		got, s := parseRDPCookie(full[:i])
		switch {
		case i < lineEnd && s != needMore:
			t.Fatalf("prefix %d: %q %v, want needMore", i, got, s)
		case i >= lineEnd && (s != found || got != "mstshash=alice"):
			t.Fatalf("prefix %d: %q %v, want the cookie", i, got, s)
		}
	}
}

func TestParseSIPCallID(t *testing.T) {
	t.Parallel()
	const id = "a84b4c76e66710@pc33.atlanta.example.com"
	tests := []struct {
		name, in, want string
		s              scan
	}{
		{"invite", sipInvite, id, found},
		{"compact", strings.Replace(sipInvite, "Call-ID:", "i:", 1), id, found},
		{"lower case, space before colon", strings.Replace(sipInvite, "Call-ID:", "call-id :", 1), id, found},
		{"LF only", strings.ReplaceAll(sipInvite, "\r\n", "\n"), id, found},
		{"response", "SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: abc\r\n\r\n", "abc", found},
		{"no call-id", "OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", "", absent},
		{"empty call-id", "BYE sip:a@b SIP/2.0\r\nCall-ID:  \r\n\r\n", "", invalid},
		{"space in call-id", "BYE sip:a@b SIP/2.0\r\nCall-ID: a b\r\n\r\n", "", invalid},
		{"header without colon", "BYE sip:a@b SIP/2.0\r\nnonsense\r\nCall-ID: a\r\n\r\n", "", invalid},
		{"http", "GET / HTTP/1.1\r\nCall-ID: a\r\n\r\n", "", invalid},
		{"http prefix", "GET / HTTP/1.", "", needMore}, // the line is not over: it could still end in SIP/2.0
		{"lower-case method", "invite sip:a@b SIP/2.0\r\n", "", invalid},
		{"binary", "\x00\x01\x02", "", invalid},
		{"keepalive", "\r\n\r\n", "", invalid},
		{"incomplete call-id line", "BYE sip:a@b SIP/2.0\r\nCall-ID: abc", "", needMore},
		{"empty", "", "", needMore},
		{"folded other header", "BYE sip:a@b SIP/2.0\r\nSubject: a\r\n b\r\nCall-ID: z\r\n\r\n", "z", found},
	}
	for _, tc := range tests {
		got, s := parseSIPCallID([]byte(tc.in))
		if got != tc.want || s != tc.s {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, s, tc.want, tc.s)
		}
	}
	lineEnd := strings.Index(sipInvite, "Call-ID:")
	lineEnd += strings.Index(sipInvite[lineEnd:], "\n") + 1
	for i := range len(sipInvite) + 1 {
		got, s := parseSIPCallID([]byte(sipInvite[:i]))
		switch {
		case i < lineEnd && s != needMore:
			t.Fatalf("prefix %d: %q %v, want needMore", i, got, s)
		case i >= lineEnd && (s != found || got != id):
			t.Fatalf("prefix %d: %q %v, want the Call-ID", i, got, s)
		}
	}
}

// clientHello captures the first bytes a crypto/tls client sends.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		// The handshake fails when the listener closes without answering.
		done <- tls.Client(c, cfg).HandshakeContext(ctx)
	}()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, tlsRecordHeader)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	s.Close()
	<-done
	return append(hdr, body...)
}

// withoutSessionID removes the session ID of a one-record ClientHello,
// fixing the record and handshake lengths.
func withoutSessionID(rec []byte) []byte {
	off := tlsRecordHeader + tlsSIDOffset
	sl := int(rec[off])
	out := append(bytes.Clone(rec[:off]), 0)
	out = append(out, rec[off+1+sl:]...)
	binary.BigEndian.PutUint16(out[3:], uint16(len(out)-tlsRecordHeader))
	hl := len(out) - tlsRecordHeader - 4
	out[6], out[7], out[8] = byte(hl>>16), byte(hl>>8), byte(hl)
	return out
}

// fragment re-frames one handshake record's payload into records of at
// most size bytes.
func fragment(rec []byte, size int) []byte {
	payload := rec[tlsRecordHeader:]
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, 22, rec[1], rec[2], byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

func TestParseTLSSessionID(t *testing.T) {
	t.Parallel()
	// A TLS 1.3-capable client sends a random 32-byte legacy session ID
	// (RFC 8446 appendix D.4), a new one on every connection.
	h13 := clientHello(t, &tls.Config{ServerName: "example.com"})
	sid, s := parseTLSSessionID(h13)
	if s != found || len(sid) != 64 {
		t.Fatalf("TLS 1.3 hello: %q %v, want 32 bytes of hex", sid, s)
	}
	if raw, _ := hex.DecodeString(sid); !bytes.Contains(h13, raw) {
		t.Fatal("session ID is not in the hello")
	}
	again, _ := parseTLSSessionID(clientHello(t, &tls.Config{ServerName: "example.com"}))
	if again == sid {
		t.Fatal("two TLS 1.3 connections sent the same session ID; the docs say it is random")
	}
	// A TLS 1.2 client without a session to resume may send none (crypto/tls
	// always sends a random one, so it is cut out of a real hello here).
	h12 := withoutSessionID(clientHello(t, &tls.Config{ServerName: "example.com", MaxVersion: tls.VersionTLS12}))
	if got, s := parseTLSSessionID(h12); s != absent || got != "" {
		t.Fatalf("hello without a session ID: %q %v, want absent", got, s)
	}
	// The same hello fragmented into small records parses the same.
	for _, size := range []int{1, 7, 38, 39, 40, 100} {
		if got, s := parseTLSSessionID(fragment(h13, size)); s != found || got != sid {
			t.Fatalf("fragments of %d: %q %v", size, got, s)
		}
	}
	// Every prefix waits for more until the session ID is complete.
	need := tlsRecordHeader + tlsSIDOffset + 1 + 32
	for i := range need + 10 {
		got, s := parseTLSSessionID(h13[:i])
		switch {
		case i < need && s != needMore:
			t.Fatalf("prefix %d: %q %v, want needMore", i, got, s)
		case i >= need && (s != found || got != sid):
			t.Fatalf("prefix %d: %q %v, want the session ID", i, got, s)
		}
	}
	bad := []struct {
		name string
		in   []byte
	}{
		{"http", []byte("GET / HTTP/1.1\r\n")},
		{"alert record", append([]byte{21}, h13[1:]...)},
		{"server hello", func() []byte { b := bytes.Clone(h13); b[5] = 2; return b }()},
		{"sid length 33", func() []byte { b := bytes.Clone(h13); b[tlsRecordHeader+tlsSIDOffset] = 33; return b }()},
		{"empty record", []byte{22, 3, 1, 0, 0}},
		{"oversized record", []byte{22, 3, 1, 0x40, 0x01}},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}},
		{"handshake too short for its sid", func() []byte {
			b := bytes.Clone(h13)
			b[6], b[7], b[8] = 0, 0, 40
			return b
		}()},
	}
	for _, tc := range bad {
		if got, s := parseTLSSessionID(tc.in); s != invalid {
			t.Errorf("%s: %q %v, want invalid", tc.name, got, s)
		}
	}
}

// reframe concatenates the complete handshake records of b and re-frames
// them into records of size bytes; nil when b holds none.
func reframe(b []byte, size int) []byte {
	var payload []byte
	for len(b) >= tlsRecordHeader && b[0] == 22 {
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < tlsRecordHeader+n {
			payload = append(payload, b[tlsRecordHeader:]...)
			break
		}
		payload = append(payload, b[tlsRecordHeader:tlsRecordHeader+n]...)
		b = b[tlsRecordHeader+n:]
	}
	if len(payload) == 0 {
		return nil
	}
	return fragment(append([]byte{22, 3, 1, 0, 0}, payload...), size)
}

// checkDoneIsFinal fails when parse gives a final verdict on a prefix of b
// that the whole of b contradicts: the tcp peek stops reading at the first
// final verdict, so it must never change with more bytes.
func checkDoneIsFinal(t *testing.T, b []byte, parse func([]byte) (string, scan)) {
	whole, ws := parse(b)
	if ws == found && whole == "" {
		t.Fatal("found an empty identity")
	}
	limit := min(len(b), 600)
	for i := 0; i <= limit; i++ {
		v, s := parse(b[:i])
		if s != needMore && (s != ws || v != whole) {
			t.Fatalf("prefix %d said %q %v, the whole input %q %v", i, v, s, whole, ws)
		}
	}
}

func FuzzRDPCookie(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzRDPCookie.
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDoneIsFinal(t, b, parseRDPCookie)
		if v, s := parseRDPCookie(b); s == found && (len(v) > maxRDPCookie || !strings.HasPrefix(v, "msts")) {
			t.Fatalf("identity %q", v)
		}
	})
}

func FuzzSIPCallID(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzSIPCallID.
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDoneIsFinal(t, b, parseSIPCallID)
		if v, s := parseSIPCallID(b); s == found && (len(v) > maxCallID || strings.ContainsAny(v, " \t\r\n")) {
			t.Fatalf("identity %q", v)
		}
	})
}

func FuzzTLSSessionID(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzTLSSessionID.
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDoneIsFinal(t, b, parseTLSSessionID)
		checkDoneIsFinal(t, b, parseServerSessionID)
		if v, s := parseTLSSessionID(b); s == found {
			raw, err := hex.DecodeString(v)
			if err != nil || len(raw) == 0 || len(raw) > tlsMaxSID {
				t.Fatalf("identity %q is not a 1..32-byte session ID", v)
			}
			// Re-framed into one-byte records the same hello gives the same ID
			// (a record split cannot change what is parsed).
			if one := reframe(b, 1); one != nil {
				if w, s := parseTLSSessionID(one); s != found || w != v {
					t.Fatalf("one-byte records: %q %v, want %q", w, s, v)
				}
			}
		}
	})
}
