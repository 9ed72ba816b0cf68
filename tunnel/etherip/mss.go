package etherip

import "encoding/binary"

// Ethernet types that ClampMSS understands.
const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8
)

// Fixed header lengths the MSS is derived from, as in RFC 879 and the
// kernel's TCPMSS target: the MSS excludes IP and TCP options.
const (
	ipv4TCPOverhead = 20 + 20
	ipv6TCPOverhead = 40 + 20
)

// ClampMSS lowers the Maximum Segment Size option of a TCP SYN (or SYN-ACK)
// carried in the Ethernet frame so that the peer's segments fit a tunnel
// whose IP MTU (the TAP MTU) is mtu, and fixes the TCP checksum
// incrementally (RFC 1624). It handles IPv4 and IPv6 (skipping Hop-by-Hop,
// Routing and Destination Options headers) behind up to two 802.1Q/802.1ad
// tags; every tag costs 4 bytes of the MTU. It never raises an MSS and
// leaves everything else (non-TCP, non-SYN, fragments, malformed headers)
// alone. It reports whether it changed the frame.
func ClampMSS(frame []byte, mtu int) bool {
	if len(frame) < ethHeaderLen {
		return false
	}
	off := 12
	et := binary.BigEndian.Uint16(frame[off:])
	for tags := 0; tags < 2 && (et == etherType8021Q || et == etherType8021AD); tags++ {
		off += vlanTagLen
		mtu -= vlanTagLen
		if len(frame) < off+2 {
			return false
		}
		et = binary.BigEndian.Uint16(frame[off:])
	}
	l3 := frame[off+2:]
	switch et {
	case etherTypeIPv4:
		return clampIPv4(l3, mtu-ipv4TCPOverhead)
	case etherTypeIPv6:
		return clampIPv6(l3, mtu-ipv6TCPOverhead)
	}
	return false
}

func clampIPv4(p []byte, mss int) bool {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 6 {
		return false
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || len(p) < ihl {
		return false
	}
	if binary.BigEndian.Uint16(p[6:])&0x1fff != 0 { // not the first fragment
		return false
	}
	return clampTCP(p[ihl:], mss)
}

func clampIPv6(p []byte, mss int) bool {
	if len(p) < 40 || p[0]>>4 != 6 {
		return false
	}
	nh, off := p[6], 40
	// Hop-by-Hop (0), Routing (43), Destination Options (60); a Fragment
	// header (44) or anything else ends the walk.
	for i := 0; i < 4 && (nh == 0 || nh == 43 || nh == 60); i++ {
		if len(p) < off+8 {
			return false
		}
		nh = p[off]
		off += (int(p[off+1]) + 1) * 8
	}
	if nh != 6 || len(p) < off {
		return false
	}
	return clampTCP(p[off:], mss)
}

func clampTCP(t []byte, mss int) bool {
	const flagSYN = 0x02
	if mss <= 0 || len(t) < 20 || t[13]&flagSYN == 0 {
		return false
	}
	doff := int(t[12]>>4) * 4
	if doff <= 20 || len(t) < doff {
		return false
	}
	for i := 20; i < doff; {
		kind := t[i]
		if kind == 0 { // end of options
			return false
		}
		if kind == 1 { // NOP
			i++
			continue
		}
		if i+1 >= doff {
			return false
		}
		l := int(t[i+1])
		if l < 2 || i+l > doff {
			return false
		}
		if kind == 2 && l == 4 {
			old := binary.BigEndian.Uint16(t[i+2:])
			if int(old) <= mss {
				return false
			}
			nw := uint16(mss)
			binary.BigEndian.PutUint16(t[i+2:], nw)
			if (i+2)%2 == 1 {
				// The value straddles two checksum words: its bytes
				// count swapped.
				old, nw = old<<8|old>>8, nw<<8|nw>>8
			}
			ck := binary.BigEndian.Uint16(t[16:])
			binary.BigEndian.PutUint16(t[16:], csumReplace(ck, old, nw))
			return true
		}
		i += l
	}
	return false
}

// csumReplace updates an Internet checksum for one 16-bit word changing
// from old to nw: HC' = ~(~HC + ~m + m') (RFC 1624, eqn. 3).
func csumReplace(ck, old, nw uint16) uint16 {
	s := uint32(^ck) + uint32(^old) + uint32(nw)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return ^uint16(s)
}
