package persist

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
)

// This file holds the hand parsers for the persistence types that key on the
// first bytes a client sends (msrdp, sip, ssl). Each reads a byte slice that
// may be a prefix of the message (a TCP peek still in progress) and says
// whether more bytes could change its answer. None allocates more than the
// identity it returns, none loops more than len(b) times, and none trusts a
// length field beyond the bytes it was given.

// scan is a parser's verdict on the bytes it was given.
type scan uint8

const (
	needMore scan = iota // a prefix of a valid message: more bytes may hold the identity
	found                // the identity is complete in the bytes given
	absent               // a valid message that carries no identity
	invalid              // not this protocol: more bytes will not help
)

// Bounds of the identities: anything longer is not a real client's.
const (
	maxRDPCookie = 1024 // the routing token or mstshash line, without "Cookie: " and CRLF
	maxCallID    = 1024
)

// --- RDP: TPKT (RFC 1006) + X.224 Connection Request (ITU-T X.224 §13.3),
// MS-RDPBCGR 2.2.1.1.
//
//	TPKT:  version=3 | reserved=0 | length (2, big endian, whole packet)
//	X.224: LI (header length after this byte) | 0xE0 CR | DST-REF (2) |
//	       SRC-REF (2) | class option (1) | variable data
//	variable data: ["Cookie: msts=TOKEN\r\n" | "Cookie: mstshash=USER\r\n"]
//	               [RDP_NEG_REQ (8)] [RDP_CORRELATION_INFO (36)]
const (
	tpktHeaderLen = 4
	x224CRFixed   = 7 // LI, code, DST-REF, SRC-REF, class
	rdpDataOff    = tpktHeaderLen + x224CRFixed
	rdpCookiePfx  = "Cookie: "
)

// parseRDPCookie returns the routing token or cookie of an RDP Connection
// Request ("msts=..." or "mstshash=..."), the text between "Cookie: " and
// CRLF.
func parseRDPCookie(b []byte) (string, scan) {
	if len(b) >= 1 && b[0] != 3 || len(b) >= 2 && b[1] != 0 {
		return "", invalid
	}
	if len(b) < tpktHeaderLen+2 {
		return "", needMore
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	li := int(b[4])
	// The X.224 header (LI counts the bytes after itself) fills the TPKT
	// payload; a CR carries at least the fixed part.
	if total < rdpDataOff || li != total-tpktHeaderLen-1 || b[5]&0xF0 != 0xE0 {
		return "", invalid
	}
	if len(b) > total {
		b = b[:total] // what follows is the next packet, not this one's
	}
	if len(b) < rdpDataOff {
		return "", needMore
	}
	data := b[rdpDataOff:]
	complete := len(b) == total
	if len(data) < len(rdpCookiePfx) {
		if !bytes.HasPrefix([]byte(rdpCookiePfx), data) || complete {
			return "", absent
		}
		return "", needMore
	}
	if !bytes.HasPrefix(data, []byte(rdpCookiePfx)) {
		return "", absent
	}
	line := data[len(rdpCookiePfx):]
	end := bytes.Index(line, []byte("\r\n"))
	if end < 0 {
		if complete || len(line) > maxRDPCookie+1 {
			return "", invalid // the line must end with CRLF inside the packet
		}
		return "", needMore
	}
	v := line[:end]
	if len(v) > maxRDPCookie || !(bytes.HasPrefix(v, []byte("mstshash=")) || bytes.HasPrefix(v, []byte("msts="))) {
		return "", invalid
	}
	if string(v) == "msts=" || string(v) == "mstshash=" {
		return "", absent // an empty token names nobody
	}
	for _, c := range v {
		if c < 0x20 || c >= 0x7f {
			return "", invalid
		}
	}
	return string(v), found
}

// --- SIP (RFC 3261 §7): a start line, header lines ending in CRLF, an empty
// line. Call-ID is "Call-ID" or its compact form "i", case-insensitive, with
// optional white space before the colon.

// parseSIPCallID returns the Call-ID of a SIP message (or of the prefix of
// one). Lines may end in LF alone (RFC 3261 §7.5 asks for tolerance).
func parseSIPCallID(b []byte) (string, scan) {
	first := true
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			if first && !plausibleSIPStart(b) {
				return "", invalid
			}
			return "", needMore
		}
		line := b[:nl]
		b = b[nl+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if first {
			if !sipStartLine(line) {
				return "", invalid
			}
			first = false
			continue
		}
		if len(line) == 0 {
			return "", absent // end of the headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // a folded continuation of the previous header
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return "", invalid
		}
		name = bytes.TrimRight(name, " \t")
		if !bytes.EqualFold(name, []byte("call-id")) && !bytes.EqualFold(name, []byte("i")) {
			continue
		}
		v := bytes.Trim(value, " \t")
		if len(v) == 0 || len(v) > maxCallID {
			return "", invalid
		}
		for _, c := range v {
			if c <= 0x20 || c == 0x7f {
				return "", invalid // Call-ID is word["@"word]: no space, no control
			}
		}
		// A folded continuation would make the value longer; Call-IDs are
		// never folded in practice, and a value that spans lines is not
		// one this parser keys on.
		return string(v), found
	}
	return "", needMore
}

