package etherip

import (
	"encoding/binary"
	"math/bits"
)

// Segmentation and receive offload in user space.
//
// The TAP is opened with a virtio-net header (IFF_VNET_HDR) and TCP
// segmentation offload (TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6), so the kernel
// hands the endpoint whole TCP super-frames (up to 64 KB) from the bridge,
// once per 40-odd segments, and accepts them back. On the wire nothing
// changes: the endpoint cuts super-frames into MTU-sized segments before
// encapsulating them (gsoSplit), and joins consecutive segments of a TCP
// flow that arrive together back into one super-frame (groState) before
// writing it to the TAP, as Linux's GRO does for a NIC. Each segment's
// checksum is verified before it is joined, since the joined frame is
// handed over as CHECKSUM_PARTIAL, which the receiving stack trusts.

// virtio_net_hdr (legacy, 10 bytes, native byte order).
const (
	vnetHdrLen        = 10
	vnetFlagNeedsCsum = 1
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
	vnetGSOECN        = 0x80
)

type vnetHdr struct {
	flags, gsoType                       uint8
	hdrLen, gsoSize, csumStart, csumOffs uint16
}

func decodeVnet(b []byte) vnetHdr {
	return vnetHdr{
		flags:     b[0],
		gsoType:   b[1],
		hdrLen:    binary.NativeEndian.Uint16(b[2:]),
		gsoSize:   binary.NativeEndian.Uint16(b[4:]),
		csumStart: binary.NativeEndian.Uint16(b[6:]),
		csumOffs:  binary.NativeEndian.Uint16(b[8:]),
	}
}

func (h vnetHdr) encode(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffs)
}

// sum adds b to a one's complement sum accumulator (big-endian 16-bit
// words; an odd last byte is padded with zero).
func sum(acc uint64, b []byte) uint64 {
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:]), carry)
		acc += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		acc += carry
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b)), 0)
		acc += carry
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), 0)
		acc += carry
		b = b[2:]
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0])<<8, 0)
		acc += carry
	}
	return acc
}

// fold folds a sum accumulator to 16 bits (not complemented).
func fold(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// pseudoSum is the TCP pseudo-header sum for addresses src and dst (4 or
// 16 bytes each) and a TCP length.
func pseudoSum(src, dst []byte, tcpLen int) uint64 {
	return sum(sum(uint64(6)+uint64(tcpLen), src), dst)
}

// finishChecksum completes a CHECKSUM_PARTIAL frame: the checksum field at
// start+offs holds the pseudo-header sum; the checksum of everything from
// start is stored there. It reports false if the offsets are out of range.
func finishChecksum(frame []byte, start, offs int) bool {
	if start < 0 || start+offs+2 > len(frame) {
		return false
	}
	ck := ^fold(sum(0, frame[start:]))
	binary.BigEndian.PutUint16(frame[start+offs:], ck)
	return true
}

// tcpLayout locates the headers of an IPv4 or IPv6 TCP frame (IPv4 with
// any options, IPv6 without extension headers, up to two VLAN tags).
type tcpLayout struct {
	l3, l4, hdrEnd int
	v6             bool
}

func parseTCP(frame []byte) (tcpLayout, bool) {
	var g tcpLayout
	if len(frame) < ethHeaderLen {
		return g, false
	}
	off := 12
	et := binary.BigEndian.Uint16(frame[off:])
	for tags := 0; tags < 2 && (et == etherType8021Q || et == etherType8021AD); tags++ {
		off += vlanTagLen
		if len(frame) < off+2 {
			return g, false
		}
		et = binary.BigEndian.Uint16(frame[off:])
	}
	g.l3 = off + 2
	p := frame[g.l3:]
	switch et {
	case etherTypeIPv4:
		if len(p) < 20 || p[0]>>4 != 4 || p[9] != 6 {
			return g, false
		}
		g.l4 = g.l3 + int(p[0]&0x0f)*4
	case etherTypeIPv6:
		if len(p) < 40 || p[0]>>4 != 6 || p[6] != 6 {
			return g, false
		}
		g.v6 = true
		g.l4 = g.l3 + 40
	default:
		return g, false
	}
	if g.l4 < g.l3+20 || len(frame) < g.l4+20 {
		return g, false
	}
	g.hdrEnd = g.l4 + int(frame[g.l4+12]>>4)*4
	if g.hdrEnd < g.l4+20 || g.hdrEnd > len(frame) {
		return g, false
	}
	return g, true
}

func (g tcpLayout) addrs(frame []byte) (src, dst []byte) {
	if g.v6 {
		return frame[g.l3+8 : g.l3+24], frame[g.l3+24 : g.l3+40]
	}
	return frame[g.l3+12 : g.l3+16], frame[g.l3+16 : g.l3+20]
}

// setIPLen sets the IP length fields for a TCP segment of tcpLen bytes
// and, for IPv4, the ID and header checksum.
func (g tcpLayout) setIPLen(frame []byte, tcpLen int, id uint16, setID bool) {
	ip := frame[g.l3:g.l4]
	if g.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen))
		return
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+tcpLen))
	if setID {
		binary.BigEndian.PutUint16(ip[4:], id)
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum(0, ip)))
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80
)

// gsoSegments is the number of segments a TCP super-frame of layout g and
// segment size mss yields.
func gsoSegments(frame []byte, g tcpLayout, mss int) int {
	p := len(frame) - g.hdrEnd
	if p <= 0 {
		return 1
	}
	return (p + mss - 1) / mss
}

// gsoSplit writes segments first, first+1, … of the TCP super-frame into
// out (each at least g.hdrEnd+mss long), recording their lengths in lens,
// and returns how many it wrote (len(out) at most). Each segment gets
// complete IP and TCP checksums.
func gsoSplit(frame []byte, g tcpLayout, mss, first int, out [][]byte, lens []int) int {
	payload := frame[g.hdrEnd:]
	total := gsoSegments(frame, g, mss)
	hdr := frame[:g.hdrEnd]
	seq0 := binary.BigEndian.Uint32(frame[g.l4+4:])
	var id0 uint16
	if !g.v6 {
		id0 = binary.BigEndian.Uint16(frame[g.l3+4:])
	}
	flags := frame[g.l4+13]
	src, dst := g.addrs(frame)
	n := 0
	for i := first; i < total && n < len(out); i++ {
		lo := i * mss
		hi := min(lo+mss, len(payload))
		o := out[n]
		copy(o, hdr)
		copy(o[g.hdrEnd:], payload[lo:hi])
		l := g.hdrEnd + hi - lo
		o = o[:l]
		tcpLen := l - g.l4
		g.setIPLen(o, tcpLen, id0+uint16(i), true)
		t := o[g.l4:]
		binary.BigEndian.PutUint32(t[4:], seq0+uint32(lo))
		f := flags
		if i != total-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i != 0 {
			f &^= tcpCWR
		}
		t[13] = f
		t[16], t[17] = 0, 0
		binary.BigEndian.PutUint16(t[16:], ^fold(sum(pseudoSum(src, dst, tcpLen), t)))
		lens[n] = l
		n++
	}
	return n
}

// groRun is a groState with the frame bytes it holds, for the counters.
type groRun struct {
	groState
	bytes int
}

// groMax bounds a joined frame: its IP packet must stay below 64 KiB.
const groMax = 65535 - 64

// groState joins consecutive TCP segments of one flow into a super-frame.
// buf holds a virtio-net header followed by the frame.
type groState struct {
	buf    []byte
	n      int // frame bytes in buf after the header
	segs   int
	lay    tcpLayout
	mss    int
	next   uint32 // sequence number the next segment must have
	psh    bool
	closed bool // a short or PSH segment ended the run
}

// groCandidate reports whether frame is a TCP segment that may be joined:
// untagged, IPv4 without options or fragmentation or IPv6 without
// extension headers, exact lengths, ACK with data and no SYN, FIN, RST,
// URG, ECE or CWR, and a valid checksum.
func groCandidate(frame []byte) (tcpLayout, bool) {
	g, ok := parseTCP(frame)
	if !ok || g.l3 != ethHeaderLen || g.hdrEnd >= len(frame) {
		return g, false
	}
	ip := frame[g.l3:]
	if g.v6 {
		if int(binary.BigEndian.Uint16(ip[4:])) != len(frame)-g.l3-40 {
			return g, false
		}
	} else {
		if g.l4 != g.l3+20 || int(binary.BigEndian.Uint16(ip[2:])) != len(frame)-g.l3 ||
			binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return g, false
		}
	}
	f := frame[g.l4+13]
	if f&tcpACK == 0 || f&(tcpSYN|tcpFIN|tcpRST|tcpURG|tcpECE|tcpCWR) != 0 {
		return g, false
	}
	src, dst := g.addrs(frame)
	if fold(sum(pseudoSum(src, dst, len(frame)-g.l4), frame[g.l4:])) != 0xffff {
		return g, false // bad checksum: let the stack see (and drop) it
	}
	return g, true
}