// sipStartLine accepts "METHOD SP URI SP SIP/2.0" and "SIP/2.0 SP CODE ...".
func sipStartLine(line []byte) bool {
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	if bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
		return true
	}
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(method) == 0 || !bytes.HasSuffix(rest, []byte(" SIP/2.0")) {
		return false
	}
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// plausibleSIPStart reports whether b (an incomplete first line) can still
// become a SIP start line: upper-case method letters up to the first space,
// or a prefix of "SIP/2.0 ".
func plausibleSIPStart(b []byte) bool {
	const resp = "SIP/2.0 "
	if len(b) <= len(resp) && bytes.HasPrefix([]byte(resp), b) || bytes.HasPrefix(b, []byte(resp)) {
		return true
	}
	sp := bytes.IndexByte(b, ' ')
	method := b
	if sp >= 0 {
		method = b[:sp]
		if sp == 0 {
			return false
		}
	}
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	for _, c := range b {
		if c < 0x20 && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

// --- TLS ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2), possibly
// fragmented over several handshake records:
//
//	record:    type=22 | version (2, 0x03xx) | length (2, 1..2^14) | fragment
//	handshake: type=1 | length (3) | client_version (2) | random (32) |
//	           session_id length (1, 0..32) | session_id
//
// A ServerHello (type 2) has the same layout up to its session ID: the ID
// the server gives the session, which a TLS <= 1.2 client presents in its
// next ClientHello to resume it.
const (
	tlsRecordHeader = 5
	tlsMaxFragment  = 1 << 14
	tlsClientHello  = 1
	tlsServerHello  = 2
	tlsSIDOffset    = 4 + 2 + 32 // handshake header, version, random
	tlsMaxSID       = 32
)

// parseTLSSessionID returns the legacy session ID of a ClientHello as lower
// case hex; an empty session ID is absent.
func parseTLSSessionID(b []byte) (string, scan) { return parseHelloSessionID(b, tlsClientHello) }

// parseServerSessionID returns the session ID of a ServerHello.
func parseServerSessionID(b []byte) (string, scan) { return parseHelloSessionID(b, tlsServerHello) }

func parseHelloSessionID(b []byte, hsType byte) (string, scan) {
	// Gather the handshake bytes up to the end of the session ID from
	// consecutive handshake records; at most tlsSIDOffset+1+tlsMaxSID are
	// needed, so a record header is read at most that many times.
	var hs [tlsSIDOffset + 1 + tlsMaxSID]byte
	n := 0
	need := tlsSIDOffset + 1 // through the session ID length, then more
	for n < need {
		if len(b) >= 1 && b[0] != 22 || len(b) >= 2 && b[1] != 3 || len(b) >= 3 && b[2] > 4 {
			return "", invalid
		}
		if len(b) < tlsRecordHeader {
			return "", needMore
		}
		rl := int(binary.BigEndian.Uint16(b[3:5]))
		if rl == 0 || rl > tlsMaxFragment {
			return "", invalid
		}
		frag := b[tlsRecordHeader:]
		if len(frag) > rl {
			frag = frag[:rl]
		}
		for _, c := range frag {
			if n == need {
				break
			}
			hs[n] = c
			n++
			switch n {
			case 1:
				if hs[0] != hsType {
					return "", invalid
				}
			case 4:
				hl := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
				if hl < 2+32+1 {
					return "", invalid
				}
			case 5:
				if hs[4] != 3 {
					return "", invalid
				}
			case tlsSIDOffset + 1:
				sl := int(hs[tlsSIDOffset])
				if sl > tlsMaxSID {
					return "", invalid
				}
				hl := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
				if hl < 2+32+1+sl {
					return "", invalid
				}
				need += sl
			}
		}
		if n == need {
			break
		}
		if len(b)-tlsRecordHeader < rl {
			return "", needMore // this record is not all here yet
		}
		b = b[tlsRecordHeader+rl:]
	}
	sid := hs[tlsSIDOffset+1 : n]
	if len(sid) == 0 {
		return "", absent
	}
	return hex.EncodeToString(sid), found
}