// start begins a run with frame, a groCandidate of layout g.
func (s *groState) start(frame []byte, g tcpLayout) {
	s.n = copy(s.buf[vnetHdrLen:], frame)
	s.segs = 1
	s.lay = g
	s.mss = len(frame) - g.hdrEnd
	s.next = binary.BigEndian.Uint32(frame[g.l4+4:]) + uint32(s.mss)
	s.psh = frame[g.l4+13]&tcpPSH != 0
	s.closed = s.psh
}

// add appends frame (a groCandidate of layout g) to the run if it
// continues it, and reports whether it did.
func (s *groState) add(frame []byte, g tcpLayout) bool {
	if s.segs == 0 || s.closed || g != s.lay {
		return false
	}
	cur := s.buf[vnetHdrLen : vnetHdrLen+s.n]
	pl := len(frame) - g.hdrEnd
	if pl > s.mss || s.n+pl > groMax || binary.BigEndian.Uint32(frame[g.l4+4:]) != s.next {
		return false
	}
	// Ethernet header and everything in the IP header but the length,
	// ID and checksum fields must match.
	l3, l4 := g.l3, g.l4
	if string(frame[:l3]) != string(cur[:l3]) {
		return false
	}
	if g.v6 {
		if string(frame[l3:l3+4]) != string(cur[l3:l3+4]) || string(frame[l3+6:l4]) != string(cur[l3+6:l4]) {
			return false
		}
	} else if cur[l3+1] != frame[l3+1] || string(frame[l3+6:l3+10]) != string(cur[l3+6:l3+10]) || string(frame[l3+12:l4]) != string(cur[l3+12:l4]) {
		return false
	}
	// TCP: ports, ack, flags (but PSH), options must match; window may
	// differ (the last one wins, as it is the newest).
	t, ct := frame[l4:], cur[l4:]
	if string(t[0:4]) != string(ct[0:4]) || string(t[8:12]) != string(ct[8:12]) ||
		(t[13]^ct[13])&^tcpPSH != 0 || string(t[20:g.hdrEnd-l4]) != string(ct[20:g.hdrEnd-l4]) {
		return false
	}
	copy(ct[14:16], t[14:16])
	s.n += copy(s.buf[vnetHdrLen+s.n:], frame[g.hdrEnd:])
	s.segs++
	s.next += uint32(pl)
	if t[13]&tcpPSH != 0 {
		s.psh = true
		s.closed = true
	}
	if pl < s.mss {
		s.closed = true
	}
	return true
}

// finish returns the run as a virtio-net header and frame ready for a TAP
// write, and resets the state. A single segment goes out unchanged; a
// joined frame goes out as a GSO frame with a partial checksum.
func (s *groState) finish() []byte {
	out := s.buf[:vnetHdrLen+s.n]
	frame := out[vnetHdrLen:]
	if s.segs == 1 {
		vnetHdr{}.encode(out)
		s.segs = 0
		return out
	}
	g := s.lay
	tcpLen := len(frame) - g.l4
	g.setIPLen(frame, tcpLen, 0, false)
	t := frame[g.l4:]
	if s.psh {
		t[13] |= tcpPSH
	}
	src, dst := g.addrs(frame)
	binary.BigEndian.PutUint16(t[16:], fold(pseudoSum(src, dst, tcpLen)))
	gso := uint8(vnetGSOTCPv4)
	if g.v6 {
		gso = vnetGSOTCPv6
	}
	vnetHdr{
		flags: vnetFlagNeedsCsum, gsoType: gso,
		hdrLen: uint16(g.hdrEnd), gsoSize: uint16(s.mss),
		csumStart: uint16(g.l4), csumOffs: 16,
	}.encode(out)
	s.segs = 0
	return out
}
